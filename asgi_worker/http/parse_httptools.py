"""Sans-I/O adapter: httptools (llhttp) callbacks in, our three events out.

Strategy: httptools calls us back while it parses; the callbacks only collect. ``feed`` returns the
events of every request completed or begun in that chunk, in order. Bad input never raises out of
``feed``: the ``RequestError`` that answers it is the last item of the list and the parser is dead
afterwards, so requests pipelined before the garbage are still served (nothing lost).

Memory: llhttp buffers an unfinished token itself, so a client could stream an endless header value.
Besides the exact checks in ``build_head`` we count the bytes of every chunk that starts and ends
inside the same head; past the head limit that is a 431 before the head ever completes.

After a request whose answer will close the connection (no keep-alive) the rest is ignored.
"""

from __future__ import annotations

import httptools

from asgi_worker.errors import (
    HeadersTooLarge,
    MalformedRequest,
    MethodNotImplemented,
    RequestError,
    TargetTooLong,
)
from asgi_worker.http.events import REQUEST_END, BodyChunk, Event
from asgi_worker.http.headers import build_head, is_token
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
        "_in_head",
        "_keep_alive",
        "_limits",
        "_parser",
        "_url",
    )

    def __init__(self, limits: HeadLimits) -> None:
        self._limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event | RequestError] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._head_ended = False
        self._head_bytes = 0
        self._keep_alive = True
        self._done = False

    @property
    def in_head(self) -> bool:
        """True while part of a request head has arrived but not all of it."""
        return self._in_head

    def feed(self, data: bytes) -> list[Event | RequestError]:
        """Parse ``data``; return the events it completes. A ``RequestError`` can only come last."""
        if self._done:
            return []
        events = self._events = []
        was_in_head = self._in_head
        self._head_ended = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops at the end of a request that asked to switch protocols. We answer it
            # over HTTP (the WebSocket layer decides before this), so parse the rest afresh.
            offset = exc.args[0]
            self._parser = httptools.HttpRequestParser(self)
            if offset < len(data) and not self._done:
                events.extend(self.feed(data[offset:]))
            self._events = events
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ if isinstance(exc.__context__, RequestError) else None, exc)
        except httptools.HttpParserInvalidMethodError as exc:
            method = data.split(b" ", 1)[0]
            if not events and not was_in_head and is_token(method) and len(method) <= 32:
                self._fail(MethodNotImplemented(f"method {method[:32]!r} is not implemented"), exc)
            else:
                self._fail(None, exc)
        except httptools.HttpParserError as exc:
            self._fail(None, exc)
        if self._in_head and not self._done:
            if was_in_head and not self._head_ended:
                self._head_bytes += len(data)
                if self._limits.head and self._head_bytes > self._limits.head:
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

    def on_message_begin(self) -> None:
        if self._done:  # bytes after a closing request: stop llhttp here, they are never answered
            raise _Discard
        self._in_head = True
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url
        limit = self._limits.request_line
        if limit and len(self._url) > limit:
            raise TargetTooLong(f"request target longer than {limit} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.append((name.lower(), value))
        limits = self._limits
        if limits.fields and len(headers) > limits.fields:
            raise HeadersTooLarge(f"more than {limits.fields} header fields")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_ended = True
        parser = self._parser
        head = build_head(
            parser.get_method().decode("ascii"),
            self._url,
            parser.get_http_version(),
            self._headers,
            self._limits,
        )
        self._keep_alive = head.keep_alive
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self._events.append(BodyChunk(body))

    def on_message_complete(self) -> None:
        self._events.append(REQUEST_END)
        if not self._keep_alive:
            self._done = True
