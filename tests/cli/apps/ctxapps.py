"""Apps for tests/cli/test_cli_parity.py: context variables across the lifespan and requests, a
lifespan shutdown that never ends, and a slow endpoint that writes down when it is cancelled."""

import asyncio
import contextvars
import json
import os
import time

FROM_LIFESPAN = contextvars.ContextVar("from_lifespan")
FROM_REQUEST = contextvars.ContextVar("from_request")

CANCELLED_ENV = "CTXAPPS_CANCELLED"
"""The file the slow apps append "cancelled <time.time()>" to when their call is cancelled."""


def _note(line):
    """Append ``line`` to the file named by $ASGI_WORKER_TEST_IN_FLIGHT (tests/processes.py) or
    $CTXAPPS_CANCELLED: the test waits on the file instead of sleeping."""
    path = os.environ.get(CANCELLED_ENV if line.startswith("cancelled") else "ASGI_WORKER_TEST_IN_FLIGHT")
    if path:
        with open(path, "a") as marker:
            marker.write(f"{line}\n")


async def _lifespan(receive, send, hang_on_shutdown=False):
    """Startup sets FROM_LIFESPAN; shutdown completes at once, or never when ``hang_on_shutdown``."""
    await receive()
    FROM_LIFESPAN.set("startup")
    await send({"type": "lifespan.startup.complete"})
    await receive()
    if hang_on_shutdown:
        await asyncio.Event().wait()
    await send({"type": "lifespan.shutdown.complete"})


def _seen():
    """What this call can see of both variables; then mark the context, for a later call to notice."""
    seen = {"lifespan": FROM_LIFESPAN.get(None), "previous_request": FROM_REQUEST.get(None)}
    FROM_REQUEST.set("a request was here")
    return json.dumps(seen).encode()


async def context_report(scope, receive, send):
    """HTTP: a JSON answer with what ``_seen`` reports. WebSocket: the same as one text message."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": _seen()})
    else:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": _seen().decode()})
        await send({"type": "websocket.close", "code": 1000})


async def hanging_shutdown(scope, receive, send):
    """Lifespan shutdown never completes. HTTP: answers after ``?seconds`` (default 0)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, hang_on_shutdown=True)
        return
    _note(str(os.getpid()))
    await asyncio.sleep(float(scope["query_string"] or b"0"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def slow_recording_cancel(scope, receive, send):
    """Sleeps ``?seconds`` (default 10) without reading ``receive``; a cancellation is written down."""
    if scope["type"] != "http":
        return
    _note(str(os.getpid()))
    try:
        await asyncio.sleep(float(scope["query_string"] or b"10"))
    except asyncio.CancelledError:
        _note(f"cancelled {time.time()}")
        raise
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})
