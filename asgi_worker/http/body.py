"""What follows a request head, shared by both parser adapters: its body, or a WebSocket switch.

Neither library frames bodies for us (``parse_httptools.py``, ``parse_h11.py``): once an adapter has a
head, the body it announces (``RequestHead.body_length``) is read here, a Content-Length body by
count and a chunked one by ``chunks.ChunkedBody``, and ``REQUEST_END`` follows its last byte. So the
two parsers cannot frame the same bytes two ways. A WebSocket handshake the server switches for
(``switch_websocket``) ends reading instead: ``switched`` keeps the bytes after its head.
"""

from __future__ import annotations

from asgi_worker.errors import RequestError
from asgi_worker.http.chunks import ChunkedBody
from asgi_worker.http.events import BODY_CHUNKED, REQUEST_END, BodyChunk, Event, RequestHead
from asgi_worker.http.limits import RequestLimits

__all__ = ["BodyReader"]


class BodyReader:
    """The half of a parser adapter after each head: the adapter reads heads and calls ``_begin_body``."""

    __slots__ = (
        "_body_left",
        "_chunks",
        "_done",
        "_events",
        "_head",
        "_limits",
        "_switch_websocket",
        "switched",
    )

    def __init__(self, limits: RequestLimits, switch_websocket: bool) -> None:
        self._limits = limits
        self._switch_websocket = switch_websocket
        self.switched: bytes | None = None  # the bytes after a WebSocket head we stopped at
        self._events: list[Event | RequestError] = []  # the list the current feed returns
        self._head: RequestHead | None = None  # the last head read
        self._body_left = 0  # Content-Length bytes still to come
        self._chunks: ChunkedBody | None = None  # the chunked body being read
        self._done = False  # nothing more will be read

    def _begin_body(self, head: RequestHead, data: bytes, end: int) -> int:
        """``head`` (emitted, ending at ``data[end]``) starts: end it, switch, or read its body next.

        Returns where reading goes on in ``data``: ``end``, or ``len(data)`` after a switch.
        """
        self._head = head
        if head.websocket and self._switch_websocket:  # the WebSocket side takes the connection
            self._end_request()
            self._done = True
            self.switched = data[end:]
            return len(data)
        length = head.body_length
        if length == 0:
            self._end_request()
        elif length == BODY_CHUNKED:
            self._chunks = ChunkedBody(self._limits.head, self._limits.body)
        else:
            self._body_left = length
        return end

    def _read_body(self, data: bytes, pos: int) -> int:
        """Read body bytes from ``data[pos:]``; return where the body ends, or ``len(data)``."""
        chunks = self._chunks
        if chunks is not None:
            end = chunks.read(data, pos, self._events)  # type: ignore[arg-type]
            if chunks.done:
                self._chunks = None
                self._end_request()
            return end
        size = len(data)
        end = min(size, pos + self._body_left)
        self._events.append(BodyChunk(data if end == size and not pos else data[pos:end]))
        self._body_left -= end - pos
        if not self._body_left:
            self._end_request()
        return end

    def _end_request(self) -> None:
        self._events.append(REQUEST_END)
        head = self._head
        if head is not None and not head.keep_alive:
            self._done = True
