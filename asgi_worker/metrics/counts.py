"""What a server counts, as plain numbers: no I/O, no clock, no ``prometheus_client``.

Two tallies, so that a server without metrics pays nothing per request:
- ``ServerCounts`` is always kept: connections accepted, refused, timed out, requests refused as
  malformed, HTTP/2 refusals, WebSockets. Each is one integer increment where it happens, per
  connection or per refusal, never per request.
- ``RequestHistogram`` is kept only when metrics are on. Per finished request: four equality
  checks (the label set is usually the last one's), a comparison (the duration is usually
  in the first bucket) and four additions.

Label sets stay bounded: the method is one of ``KNOWN_METHODS`` or ``_OTHER`` (a client chooses the
method), the status is what the app sent (100-999, checked by ``response.plan_response``), the
scheme is http/https/ws/wss (``proxy.py`` allows no other), the version is "1.0" or "1.1", an HTTP/2
refusal's kind is one of ``http2/session.py``'s ``REFUSALS`` (the server's names, never the peer's).
No path, no client address.

A snapshot is cumulative (every counter since the process started), so a lost or repeated one is
harmless, and adding the snapshots of the workers alive to the totals of the ones gone never goes
backwards.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Protocol, TypeGuard

__all__ = [
    "DURATION_BUCKETS",
    "KNOWN_METHODS",
    "TIMEOUT_KINDS",
    "RequestHistogram",
    "ServerCounts",
    "Totals",
    "snapshot",
]

# OpenTelemetry's default buckets for http.server.request.duration (seconds), as its semantic
# conventions give them; an observation falls in the first bucket whose bound it does not exceed
# (Prometheus' "le"), past the last one in +Inf.
DURATION_BUCKETS = (0.0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# OpenTelemetry's http.request.method: the methods of RFC 9110 and PATCH; anything else is "_OTHER".
KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})

# The connection deadlines that end a connection, by the name the metrics use.
TIMEOUT_KINDS = ("request_head", "request_body", "keep_alive")

_SLOTS = len(DURATION_BUCKETS) + 1  # the buckets and +Inf
_FIRST_BOUND = DURATION_BUCKETS[1]  # the first bucket above 0 (row index 2)


class ServerCounts:
    """Counters kept by every server, metrics on or off (integer increments, where things happen)."""

    __slots__ = ("accepted", "http2_refusals", "malformed", "refused", "timeouts", "ws_open", "ws_total")

    def __init__(self) -> None:
        self.accepted = 0  # connections accepted
        self.refused = 0  # requests answered 503 by --limit-concurrency (the connection then closes)
        self.malformed: dict[int, int] = {}  # requests refused as malformed, by the status answered
        self.timeouts = dict.fromkeys(TIMEOUT_KINDS, 0)
        # HTTP/2 streams and connections refused, by ``REFUSALS`` kind; empty until the first one (a
        # server that never speaks HTTP/2 never touches it).
        self.http2_refusals: dict[str, int] = {}
        self.ws_total = 0  # WebSocket connections accepted (101 sent)
        self.ws_open = 0

    def refused_malformed(self, status: int) -> None:
        self.malformed[status] = self.malformed.get(status, 0) + 1

    def refused_http2(self, kind: str, count: int) -> None:
        self.http2_refusals[kind] = self.http2_refusals.get(kind, 0) + count


class FinishedRequest(Protocol):
    """What ``RequestHistogram.record`` reads of a finished request (an ``http.cycle.HttpCycle``)."""

    scope: dict[str, Any]
    status: int  # 0: no response was sent
    start_time: float  # perf_counter() when its head arrived
    body_received: int
    bytes_sent: int


class RequestHistogram:
    """Request durations by label set, and body byte totals; only kept when metrics are on.

    ``series`` maps ``(method, status, scheme, version)`` to ``[sum, count per bucket..., +Inf]``
    (counts per bucket, not cumulative: the exposition accumulates them).

    ``record`` is on the hot path (the budget is a few hundred nanoseconds): the last label set's
    row is kept with the values it came from, so a run of like requests compares four short values
    instead of building and hashing a key (and normalising the method); most requests take under
    5 ms, which skips the ``bisect``.
    """

    __slots__ = (
        "_method",
        "_row",
        "_scheme",
        "_status",
        "_version",
        "request_bytes",
        "response_bytes",
        "series",
    )

    def __init__(self) -> None:
        self.series: dict[tuple[str, int, str, str], list[float]] = {}
        self.request_bytes = 0
        self.response_bytes = 0
        self._method: object = None
        self._status = -1
        self._scheme: object = None
        self._version: object = None
        self._row: list[float] = []

    def record(self, request: FinishedRequest, end: float) -> None:
        """Count ``request``, which finished at ``end`` (``perf_counter``)."""
        scope = request.scope
        method = scope["method"]
        status = request.status
        scheme = scope["scheme"]
        version = scope["http_version"]
        if (
            method == self._method
            and status == self._status
            and version == self._version
            and scheme == self._scheme
        ):
            row = self._row
        else:
            row = self._row_of(method, status, scheme, version)
        seconds = end - request.start_time
        row[0] += seconds
        if 0.0 < seconds <= _FIRST_BOUND:
            row[2] += 1
        else:
            row[bisect_left(DURATION_BUCKETS, seconds) + 1] += 1
        received = request.body_received
        if received:  # most requests have no body: no int to allocate then
            self.request_bytes += received
        self.response_bytes += request.bytes_sent

    def _row_of(self, method: str, status: int, scheme: str, version: str) -> list[float]:
        self._method, self._status, self._scheme, self._version = method, status, scheme, version
        key = (method if method in KNOWN_METHODS else "_OTHER", status, scheme, version)
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0, *[0] * _SLOTS]
        self._row = row
        return row

    @property
    def finished(self) -> int:
        """Requests recorded so far."""
        return int(sum(sum(row[1:]) for row in list(self.series.values())))


def snapshot(
    counts: ServerCounts,
    histogram: RequestHistogram | None,
    open_connections: int,
    active_requests: int,
) -> dict[str, Any]:
    """Everything counted so far, as a JSON-able dict (the form a worker sends its supervisor).

    Safe to call from another thread than the one counting: every container is copied first.
    """
    requests = []
    request_bytes = response_bytes = 0
    if histogram is not None:
        for (method, status, scheme, version), row in list(histogram.series.items()):
            requests.append([method, status, scheme, version, row[0], *map(int, row[1:])])
        request_bytes, response_bytes = histogram.request_bytes, histogram.response_bytes
    return {
        "requests": requests,
        "request_bytes": request_bytes,
        "response_bytes": response_bytes,
        "accepted": counts.accepted,
        "refused": counts.refused,
        "malformed": {str(status): n for status, n in list(counts.malformed.items())},
        "timeouts": dict(counts.timeouts),
        "http2_refusals": dict(list(counts.http2_refusals.items())),
        "ws_total": counts.ws_total,
        # Gauges: only the living add them up.
        "open_connections": open_connections,
        "active_requests": active_requests,
        "ws_open": counts.ws_open,
    }


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _request_row(entry: object) -> tuple[tuple[str, int, str, str], list[float]] | None:
    """A snapshot's histogram row as ``(labels, [sum, counts...])``, or None if it is malformed."""
    if not (isinstance(entry, list) and len(entry) == 5 + _SLOTS):
        return None
    method, status, scheme, version, *numbers = entry
    if not (isinstance(method, str) and isinstance(scheme, str) and isinstance(version, str)):
        return None
    if not (isinstance(status, int) and not isinstance(status, bool)):
        return None
    if not all(_is_number(n) for n in numbers):
        return None
    return (method, status, scheme, version), numbers


_COUNTERS = ("request_bytes", "response_bytes", "accepted", "refused", "ws_total")
_GAUGES = ("open_connections", "active_requests", "ws_open")
_LABELLED = ("malformed", "timeouts", "http2_refusals")


class Totals:
    """Snapshots added up. The supervisor keeps one for the workers that are gone and adds the latest
    snapshot of each living worker to a copy of it for a scrape.

    Built from untrusted-shape input (a worker's JSON): a malformed part is skipped, never raised on.
    """

    def __init__(self) -> None:
        self.series: dict[tuple[str, int, str, str], list[float]] = {}
        self.values: dict[str, float] = dict.fromkeys(_COUNTERS + _GAUGES, 0)
        self.labelled: dict[str, dict[str, int]] = {name: {} for name in _LABELLED}

    def copy(self) -> Totals:
        other = Totals()
        other.series = {key: list(row) for key, row in self.series.items()}
        other.values = dict(self.values)
        other.labelled = {name: dict(table) for name, table in self.labelled.items()}
        return other

    def add(self, snap: dict[str, Any], *, gauges: bool = True) -> None:
        """Add one snapshot; ``gauges=False`` for a worker that is gone (its gauges are 0 now)."""
        requests = snap.get("requests")
        for entry in requests if isinstance(requests, list) else ():
            parsed = _request_row(entry)
            if parsed is None:
                continue
            key, numbers = parsed
            row = self.series.get(key)
            if row is None:
                row = self.series[key] = [0.0] * (_SLOTS + 1)
            for i, number in enumerate(numbers):
                row[i] += number
        for name in _COUNTERS + (_GAUGES if gauges else ()):
            value = snap.get(name)
            if _is_number(value):
                self.values[name] += value
        for name in _LABELLED:
            table = snap.get(name)
            if isinstance(table, dict):
                mine = self.labelled[name]
                for label, n in table.items():
                    if _is_number(n):
                        mine[str(label)] = mine.get(str(label), 0) + int(n)

    @property
    def request_count(self) -> int:
        """Requests in the duration histogram."""
        return int(sum(sum(row[1:]) for row in self.series.values()))
