"""Apps that make gunicorn's ASGI settings visible, for tests/gunicorn/test_gunicorn_parity.py.

``app`` answers what the worker set up for it: whether its lifespan ran, which event loop it runs
on, the scope's ``root_path``; ``/slow?S`` writes to ``$PARITY_CANCELLED`` the moment its call is
cancelled; a WebSocket is echoed. ``no_lifespan`` refuses the lifespan scope; ``wsgi_app`` (served
with ``ASGI_WORKER_INTERFACE=wsgi``) reports how many of its calls ever ran at once.
"""

import asyncio
import json
import os
import threading
import time

from gapps import _note_in_flight

LIFESPAN = {"state": "never"}  # this worker's: "started" once the app's lifespan startup ran


def _json(body):
    return json.dumps(body).encode()


async def _answer(send, body):
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _json(body)})


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            LIFESPAN["state"] = "started"
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _slow(seconds):
    """Sleep; a cancellation is noted with its wall-clock time, so the test can measure the grace."""
    _note_in_flight()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        with open(os.environ["PARITY_CANCELLED"], "a") as note:
            note.write(f"{time.time()}\n")
        raise


async def _echo(receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        reply = {"text": text} if text is not None else {"bytes": message["bytes"]}
        await send({"type": "websocket.send", **reply})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "websocket":
        await _echo(receive, send)
    else:
        if scope["path"] == "/slow":
            await _slow(float(scope["query_string"] or 30))
        await _answer(
            send,
            {
                "pid": os.getpid(),
                "lifespan": LIFESPAN["state"],
                "loop": type(asyncio.get_running_loop()).__module__,
                "root_path": scope["root_path"],
            },
        )


async def no_lifespan(scope, receive, send):
    """An app without lifespan support: it fails on any scope but HTTP, as many small apps do."""
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']}")
    await _answer(send, {"pid": os.getpid()})


_calls = {"now": 0, "most": 0}
_calls_lock = threading.Lock()


def wsgi_app(environ, start_response):
    """``/slow?S`` holds a pool thread S seconds; ``/`` answers the most calls that ever ran at once."""
    if environ["PATH_INFO"] == "/slow":
        with _calls_lock:
            _calls["now"] += 1
            _calls["most"] = max(_calls["most"], _calls["now"])
        _note_in_flight()
        time.sleep(float(environ["QUERY_STRING"] or 1))
        with _calls_lock:
            _calls["now"] -= 1
    start_response("200 OK", [("Content-Type", "application/json")])
    return [_json({"pid": os.getpid(), "most_at_once": _calls["most"]})]
