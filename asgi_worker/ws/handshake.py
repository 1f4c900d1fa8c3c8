"""The opening handshake, from the head the HTTP parser already produced (never re-serialised).

Rules:
- The request is checked by the websockets library (``ServerProtocol.accept``) on a
  ``websockets.http11.Request`` built from our parsed head: same key, version and extension rules
  as every websockets server. A request it refuses gets its answer (400, 426 ...) and the app is
  never called, as with uvicorn.
- The subprotocol is the app's choice, made later in ``websocket.accept``; the handshake keeps
  the library's response and adds ``Sec-WebSocket-Protocol`` and the app's headers when it comes.
- The 101 head and a refusal carry our default header block (``server``, ``date``, ``--header``),
  replacing the library's own Date, so a WebSocket answer looks like every other answer of this
  server (and ``--no-date-header`` holds for it too).
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.events import RequestHead
from asgi_worker.http.headers import is_safe_value, is_token
from asgi_worker.http.response import DefaultHeaderBlock

__all__ = ["Handshake", "protocol_logger"]

# The library logs "connection open" and the like at INFO for every connection; ours logs what
# operators need. Its warnings and errors still reach asgi_worker.error.
protocol_logger = logging.Logger("asgi_worker.ws.protocol", logging.WARNING)
protocol_logger.parent = logging.getLogger("asgi_worker.error")

_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\n"


class Handshake:
    """One upgrade request checked by the library; ``response`` is its answer (101 or a refusal)."""

    __slots__ = ("extensions", "offered_subprotocols", "response")

    def __init__(self, head: RequestHead, deflate: bool) -> None:
        request = Request(
            head.target.decode("latin-1"),
            Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers),
        )
        offered: list[str] = []

        def record_offer(_protocol: ServerProtocol, subprotocols: Any) -> None:
            offered.extend(subprotocols)
            return None

        protocol = ServerProtocol(
            extensions=enable_server_permessage_deflate(None) if deflate else None,
            select_subprotocol=record_offer,
            logger=protocol_logger,
        )
        self.response: Response = protocol.accept(request)
        self.extensions = protocol.extensions  # negotiated; the frame protocol takes them over
        self.offered_subprotocols = offered

    @property
    def accepted(self) -> bool:
        """Whether the library would switch protocols for this request."""
        return self.response.status_code == 101

    def refusal(self, defaults: DefaultHeaderBlock) -> bytes:
        """The library's answer to a request it refuses, ready to write (the connection then closes).

        Its status, headers and body, with one ``Connection: close`` (the library may have set one
        already) and our default header block in place of its Date."""
        response = self.response
        lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n".encode("latin-1")]
        for name, value in response.headers.raw_items():
            if name.lower() not in ("date", "connection"):
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"connection: close\r\n")
        lines.append(defaults.block)
        lines.append(b"\r\n")
        lines.append(bytes(response.body))
        return b"".join(lines)

    def switching_head(self, subprotocol: str | None, headers: Any, defaults: DefaultHeaderBlock) -> bytes:
        """The 101 head for ``websocket.accept``. Raises ``AppProtocolError`` for a bad app header."""
        lines = [_SWITCHING]
        for name, value in self.response.headers.raw_items():
            if name.lower() != "date":
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if subprotocol is not None:
            lines.append(b"sec-websocket-protocol: %b\r\n" % _header_value(subprotocol.encode("latin-1")))
        has_server = has_date = False
        for name, value in headers or ():
            if not is_token(name):
                raise AppProtocolError(f"invalid response header {name!r}: {value!r}")
            lowered = name.lower()
            has_server = has_server or lowered == b"server"
            has_date = has_date or lowered == b"date"
            lines.append(b"%b: %b\r\n" % (name, _header_value(value)))
        lines.append(
            defaults.block if not (has_server or has_date) else defaults.without(has_server, has_date)
        )
        lines.append(b"\r\n")
        return b"".join(lines)


def _header_value(value: bytes) -> bytes:
    if not is_safe_value(value):
        raise AppProtocolError(f"invalid response header value {value!r}")
    return value
