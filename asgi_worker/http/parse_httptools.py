"""Sans-I/O adapter: httptools (llhttp) callbacks in, our three events out.

Strategy: httptools calls us back while it parses; the callbacks only collect. ``feed`` returns the
events of every request completed or begun in that chunk, in order. Bad input never raises out of
``feed``: the ``RequestError`` that answers it is the last item of the list and the parser is dead
afterwards, so requests pipelined before the garbage are still served (nothing lost).

Head budget (``limits.py`` defines what counts): llhttp reports no byte offsets, so we cut the stream
ourselves and hand llhttp one piece at a time: a head up to its blank line, a Content-Length body
by count, a chunked body up to the end ``chunks.ChunkedFraming`` finds by following its framing (one
step per chunk, never a search through its data). Every head then starts at an offset we know and
its size is exact, whatever the chunking. A head still unfinished when it passes the budget is
refused at once, after llhttp has seen the bytes within the budget (so an earlier 400 or 414 in them
wins, as it does when the same bytes arrive one by one).
Fast path: a read that begins between requests, fits the budget and holds a blank line goes to
llhttp in one call up to that first blank line: the whole of a GET's head. It cannot be over the
budget, and it ends exactly at its blank line (a head cannot contain one), so nothing is measured.

Upgrade requests: llhttp stops right after the head of a request that asks to switch protocols and
leaves its body unparsed (see ``_upgraded``); their body is read like any other, except a WebSocket
handshake when the server switches for it (``switch_websocket``): then parsing stops after its head
and ``switched`` holds the bytes that followed, for the WebSocket side.

After a request whose answer will close the connection (no keep-alive) the rest is ignored.
"""

from __future__ import annotations

from enum import Enum

import httptools

from asgi_worker.errors import MalformedRequest, RequestError, TargetTooLong
from asgi_worker.http.chunks import ChunkedFraming
from asgi_worker.http.events import BODY_CHUNKED, REQUEST_END, BodyChunk, Event
from asgi_worker.http.headers import METHOD_NAMES, build_head, head_too_large
from asgi_worker.http.limits import HeadLimits

__all__ = ["HttptoolsParser"]

_BLANK_LINE = b"\r\n\r\n"


class _Reading(Enum):
    """Where the next byte fed belongs."""

    IDLE = "idle"  # between requests: empty lines, or the first byte of a head
    HEAD = "head"  # inside a head that began in an earlier chunk
    FIXED = "fixed"  # inside a Content-Length body
    CHUNKED = "chunked"  # inside a chunked body


_IDLE, _HEAD, _FIXED, _CHUNKED_BODY = _Reading.IDLE, _Reading.HEAD, _Reading.FIXED, _Reading.CHUNKED


class _Discard(Exception):
    """Raised from a callback to stop llhttp; never leaves this module."""


class HttptoolsParser:
    """Turns request bytes into events with httptools. One instance per connection."""

    __slots__ = (
        "_body_left",
        "_body_length",
        "_chunks",
        "_done",
        "_ended",
        "_events",
        "_fast_limit",
        "_head_bytes",
        "_headers",
        "_keep_alive",
        "_limits",
        "_parser",
        "_reading",
        "_reading_head",
        "_swallow_head",
        "_switch_websocket",
        "_switching",
        "_tail",
        "_upgrade_body",
        "_url",
        "in_head",
        "switched",
    )

    def __init__(self, limits: HeadLimits, switch_websocket: bool = False) -> None:
        self._limits = limits
        self._fast_limit = limits.head or 1 << 62  # chunks up to this size may take the fast path
        self._switch_websocket = switch_websocket
        self._switching = False
        self.switched: bytes | None = None  # bytes after a WebSocket head we stopped at
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event | RequestError] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._reading = _IDLE
        # True while part of a request head has arrived but not all of it (_reading is _HEAD); an
        # attribute, not a property, because the connection reads it after every response.
        self.in_head = False
        self._head_bytes = 0  # bytes of the unfinished head fed so far (_HEAD)
        self._body_left = 0  # Content-Length bytes still to come (_FIXED)
        self._body_length = 0  # RequestHead.body_length of the last head
        self._chunks: ChunkedFraming | None = None  # where the chunked body being read ends (_CHUNKED)
        self._tail = b""  # the last bytes fed of an unfinished head (_HEAD)
        self._reading_head = False  # llhttp is between on_url and on_headers_complete
        self._ended = True  # the last request begun has ended
        self._keep_alive = True
        self._done = False
        self._upgrade_body = 0  # body length of an upgrade request answered over HTTP
        self._swallow_head = False

    def feed(self, data: bytes) -> list[Event | RequestError]:
        """Parse ``data``; return the events it completes. A ``RequestError`` can only come last."""
        if self._done:
            return []
        events = self._events = []
        size = len(data)
        pos = 0
        if self._reading is _IDLE and size <= self._fast_limit:
            found = data.find(_BLANK_LINE)
            if found >= 0:  # the fast path: a whole head opens the read (see the module docstring)
                pos = found + 4
                try:
                    self._parser.feed_data(data if pos == size else data[:pos])
                except httptools.HttpParserUpgrade as exc:
                    pos = self._upgraded(data, int(exc.args[0]))
                except httptools.HttpParserError as exc:
                    self._parse_failed(exc)
                else:
                    if not (self._ended or self._done):
                        self._enter_body(self._body_length, 0)
        while pos < size and not self._done:
            reading = self._reading
            if reading is _FIXED:
                pos = self._feed_fixed_body(data, pos)
            elif reading is _CHUNKED_BODY:
                pos = self._feed_chunked_body(data, pos)
            else:
                pos = self._feed_head(data, pos)
        return events

    # Cutting the stream. Each step feeds llhttp from ``pos`` and returns where the next step starts.

    def _feed_head(self, data: bytes, pos: int) -> int:
        size = len(data)
        if self._reading is _IDLE:
            # RFC 9112 2.2: empty lines before a request line are skipped; they are no part of its head.
            while data[pos] in b"\r\n":
                pos += 1
                if pos == size:
                    return size
            self._reading = _HEAD
            self.in_head = True
            self._head_bytes = 0
            self._tail = b""
        limit = self._limits.head
        budget = limit - self._head_bytes if limit else size - pos
        end = self._blank_line_end(data, pos, min(size, pos + budget))
        if end < 0:
            if size - pos > budget:  # past the budget, its end still unseen
                self._parse(data[pos : pos + budget])
                self._fail(head_too_large(limit), None)
                return size
            piece = data[pos:] if pos else data
            self._parse(piece)
            self._head_bytes += size - pos
            self._keep_tail(piece)
            return size
        offset = self._parse(data[pos:end] if pos or end != size else data)
        self._reading = _IDLE
        self.in_head = False
        if self._done:
            return size
        if self._reading_head:  # cannot happen: llhttp ends a head at its first blank line or fails
            self._fail(MalformedRequest("request head did not end at its blank line"), None)
            return size
        if offset >= 0:
            return self._upgraded(data, pos + offset)
        if not self._ended:
            self._enter_body(self._body_length, 0)
            self._tail = b""
        return end

    def _feed_fixed_body(self, data: bytes, pos: int) -> int:
        end = min(len(data), pos + self._body_left)
        self._parse(data[pos:end] if pos or end != len(data) else data)
        self._body_left -= end - pos
        if not self._body_left:
            self._reading = _IDLE
            if not self._ended and not self._done:  # cannot happen: llhttp frames by the same length
                self._fail(MalformedRequest("request body did not end at its Content-Length"), None)
        return end

    def _feed_chunked_body(self, data: bytes, pos: int) -> int:
        chunks = self._chunks
        assert chunks is not None
        try:
            end = chunks.scan(data, pos)
        except RequestError as exc:  # framing llhttp would refuse too, or trailers past the budget
            self._parse(data[pos : chunks.stopped_at])  # the body up to there is still delivered
            self._fail(exc, None)
            return len(data)
        self._parse(data[pos:end] if pos or end != len(data) else data)
        if chunks.done:
            self._reading = _IDLE
            self._chunks = None
            if not self._ended and not self._done:  # cannot happen: llhttp frames by the same grammar
                self._fail(MalformedRequest("chunked body did not end where its framing says"), None)
        return end

    def _blank_line_end(self, data: bytes, pos: int, stop: int) -> int:
        """Where the first CRLF CRLF from ``pos`` ends (it may begin in ``_tail``); -1 if not by ``stop``."""
        tail = self._tail
        if tail:
            found = (tail + data[pos : pos + 3]).find(_BLANK_LINE)
            if found >= 0:
                end = pos + found + 4 - len(tail)
                return end if end <= stop else -1
        found = data.find(_BLANK_LINE, pos, stop)
        return found + 4 if found >= 0 else -1

    def _keep_tail(self, piece: bytes) -> None:
        self._tail = piece[-3:] if len(piece) >= 3 else (self._tail + piece)[-3:]

    def _enter_body(self, length: int, received: int) -> None:
        """A body of ``length`` (``RequestHead.body_length``) follows; llhttp parsed ``received`` of it."""
        if length == BODY_CHUNKED:
            self._reading = _CHUNKED_BODY
            self._chunks = ChunkedFraming(self._limits.head)
        elif length > received:
            self._reading = _FIXED
            self._body_left = length - received
        else:  # cannot happen: build_head and llhttp read the same framing headers
            self._fail(MalformedRequest("request body framing is unclear"), None)

    def _upgraded(self, data: bytes, rest: int) -> int:
        """llhttp paused after an upgrade head ending at ``rest`` and skipped its body.

        We answer such a request over HTTP, so its body must still be read as a body (else it would
        be parsed as more requests: smuggling). A fresh parser is primed with a swallowed head with
        the same framing, then fed the rest as usual.
        """
        if self._switching:  # the WebSocket side takes the connection from here
            self._done = True
            self.switched = data[rest:]
            return len(data)
        self._parser = httptools.HttpRequestParser(self)
        length, self._upgrade_body = self._upgrade_body, 0
        if length:
            self._swallow_head = True
            self._parse(_stand_in_head(length))
            self._enter_body(length, 0)
            self._tail = b""
        return rest

    def _parse(self, piece: bytes) -> int:
        """Feed llhttp; return where it paused after an upgrade head, or -1 when it took everything."""
        try:
            self._parser.feed_data(piece)
        except httptools.HttpParserUpgrade as exc:
            return int(exc.args[0])
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
        return -1

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        # A RequestError raised by a callback (build_head's, say) is the answer; llhttp's own errors are 400.
        cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
        self._fail(cause if isinstance(cause, RequestError) else None, exc)

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
        if self._reading_head:  # the target arrived in pieces
            self._url += url
        else:
            if self._done:  # bytes after a closing request: stop llhttp here, they are never answered
                raise _Discard
            self._reading_head = True
            self._ended = False
            self._url = url
            self._headers = []
        limit = self._limits.request_line
        if limit and len(self._url) > limit:
            raise TargetTooLong(f"request target longer than {limit} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._reading_head:  # a trailer field after a chunked body: dropped, as h11 does
            return
        # Trailing OWS is not part of the value. The field count and sizes are checked once, by
        # build_head; the head's size is bounded as it arrives, by feed.
        self._headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self._reading_head = False
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
        self._body_length = length = head.body_length
        if length and parser.should_upgrade():  # llhttp will skip this body (CONNECT's too): _upgraded
            self._upgrade_body = length
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self._events.append(BodyChunk(body))

    def on_message_complete(self) -> None:
        if self._upgrade_body:  # llhttp skipped the body; it ends after the re-parse
            return
        self._ended = True
        self._events.append(REQUEST_END)
        if not self._keep_alive:
            self._done = True


def _stand_in_head(length: int) -> bytes:
    """A head announcing the body ``length`` (``RequestHead.body_length``) stands for."""
    if length == BODY_CHUNKED:
        return b"PUT / HTTP/1.1\r\nHost: -\r\nTransfer-Encoding: chunked\r\n\r\n"
    return b"PUT / HTTP/1.1\r\nHost: -\r\nContent-Length: %d\r\n\r\n" % length
