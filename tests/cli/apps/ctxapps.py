"""Apps for tests/cli/test_cli_parity.py: context variables across the lifespan and requests, a
lifespan shutdown that never ends, and a slow endpoint that writes down when it is cancelled."""

import asyncio
import contextvars
import json
import os
import time

FROM_LIFESPAN = contextvars.ContextVar("from_lifespan")
FROM_REQUEST = contextvars.ContextVar("from_request")
FROM_IMPORT = contextvars.ContextVar("from_import")
FROM_IMPORT.set("import")  # in the context the server starts from, as instrumentation set at import would

CANCELLED_ENV = "CTXAPPS_CANCELLED"
"""The file the slow apps append "cancelled <time.time()>" to when their call is cancelled."""


def _append(variable, line):
    """Append ``line`` to the file $``variable`` names, if set: the test waits on the file, not a sleep."""
    path = os.environ.get(variable)
    if path:
        with open(path, "a") as marker:
            marker.write(f"{line}\n")


def _note_in_flight():
    """This request reached the app (tests/processes.py ``wait_in_flight`` reads the pid lines)."""
    _append("ASGI_WORKER_TEST_IN_FLIGHT", os.getpid())


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
    """What this call sees of the three variables; then mark its context, for a later call to notice."""
    seen = {
        "import": FROM_IMPORT.get(None),
        "lifespan": FROM_LIFESPAN.get(None),
        "previous_request": FROM_REQUEST.get(None),
    }
    FROM_REQUEST.set("a request was here")
    return json.dumps(seen).encode()


async def context_report(scope, receive, send):
    """HTTP: a JSON answer (with a length, for pipelined reads) of what ``_seen`` reports; WebSocket:
    the same as one text message."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        body = _seen()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
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
    _note_in_flight()
    await asyncio.sleep(float(scope["query_string"] or b"0"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def slow_recording_cancel(scope, receive, send):
    """Sleeps ``?seconds`` (default 10) without reading ``receive``; a cancellation is written down."""
    if scope["type"] != "http":
        return
    _note_in_flight()
    try:
        await asyncio.sleep(float(scope["query_string"] or b"10"))
    except asyncio.CancelledError:
        _append(CANCELLED_ENV, f"cancelled {time.time()}")
        raise
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})
