"""The app the wire campaigns serve: it reads the whole body and echoes what it was asked.

The answer is ``200`` with an empty body and ``x-echo: METHOD TARGET BODY-LENGTH`` (the target
percent-quoted, so any byte fits a header), the same for HEAD as for GET. Responses then parse
without knowing the request, and two servers that read the same bytes the same way answer them
byte for byte alike, Date aside. A body cut off by the client is echoed as ``disconnect``; a
WebSocket handshake is refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":  # refuse the handshake (403): a 500 is always a finding
        await receive()
        await send({"type": "websocket.close"})
        return
    if scope["type"] != "http":
        return
    length: int | str = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            length = "disconnect"
            break
        length += len(message.get("body", b""))  # type: ignore[operator]
        if not message.get("more_body"):
            break
    target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
    echo = f"{scope['method']} {quote(target, safe='/?=&:@')} {length}".encode("ascii")
    headers = [(b"content-length", b"0"), (b"x-echo", echo)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
