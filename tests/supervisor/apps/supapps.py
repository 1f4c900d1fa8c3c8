"""Apps served by the supervisor tests in real worker processes."""

import asyncio
import json
import os
import time

_HOARD = []


def _note_in_flight():
    """A line in $ASGI_WORKER_TEST_IN_FLIGHT (tests/processes.py) when set: this request is in the app."""
    path = os.environ.get("ASGI_WORKER_TEST_IN_FLIGHT")
    if path:
        with open(path, "a") as marker:
            marker.write(f"{os.getpid()}\n")


async def info(scope, receive, send):
    """Answers who served it: pid, slot, generation. ``/block?S`` blocks the loop S seconds,
    ``/slow?S`` awaits S seconds, ``/grow?MB`` keeps MB of memory alive in this worker."""
    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/block":
        time.sleep(float(query or 30))
    elif path == "/slow":
        _note_in_flight()
        await asyncio.sleep(float(query or 1))
    elif path == "/grow":
        _HOARD.append(bytearray(int(query or 50) * 1024 * 1024))
    body = json.dumps(
        {
            "pid": os.getpid(),
            "slot": os.environ.get("ASGI_WORKER_SLOT"),
            "generation": os.environ.get("ASGI_WORKER_GENERATION"),
        }
    ).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


async def failing_startup(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
