"""Apps served by the CLI tests in real subprocesses."""

import asyncio
import os


def _note_in_flight():
    """A line in $ASGI_WORKER_TEST_IN_FLIGHT (tests/processes.py) when set: this request is in the app."""
    path = os.environ.get("ASGI_WORKER_TEST_IN_FLIGHT")
    if path:
        with open(path, "a") as marker:
            marker.write(f"{os.getpid()}\n")


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def slow(scope, receive, send):
    """Answers after ``?seconds`` (default 1): an in-flight request to stop the server under."""
    if scope["type"] != "http":
        return
    _note_in_flight()
    await asyncio.sleep(float(scope["query_string"] or b"1"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def failing_startup(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


def factory():
    return hello


class ASGI2App:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await hello(self.scope, receive, send)


not_callable = 42


async def env_echo(scope, receive, send):
    """Answers with the value of $GREETING at request time (set through --env-file)."""
    if scope["type"] != "http":
        return
    import os

    body = os.environ.get("GREETING", "<unset>").encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class Nested:
    class Inner:
        app = hello
