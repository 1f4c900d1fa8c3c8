"""Sans-I/O adapter: httptools (llhttp) reads request heads, our three events come out.

Strategy: llhttp only ever sees whole heads. We cut the stream ourselves: a head up to its blank
line, a Content-Length body by count, a chunked body with ``chunks.ChunkedBody``, and we emit the
body events ourselves. So the framing of every body is read one way for both parsers, and each head
starts at an offset we know, so its size is exact (``limits.py``).

- Fast path: a head that starts a read (or follows a request in it) and whose blank line is in the
  same read, within the budget, goes to llhttp in one call: the whole of a GET, or of pipelined
  ones. llhttp's callbacks collect, ``build_head`` decides. llhttp is lenient in two places the
  grammar is not, both checked on what it hands us: a request line with more than single spaces
  (its length must be exactly method, target, version and two spaces), and a fragment in the
  target (``build_head``). When llhttp refuses a head, ``head_scan.classify`` reads it and gives
  the answer the scanner would have given, so the status does not depend on how the bytes were cut.
- A head split across reads goes through ``head_scan.HeadScanner`` first, which refuses a bad line as
  soon as it is complete and holds the head until its blank line; then llhttp reads it whole, as on
  the fast path.
- A head a connection repeats byte for byte (a client polling one URL, a health check, a proxy's
  pooled connection) is not parsed again: reading a head is a pure function of its bytes and the
  limits, so once two reads in a row have each been the same plain head and nothing else, its
  reading is kept (``_Repeat``) and reused, with a fresh header list, whenever those bytes come
  again (pipelined ones included). Only plain heads are kept: bodiless, keep-alive, no upgrade, no
  ``Expect``, at most ``REPEAT_LIMIT`` bytes (what an idle connection holds). A head that differs
  costs a comparison.
- After a request with a body, or one that asks to upgrade, llhttp is left expecting bytes we will
  not give it: the next head gets a fresh llhttp parser (about 150 ns).
- A WebSocket handshake when the server switches for it (``switch_websocket``): reading stops after
  its head and ``switched`` holds the bytes that followed, for the WebSocket side.

Bad input never raises out of ``feed``: the ``RequestError`` that answers it is the last item of the
list and the parser is dead afterwards, so requests pipelined before it are still served. After a
request whose answer will close the connection (no keep-alive) the rest is ignored.
"""

from __future__ import annotations

import httptools

from asgi_worker.errors import MalformedRequest, RequestError
from asgi_worker.http.body import BodyReader
from asgi_worker.http.events import REQUEST_END, Event, RequestHead
from asgi_worker.http.head_scan import HeadScanner, classify
from asgi_worker.http.headers import METHOD_NAMES, build_head
from asgi_worker.http.limits import RequestLimits

__all__ = ["REPEAT_LIMIT", "HttptoolsParser"]

_BLANK_LINE = b"\r\n\r\n"
_EMPTY_LINE_BYTES = b"\r\n"

# The largest head kept for reuse: an API client's or a health check's head fits; a browser's with
# its cookies mostly does not, and is parsed every time, as without the reuse.
REPEAT_LIMIT = 1024


class _Repeat:
    """The last plain head this connection read whole: its bytes, and what reading them gave."""

    __slots__ = ("headers", "http_version", "method", "raw", "size", "target")

    def __init__(self, raw: bytes, head: RequestHead) -> None:
        self.raw = raw
        self.size = len(raw)
        self.method = head.method
        self.target = head.target
        self.http_version = head.http_version
        self.headers = tuple(head.headers)  # the app gets a list of its own each time

    def head(self) -> RequestHead:
        return RequestHead(self.method, self.target, self.http_version, list(self.headers), True, False, None)


class _NotOneRequestLine(Exception):
    """Raised from a callback: llhttp read more than method SP target SP version as the request line."""


class HttptoolsParser(BodyReader):
    """Turns request bytes into events with httptools. One instance per connection."""

    __slots__ = (
        "_head_limit",
        "_headers",
        "_line_length",
        "_parser",
        "_repeat",
        "_scanner",
        "_seen",
        "_stale",
        "_url",
        "in_head",
    )

    def __init__(self, limits: RequestLimits, switch_websocket: bool = False) -> None:
        super().__init__(limits, switch_websocket)
        self._head_limit = limits.head or 1 << 62  # the fast path looks this far for a blank line
        self._parser = httptools.HttpRequestParser(self)
        self._stale = False  # llhttp waits for a body or an upgrade: the next head needs a new one
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._line_length = 0  # bytes of the request line before its LF, as received
        self._scanner: HeadScanner | None = None  # a head arriving in pieces
        self._repeat: _Repeat | None = None  # a plain head sent twice in a row, for a client that repeats it
        self._seen = b""  # the last read that was exactly one head (of at most REPEAT_LIMIT bytes)
        # True while part of a request head has arrived but not all of it; an attribute, not a
        # property, because the connection reads it after every response.
        self.in_head = False

    def feed(self, data: bytes) -> list[Event | RequestError]:
        """Parse ``data``; return the events it completes. A ``RequestError`` can only come last."""
        if self._done:
            return []
        events = self._events = []
        size = len(data)
        pos = 0
        head_limit = self._head_limit
        try:
            while pos < size and not self._done:
                if self._body_left or self._chunks is not None:
                    pos = self._read_body(data, pos)
                elif (
                    self._scanner is None
                    and (found := data.find(_BLANK_LINE, pos, pos + head_limit)) > pos
                    and data[pos] not in _EMPTY_LINE_BYTES
                ):  # the fast path: a whole head starts here (module docstring)
                    end = found + 4
                    repeat = self._repeat
                    if repeat is not None and repeat.size == end - pos and data.startswith(repeat.raw, pos):
                        events.append(repeat.head())  # read before: a plain head ends here
                        events.append(REQUEST_END)
                        pos = end
                        continue
                    head = self._read_head(data, pos, end)
                    pos = end if head is None else self._begin_body(head, data, end)
                else:
                    pos = self._scan_head(data, pos)
        except RequestError as error:
            self._done = True
            self.in_head = False
            events.append(error)
        return events

    # Cutting the stream. Each step reads from ``pos`` and returns where the next step starts.

    def _scan_head(self, data: bytes, pos: int) -> int:
        scanner = self._scanner
        if scanner is None:
            scanner = self._scanner = HeadScanner(self._limits)
        end = scanner.feed(data, pos)
        if end < 0:
            self.in_head = scanner.started
            return len(data)
        self._scanner = None
        self.in_head = False
        raw = scanner.head
        head = self._read_head(raw, 0, len(raw))
        return end if head is None else self._begin_body(head, data, end)

    def _read_head(self, data: bytes, start: int, end: int) -> RequestHead | None:
        """llhttp reads the whole head ``data[start:end]`` and it is emitted.

        Returns the head when ``_begin_body`` must still follow it (a body, or a WebSocket switch),
        ``None`` when it has ended already (on_headers_complete ends every bodiless request inline).
        """
        fresh = self._stale
        if fresh:
            self._parser = httptools.HttpRequestParser(self)
            self._stale = False
        self._head = None
        self._line_length = data.find(0x0A, start) - start  # an int: memchr, not a substring search
        try:
            self._parser.feed_data(data if end == len(data) and not start else data[start:end])
        except httptools.HttpParserUpgrade:
            self._stale = True
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RequestError):
                raise cause from None
            if isinstance(cause, _NotOneRequestLine):  # the scanner finds its first fault
                raise classify(data[start:end], self._limits, str(cause)) from None
            raise MalformedRequest(f"malformed request: {exc}") from None
        except httptools.HttpParserError as exc:
            if self._head is None:
                if not fresh:  # llhttp may carry a decision over from the last request (Proxy-Connection)
                    self._stale = True
                    return self._read_head(data, start, end)  # once: the parser is fresh now
                raise classify(data[start:end], self._limits, str(exc)) from None
            # llhttp refused what it read after our head was built (a Transfer-Encoding it does not
            # know how to frame, say): the body is ours to read, the head stands.
            self._stale = True
        head = self._head
        if head is None:  # llhttp read no head in it ("PRI * HTTP/2.0", its HTTP/2 preface, say)
            raise classify(data[start:end], self._limits, "no request head")
        # A read that is exactly one plain-sized head (nearly every read) is kept by reference; the
        # same bytes in the next such read make the memo, if the head is plain. A differing head
        # costs one comparison (of lengths, or of bytes up to the first difference), and a
        # connection keeps at most REPEAT_LIMIT bytes alive for it.
        if not start and end == len(data) and end <= REPEAT_LIMIT and type(data) is bytes:
            if data != self._seen:
                self._seen = data
            elif head.keep_alive and head.upgrade is None and not (head.body_length or head.expect_continue):
                self._repeat = _Repeat(data, head)
                self._seen = data  # one object for both: an idle connection holds its head once
        if head.body_length:
            self._stale = True
        elif not (head.websocket and self._switch_websocket):
            return None
        return head

    # httptools callbacks. They run inside feed_data; raising a RequestError aborts the parse. There is
    # no on_message_begin, on_body or on_message_complete: llhttp is never given a body.

    def on_url(self, url: bytes) -> None:
        # Its length is build_head's to check, after the request line's: a second space before a
        # long target is the first fault, and 400 (the head is bounded by the budget already).
        self._url = url
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailing OWS is not part of the value. The field count and sizes are checked by build_head.
        self._headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        url = self._url
        if self._line_length != len(method) + len(url) + 11:  # 11: two SP, "HTTP/1.1" and CR
            raise _NotOneRequestLine("request line is not method SP target SP HTTP-version")
        self._head = head = build_head(
            METHOD_NAMES.get(method) or method.decode("ascii"),
            url,
            parser.get_http_version(),
            self._headers,
            self._limits,
        )
        events = self._events
        events.append(head)
        # _begin_body's common case, inline (every GET): a bodiless request that is no switch ends here.
        if not (head.body_length or (head.websocket and self._switch_websocket)):
            events.append(REQUEST_END)
            if not head.keep_alive:
                self._done = True
