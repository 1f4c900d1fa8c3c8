"""The three events both HTTP parsers emit, and the only thing the connection learns from them.

Whatever library parsed the bytes, a request reaches the rest of the server as one ``RequestHead``,
zero or more ``BodyChunk`` and one ``RequestEnd`` (the ``REQUEST_END`` singleton). Everything a
parser adapter decides about framing (keep-alive, expect-continue, upgrade) is already settled in
the head, so the connection never asks the parser again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from asgi_worker.errors import RequestError
    from asgi_worker.http.limits import RequestLimits

__all__ = [
    "BODY_CHUNKED",
    "REQUEST_END",
    "BodyChunk",
    "Event",
    "ParserFactory",
    "RequestEnd",
    "RequestHead",
    "RequestParser",
]

# ``RequestHead.body_length`` of a request with a chunked body (its length is not announced).
BODY_CHUNKED = -1


class RequestHead:
    """A parsed, validated request line and header block.

    ``headers`` are ``(lowercased name, value)`` byte pairs in arrival order, as ASGI wants them.
    ``upgrade`` is the lowercased ``Upgrade`` token when the client asked to switch protocols with
    ``Connection: upgrade``, else ``None``. ``websocket`` is True when that upgrade is ``websocket``:
    the request a server with WebSockets on switches for (a parser told to switch stops reading HTTP
    after it; ``ws/handshake.py`` refuses one that is no valid handshake). ``body_length`` is the
    body the head announces: its Content-Length, ``BODY_CHUNKED``, or 0 for none.
    """

    __slots__ = (
        "body_length",
        "expect_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "target",
        "upgrade",
        "websocket",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        upgrade: bytes | None,
        websocket: bool = False,
        body_length: int = 0,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.websocket = websocket
        self.body_length = body_length

    def __repr__(self) -> str:
        return f"RequestHead({self.method} {self.target!r} HTTP/{self.http_version})"


class BodyChunk:
    """A non-empty piece of request body, already de-chunked."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"BodyChunk({len(self.data)} bytes)"


class RequestEnd:
    """The request body is complete. Use the ``REQUEST_END`` singleton; it carries nothing."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REQUEST_END"


REQUEST_END = RequestEnd()

Event = RequestHead | BodyChunk | RequestEnd


class RequestParser(Protocol):
    """What the connection needs of a parser adapter (``parse_httptools``, ``parse_h11``)."""

    switched: bytes | None  # the bytes after a WebSocket head the parser stopped at

    @property
    def in_head(self) -> bool:
        """True while part of a request head has arrived but not all of it."""

    def feed(self, data: bytes) -> list[Event | RequestError]:
        """The events ``data`` completes, in order; a ``RequestError`` can only come last."""


class ParserFactory(Protocol):
    """A parser adapter class: ``(head limits, switch for WebSocket handshakes) -> parser``."""

    def __call__(self, limits: RequestLimits, switch_websocket: bool, /) -> RequestParser: ...
