"""Plain ASGI3 apps the benchmark serves, one per scenario.

No framework on purpose: any framework cost would be paid equally by every server and only shrink
the ratio we are trying to see (the framework rows live in framework_apps.py, so that only the
servers serving them import a framework). Every response body is built once at import time, so the
app's own work per request is close to nothing and the server dominates what the client measures.
ceiling.py sends these same bodies, so its responses match byte for byte in length.

Each app returns at once for non-http scopes, which answers lifespan by not taking part in it:
the servers then carry on without startup or shutdown events (lifespan "auto").
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

__all__ = ["body_1m", "body_64k", "chunked_16x1k", "json_1k", "plain", "streamed", "upload", "ws_echo"]

PLAIN_BODY = b"Hello, world!"
JSON_BODY = json.dumps(
    {"items": [{"id": i, "name": f"item-{i:03d}", "ok": i % 2 == 0} for i in range(26)]},
    separators=(",", ":"),
).encode()
BODY_64K = b"x" * (64 * 1024)
BODY_1M = b"z" * (1024 * 1024)
CHUNK_1K = b"c" * 1024
CHUNKS_1K = 16
STREAM_CHUNK = b"y" * (4 * 1024)
STREAM_CHUNKS = 16


def _start(content_type: bytes, length: int | None = None) -> Message:
    """Build a response start; without a length the server must frame the body itself (chunked)."""
    headers = [(b"content-type", content_type)]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": 200, "headers": headers}


# Precomputed so that the per-request cost is the server's, not ours.
_PLAIN_START = _start(b"text/plain; charset=utf-8", len(PLAIN_BODY))
_JSON_START = _start(b"application/json", len(JSON_BODY))
_BODY_64K_START = _start(b"application/octet-stream", len(BODY_64K))
_BODY_1M_START = _start(b"application/octet-stream", len(BODY_1M))
_STREAM_START = _start(b"application/octet-stream")


async def _send_whole(send: Send, start: Message, body: bytes) -> None:
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def plain(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200 text/plain "Hello, world!": the per-request overhead floor."""
    if scope["type"] != "http":
        return
    await _send_whole(send, _PLAIN_START, PLAIN_BODY)


async def varied(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``/item/N`` with N % 97 bytes: with ``compare_commits.py --varied`` no head and no
    response repeats the one before it, the case the servers' "same as last time" memos cannot help."""
    if scope["type"] != "http":
        return
    tail = scope["path"].rpartition("/")[2]
    size = int(tail) % 97 if tail.isdigit() else 0
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % size)],
    }
    await _send_whole(send, start, b"x" * size)


async def json_1k(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a ~1 KB JSON document: a typical small API response."""
    if scope["type"] != "http":
        return
    await _send_whole(send, _JSON_START, JSON_BODY)


async def body_64k(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 64 KiB in one message: measures the write path and flow control, not parsing."""
    if scope["type"] != "http":
        return
    await _send_whole(send, _BODY_64K_START, BODY_64K)


async def body_1m(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 1 MiB in one message with a content-length: the data-bound write path."""
    if scope["type"] != "http":
        return
    await _send_whole(send, _BODY_1M_START, BODY_1M)


async def chunked_16x1k(scope: Scope, receive: Receive, send: Send) -> None:
    """Send 16 x 1 KiB with more_body=True, no content-length, then an empty final body: the cost
    of a send and of chunk framing when the chunks are small."""
    if scope["type"] != "http":
        return
    await send(_STREAM_START)
    for _ in range(CHUNKS_1K):
        await send({"type": "http.response.body", "body": CHUNK_1K, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def streamed(scope: Scope, receive: Receive, send: Send) -> None:
    """Stream 16 chunks of 4 KiB with no content-length: measures chunked framing per message."""
    if scope["type"] != "http":
        return
    await send(_STREAM_START)
    for _ in range(STREAM_CHUNKS):
        await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def upload(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the whole request body and answer its length: measures the receive path (1 MiB POST)."""
    if scope["type"] != "http":
        return
    size = 0
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = str(size).encode()
    await _send_whole(send, _start(b"text/plain; charset=utf-8", len(body)), body)


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept a WebSocket and send every message straight back: per-message cost both ways."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})
