"""The control listener's HTTP, sans-I/O: a request's bytes in, the answer's bytes out.

Deliberately small, since it faces whoever can reach the control address: one request per
connection (``Connection: close``), GET or HEAD only, the head at most ``MAX_HEAD`` bytes, no body.
The request line is read strictly (method SP target SP HTTP/1.x); header lines are only searched for
``Accept`` (to offer OpenMetrics). Anything else: 400 (bad bytes), 405 (another method), 404
(another path), 431 (a head too large). The endpoints' answers are not cached: a scrape is rare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["MAX_HEAD", "ControlRequest", "Endpoints", "answer", "error_answer", "parse_request"]

# A scraper's or probe's request head is a few hundred bytes; 8 KiB is generous and bounds memory.
MAX_HEAD = 8192

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
}
_TEXT = "text/plain; charset=utf-8"
_NO_METRICS = b"metrics need prometheus_client: pip install 'asgi-worker[metrics]'\n"


@dataclass(frozen=True)
class ControlRequest:
    method: str  # GET or HEAD
    path: str  # the target without its query
    accept: str  # the Accept header, "" if none


class ControlRefusal(Exception):
    """The request cannot be served; ``status`` is the answer."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def parse_request(data: bytes) -> ControlRequest | None:
    """The request in ``data``, or None while its head is incomplete. Raises ``ControlRefusal``."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD:
            raise ControlRefusal(431)
        return None
    if end + 4 > MAX_HEAD:
        raise ControlRefusal(431)
    try:
        text = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ControlRefusal(400) from None
    line, *fields = text.split("\r\n")
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1].startswith("/"):
        raise ControlRefusal(400)
    if any(not (0x21 <= ord(c) <= 0x7E) for c in parts[0] + parts[1]):
        raise ControlRefusal(400)
    accept = ""
    for field in fields:
        name, colon, value = field.partition(":")
        if not colon or not name or name != name.strip() or any(ord(c) < 0x20 and c != "\t" for c in field):
            raise ControlRefusal(400)
        if name.lower() == "accept":
            accept = value.strip()
    if parts[0] not in ("GET", "HEAD"):
        raise ControlRefusal(405)
    return ControlRequest(parts[0], parts[1].partition("?")[0], accept)


class Endpoints(Protocol):
    """What the control listener asks of its owner (the supervisor, or a single process)."""

    def live(self) -> tuple[bool, str]:
        """Whether the process's loop runs, and one line saying so."""

    def ready(self) -> tuple[bool, str]:
        """Whether to send traffic here, and one line saying why (not)."""

    def metrics(self, accept: str) -> tuple[bytes, str] | None:
        """The scrape's body and content type; None when metrics are not installed."""


def answer(request: ControlRequest, endpoints: Endpoints) -> bytes:
    """The whole response to ``request``."""
    path = request.path
    if path == "/metrics":
        scrape = endpoints.metrics(request.accept)
        if scrape is None:
            return _response(
                501, b"metrics need prometheus_client: pip install 'asgi-worker[metrics]'\n", _TEXT, request
            )
        body, content_type = scrape
        return _response(200, body, content_type, request)
    if path in ("/livez", "/readyz"):
        ok, why = endpoints.live() if path == "/livez" else endpoints.ready()
        return _response(200 if ok else 503, why.encode() + b"\n", _TEXT, request)
    return _response(404, b"not found: try /metrics, /livez or /readyz\n", _TEXT, request)


def error_answer(status: int) -> bytes:
    """The answer to a request that could not be read."""
    return _response(status, _REASONS[status] + b"\n", _TEXT, None)


def _response(status: int, body: bytes, content_type: str, request: ControlRequest | None) -> bytes:
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\ncache-control: no-store\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS[status], content_type.encode(), len(body))
    )
    if request is not None and request.method == "HEAD":
        return head
    return head + body
