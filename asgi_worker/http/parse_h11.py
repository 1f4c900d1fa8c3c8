"""Sans-I/O adapter: h11 reads request heads, our three events come out; the twin of ``parse_httptools``.

Strategy: every head goes through ``head_scan.HeadScanner`` as it arrives, which refuses a bad line as
soon as it is complete and holds the head until its blank line (h11 on its own accepts a bare CR as
nothing and waits, merges "Content-Length: 5, 5", and takes obs-fold). The whole, checked head is then
read by a fresh ``h11.Connection`` (our responses are written by ``http/response.py``, so h11 serves
as a pure request-head reader), and ``build_head`` settles it as it does for httptools, with the
field values as the scanner read them (as sent, as llhttp hands them over). When h11
refuses a head the scanner passed, ``head_scan.classify`` gives the answer (h11 answers 501 for a
coding we answer 400 for, say). The body is read by ``body.BodyReader``, as on httptools.

Like the httptools adapter, ``feed`` never raises for bad input: a ``RequestError`` comes last, and
with ``switch_websocket`` it stops after a WebSocket handshake head, leaving the rest in ``switched``.
"""

from __future__ import annotations

import h11

from asgi_worker.errors import MalformedRequest, RequestError
from asgi_worker.http.body import BodyReader
from asgi_worker.http.events import Event, RequestHead
from asgi_worker.http.head_scan import HeadScanner, classify
from asgi_worker.http.headers import build_head
from asgi_worker.http.limits import RequestLimits

__all__ = ["H11Parser"]

_SERVER = h11.SERVER


class H11Parser(BodyReader):
    """Turns request bytes into events with h11. One instance per connection."""

    __slots__ = ("_scanner",)

    def __init__(self, limits: RequestLimits, switch_websocket: bool = False) -> None:
        super().__init__(limits, switch_websocket)
        self._scanner = HeadScanner(limits)

    @property
    def in_head(self) -> bool:
        """True while part of a request head has arrived but not all of it."""
        return self._scanner.started

    def feed(self, data: bytes) -> list[Event | RequestError]:
        """Parse ``data``; return the events it completes. A ``RequestError`` can only come last."""
        if self._done:
            return []
        events = self._events = []
        size = len(data)
        pos = 0
        try:
            while pos < size and not self._done:
                if self._body_left or self._chunks is not None:
                    pos = self._read_body(data, pos)
                else:
                    pos = self._scan_head(data, pos)
        except RequestError as error:
            self._done = True
            self._scanner = HeadScanner(self._limits)  # in_head is False from here on
            events.append(error)
        return events

    def _scan_head(self, data: bytes, pos: int) -> int:
        scanner = self._scanner
        end = scanner.feed(data, pos)
        if end < 0:
            return len(data)
        self._scanner = HeadScanner(self._limits)
        head = self._read_head(scanner)
        self._events.append(head)
        return self._begin_body(head, data, end)

    def _read_head(self, scanner: HeadScanner) -> RequestHead:
        raw = scanner.head
        conn = h11.Connection(_SERVER, max_incomplete_event_size=len(raw) + 1)
        conn.receive_data(raw)
        try:
            request = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise classify(raw, self._limits, str(exc)) from None
        if type(request) is not h11.Request:  # cannot happen: the scanner found a whole head
            raise MalformedRequest("h11 did not read the request head")
        return build_head(
            request.method.decode("ascii"),
            request.target,
            request.http_version.decode("ascii"),
            # The fields as the scanner read them: as sent, where h11 would lowercase a
            # Transfer-Encoding value and merge Content-Length values (llhttp does neither).
            scanner.fields,
            self._limits,
        )
