"""The example app: ``python -m asgi_worker examples.hello:app``, then open http://127.0.0.1:8000."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"Hello, world!\n"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
