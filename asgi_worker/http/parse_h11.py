"""Sans-I/O adapter: h11 in, our three events out. The pure-Python twin of ``parse_httptools``.

Strategy: h11 models both sides of a connection, but our responses are written by
``http/response.py``, shared with httptools. So this adapter uses a fresh ``h11.Connection`` per
request as a pure request reader: at ``EndOfMessage`` it takes h11's unparsed trailing bytes and
starts the next one on them. No dummy responses, no second copy of the framing rules.

h11 is more lenient than llhttp in a few places where the RFC allows either answer; we hold it to
llhttp's, so both parsers answer the same bytes the same way (``build_head`` does the rest):
- a bare LF line ending, or obsolete line folding, in the head: 400;
- empty lines before the request line are skipped (RFC 9112 2.2), which h11 rejects;
- a request line that never ends is 414, not h11's generic 431;
- the head budget is ours, not h11's: we keep the raw bytes of the head being read anyway, so its
  size is exact (``limits.py`` defines it) and a head still unfinished past it is 431 at once.
Like the httptools adapter, ``feed`` never raises for bad input: a ``RequestError`` comes last, and
with ``switch_websocket`` it stops after a WebSocket handshake head, leaving the rest in ``switched``.
"""

from __future__ import annotations

import h11

from asgi_worker.errors import (
    HeadersTooLarge,
    MalformedRequest,
    RequestError,
    TargetTooLong,
    TransferCodingNotImplemented,
)
from asgi_worker.http.events import REQUEST_END, BodyChunk, Event
from asgi_worker.http.headers import build_head, head_too_large
from asgi_worker.http.limits import HeadLimits

__all__ = ["H11Parser"]

# Room for the method and " HTTP/1.1" around a target at the request-line limit.
_REQUEST_LINE_SLACK = 64

# h11's error_status_hint -> our error carrying that answer.
_BY_STATUS_HINT: dict[int, type[RequestError]] = {
    431: HeadersTooLarge,
    501: TransferCodingNotImplemented,
}

# Bytes no request head may contain (CR, LF and TAB are the line structure and whitespace).
_CONTROL_BYTES = bytes(b for b in range(0x20) if b not in (0x09, 0x0A, 0x0D)) + b"\x7f"

_Request, _Data, _EndOfMessage = h11.Request, h11.Data, h11.EndOfMessage
_NEED_DATA, _PAUSED = h11.NEED_DATA, h11.PAUSED


class H11Parser:
    """Turns request bytes into events with h11. One instance per connection."""

    __slots__ = (
        "_conn",
        "_done",
        "_head_buf",
        "_keep_alive",
        "_limits",
        "_switch_websocket",
        "_switching",
        "switched",
    )

    def __init__(self, limits: HeadLimits, switch_websocket: bool = False) -> None:
        self._limits = limits
        self._switch_websocket = switch_websocket
        self._switching = False
        self.switched: bytes | None = None  # bytes after a WebSocket head we stopped at
        self._conn = self._new_connection()
        # Raw bytes of the head being read (None while reading a body): checked for what h11 forgives.
        self._head_buf: bytearray | None = bytearray()
        self._keep_alive = True
        self._done = False

    @property
    def in_head(self) -> bool:
        """True while part of a request head has arrived but not all of it."""
        return bool(self._head_buf)

    def _new_connection(self) -> h11.Connection:
        # h11's own guard sits above our budget (checked first, in _take_head_bytes), so it never decides.
        size = self._limits.head + 4096 if self._limits.head else 2**31
        return h11.Connection(h11.SERVER, max_incomplete_event_size=size)

    def feed(self, data: bytes) -> list[Event | RequestError]:
        """Parse ``data``; return the events it completes. A ``RequestError`` can only come last."""
        if self._done:
            return []
        events: list[Event | RequestError] = []
        try:
            if self._head_buf is not None:
                data = self._take_head_bytes(data)
            if data:  # h11 reads b"" as end of input
                self._conn.receive_data(data)
            self._drain(events)
        except RequestError as exc:
            self._fail(events, exc)
        except h11.RemoteProtocolError as exc:
            error_class = _BY_STATUS_HINT.get(exc.error_status_hint, MalformedRequest)
            self._fail(events, error_class(f"malformed request: {exc}"))
        return events

    def _take_head_bytes(self, data: bytes) -> bytes:
        buf = self._head_buf
        assert buf is not None
        if not buf:
            data = data.lstrip(b"\r\n")
        buf += data
        limit = self._limits.request_line
        if (
            limit
            and len(buf) > (limit + _REQUEST_LINE_SLACK)
            and buf.find(b"\n", 0, limit + _REQUEST_LINE_SLACK) == -1
        ):
            raise TargetTooLong(f"request target longer than {limit} bytes")
        # buf holds the head from its first byte, then whatever followed it: the head fits the
        # budget if its blank line ends within the first `limit` bytes. Only searched once buf is
        # longer than the budget, so a small request costs a length test.
        limit = self._limits.head
        # A head ended by bare LFs is within the budget too: h11 and our checks then answer it (400),
        # as llhttp does, rather than 431 for bytes that merely follow it.
        if (
            limit
            and len(buf) > limit
            and buf.find(b"\r\n\r\n", 0, limit) == -1
            and buf.find(b"\n\n", 0, limit) == -1
        ):
            raise head_too_large(limit)
        return data

    def _drain(self, events: list[Event | RequestError]) -> None:
        conn = self._conn
        while True:
            event = conn.next_event()
            kind = type(event)
            if kind is _Data:
                events.append(BodyChunk(bytes(event.data)))  # type: ignore[union-attr]
            elif kind is _Request:
                events.append(self._head(event))  # type: ignore[arg-type]
            elif kind is _EndOfMessage:
                events.append(REQUEST_END)
                if self._switching:  # the WebSocket side takes the connection from here
                    self._done = True
                    self.switched = bytes(conn.trailing_data[0])
                    return
                if not self._next_request():
                    return
                conn = self._conn
            elif event is _NEED_DATA or event is _PAUSED:
                return
            # ConnectionClosed and InformationalResponse cannot come from a client's bytes to us.

    def _head(self, request: h11.Request) -> Event:
        buf = self._head_buf
        self._head_buf = None
        if buf is not None:
            end = buf.find(b"\r\n\r\n")
            head = bytes(buf[: end + 2]) if end != -1 else bytes(buf)
            if head.count(b"\n") != head.count(b"\r\n") or b"\n\n" in head:
                raise MalformedRequest("bare LF line ending in request head")
            if b"\n " in head or b"\n\t" in head:
                raise MalformedRequest("obsolete line folding in request head")
            if len(head.translate(None, _CONTROL_BYTES)) != len(head):  # llhttp refuses these too
                raise MalformedRequest("control character in request head")
            if head.lower().count(b"\ncontent-length:") > 1:  # h11 merges equal duplicates silently
                raise MalformedRequest("more than one Content-Length header")
        parsed = build_head(
            request.method.decode("ascii"),
            request.target,
            request.http_version.decode("ascii"),
            list(request.headers),
            self._limits,
        )
        self._keep_alive = parsed.keep_alive
        self._switching = parsed.websocket and self._switch_websocket
        return parsed

    def _next_request(self) -> bool:
        """Start reading the next request on the bytes h11 has left; False if there is none to read."""
        if not self._keep_alive:
            self._done = True
            return False
        trailing, _closed = self._conn.trailing_data
        self._conn = self._new_connection()
        self._head_buf = bytearray()
        rest = self._take_head_bytes(bytes(trailing)) if trailing else b""
        if rest:
            self._conn.receive_data(rest)
        return True

    def _fail(self, events: list[Event | RequestError], error: RequestError) -> None:
        self._done = True
        events.append(error)
