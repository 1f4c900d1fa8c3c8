"""Apps served by real gunicorn processes running our worker class."""

import asyncio
import json
import os
import time


def _note_in_flight():
    """A line in $ASGI_WORKER_TEST_IN_FLIGHT (tests/processes.py) when set: this request is in the app."""
    path = os.environ.get("ASGI_WORKER_TEST_IN_FLIGHT")
    if path:
        with open(path, "a") as marker:
            marker.write(f"{os.getpid()}\n")


async def app(scope, receive, send):
    """``/`` answers the pid; ``/slow?S`` awaits S seconds; ``/block?S`` blocks the loop S seconds;
    ``/headers`` answers with a custom response header."""
    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/slow":
        _note_in_flight()
        await asyncio.sleep(float(query or 1))
    elif path == "/block":
        time.sleep(float(query or 30))
    body = json.dumps(
        {"pid": os.getpid(), "root_path": scope["root_path"], "scheme": scope["scheme"]}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"x-served-by", b"gapps")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def failing_startup(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
