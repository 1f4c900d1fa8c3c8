"""Sans-I/O adapter: httptools (llhttp) callbacks in, our three events out.

Strategy: httptools calls us back while it parses; the callbacks only collect. ``feed`` returns the
events of every request completed or begun in that chunk, in order. Bad input never raises out of
``feed``: the ``RequestError`` that answers it is the last item of the list and the parser is dead
afterwards, so requests pipelined before the garbage are still served (nothing lost).

Upgrade requests: see the ``HttpParserUpgrade`` branch of ``feed``; their body is read like any other,
except a WebSocket handshake when the server switches for it (``switch_websocket``): then parsing
stops after its head and ``switched`` holds the bytes that followed, for the WebSocket side.

Memory: llhttp buffers an unfinished token itself, so a client could stream an endless header value.
Besides the exact checks in ``build_head`` we count the bytes of every chunk that starts and ends
inside the same head; past the head limit that is a 431 before the head ever completes.

After a request whose answer will close the connection (no keep-alive) the rest is ignored.
"""

from __future__ import annotations

import httptools

from asgi_worker.errors import HeadersTooLarge, MalformedRequest, RequestError, TargetTooLong
from asgi_worker.http.events import REQUEST_END, BodyChunk, Event
from asgi_worker.http.headers import METHOD_NAMES, build_head
from asgi_worker.http.limits import HeadLimits

__all__ = ["HttptoolsParser"]


class _Discard(Exception):
    """Raised from a callback to stop llhttp; never leaves this module."""


class HttptoolsParser:
    """Turns request bytes into events with httptools. One instance per connection."""

    __slots__ = (
        "_done",
        "_events",
        "_head_bytes",
        "_head_ended",
        "_headers",
        "_keep_alive",
        "_limits",
        "_parser",
        "_swallow_head",
        "_switch_websocket",
        "_switching",
        "_upgrade_framing",
        "_url",
        "in_head",
        "switched",
    )

    def __init__(self, limits: HeadLimits, switch_websocket: bool = False) -> None:
        self._limits = limits
        self._switch_websocket = switch_websocket
        self._switching = False
        self.switched: bytes | None = None  # bytes after a WebSocket head we stopped at
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event | RequestError] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self.in_head = False  # part of a request head has arrived but not all of it
        self._head_ended = False
        self._head_bytes = 0
        self._keep_alive = True
        self._done = False
        self._upgrade_framing: bytes | None = None
        self._swallow_head = False

    def feed(self, data: bytes) -> list[Event | RequestError]:
        """Parse ``data``; return the events it completes. A ``RequestError`` can only come last."""
        if self._done:
            return []
        events = self._events = []
        was_in_head = self.in_head
        self._head_ended = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops right after the head of a request that asks to switch protocols and
            # leaves its body unparsed. We answer such a request over HTTP, so its body must still
            # be read as a body (else it would be parsed as more requests: smuggling). A fresh
            # parser is primed with a swallowed head carrying the same framing, then fed the rest.
            rest = data[exc.args[0] :]
            if self._switching:  # the WebSocket side takes the connection from here
                self._done = True
                self.switched = rest
                return events
            self._parser = httptools.HttpRequestParser(self)
            if self._upgrade_framing is not None:
                rest = self._upgrade_framing + rest
                self._upgrade_framing = None
                self._swallow_head = True
            if rest and not self._done:
                events.extend(self.feed(rest))
            self._events = events
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ if isinstance(exc.__context__, RequestError) else None, exc)
        except httptools.HttpParserError as exc:
            self._fail(None, exc)
        if self.in_head and not self._done:
            if was_in_head and not self._head_ended:
                self._head_bytes += len(data)
                if self._limits.head and self._head_bytes > 2 * self._limits.head:
                    self._fail(HeadersTooLarge(f"request head larger than {self._limits.head} bytes"), None)
            else:
                self._head_bytes = 0
        return events

    def _fail(self, error: RequestError | None, cause: BaseException | None) -> None:
        if self._done:  # garbage after a closing request is not an error: nobody will read it
            return
        self._done = True
        if error is None:
            error = MalformedRequest(f"malformed request: {cause}")
        self._events.append(error)

    # httptools callbacks. They run inside feed_data; raising a RequestError aborts the parse.

    # No on_message_begin: on_url is the first callback of every request, and one call fewer per
    # request is worth it.

    def on_url(self, url: bytes) -> None:
        if self.in_head:  # the target arrived in pieces
            self._url += url
        else:
            if self._done:  # bytes after a closing request: stop llhttp here, they are never answered
                raise _Discard
            self.in_head = True
            self._url = url
            self._headers = []
        limit = self._limits.request_line
        if limit and len(self._url) > limit:
            raise TargetTooLong(f"request target longer than {limit} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:  # a trailer field after a chunked body: dropped, as h11 does
            return
        # Trailing OWS is not part of the value. The field count and sizes are checked once, by
        # build_head; meanwhile the byte guard in feed() bounds what a head can make us hold.
        self._headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._head_ended = True
        if self._swallow_head:  # the stand-in head of an upgrade request's body: not a request
            self._swallow_head = False
            return
        parser = self._parser
        method = parser.get_method()
        head = build_head(
            METHOD_NAMES.get(method) or method.decode("ascii"),
            self._url,
            parser.get_http_version(),
            self._headers,
            self._limits,
        )
        self._keep_alive = head.keep_alive
        self._switching = head.websocket and self._switch_websocket
        if head.upgrade is not None:
            self._upgrade_framing = _framing_head(head.headers)
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self._events.append(BodyChunk(body))

    def on_message_complete(self) -> None:
        if self._upgrade_framing is not None:  # llhttp skipped the body; it ends after the re-parse
            return
        self._events.append(REQUEST_END)
        if not self._keep_alive:
            self._done = True


def _framing_head(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """A stand-in head with the same body framing as ``headers``; None when there is no body."""
    for name, value in headers:
        if name == b"content-length" and value != b"0":
            return b"PUT / HTTP/1.1\r\nHost: -\r\nContent-Length: %b\r\n\r\n" % value
        if name == b"transfer-encoding":
            return b"PUT / HTTP/1.1\r\nHost: -\r\nTransfer-Encoding: chunked\r\n\r\n"
    return None
