"""The metrics a scrape shows, named and described in one place, as plain data (no library).

Names follow OpenTelemetry's HTTP server conventions as Prometheus exports them where those exist
(``http_server_request_duration_seconds``, ``http_server_active_requests``, the body sizes); what
OpenTelemetry does not name is ours, under ``asgi_server_`` (one server's or the sum of the
workers') and ``asgi_supervisor_`` (the supervisor's own view). ``exposition`` turns these into
``prometheus_client`` families; README.md lists every one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asgi_worker.metrics.counts import Totals

__all__ = ["Family", "server_families"]


@dataclass
class Family:
    """One metric: ``kind`` is "counter", "gauge" or "histogram"; ``name`` has no ``_total`` suffix.

    ``samples`` holds ``(label values, value)``; for a histogram the value is
    ``(per-bucket counts + [+Inf], sum)``, buckets being ``DURATION_BUCKETS``.
    """

    kind: str
    name: str
    doc: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], object]] = field(default_factory=list)
    unit: str = ""

    def add(self, labels: tuple[str, ...], value: object) -> Family:
        self.samples.append((labels, value))
        return self


_DURATION_LABELS = (
    "http_request_method",
    "http_response_status_code",
    "url_scheme",
    "network_protocol_version",
)


def server_families(totals: Totals) -> list[Family]:
    """The HTTP server's metrics from ``totals`` (one process's, or every worker's added up)."""
    values = totals.values
    duration = Family(
        "histogram",
        "http_server_request_duration",
        "Duration of HTTP server requests, from the request head to the app's return.",
        _DURATION_LABELS,
        unit="seconds",
    )
    for (method, status, scheme, version), row in sorted(totals.series.items()):
        duration.add((method, str(status) if status else "", scheme, version), (list(row[1:]), row[0]))
    malformed = Family(
        "counter",
        "asgi_server_requests_malformed",
        "Requests refused as malformed or over a limit (a bad head or body, 413, 414, 431), by status.",
        ("http_response_status_code",),
    )
    for code, n in sorted(totals.labelled["malformed"].items()):
        malformed.add((code,), n)
    timeouts = Family(
        "counter",
        "asgi_server_timeouts",
        "Connections ended by a timeout: request_head, request_body or keep_alive.",
        ("kind",),
    )
    for kind, n in sorted(totals.labelled["timeouts"].items()):
        timeouts.add((kind,), n)
    http2_refusals = Family(
        "counter",
        "asgi_server_http2_refusals",
        "HTTP/2 streams and connections refused, by kind: floods (GOAWAY ENHANCE_YOUR_CALM), limits and"
        " malformed frames or requests.",
        ("kind",),
    )
    for kind, n in sorted(totals.labelled["http2_refusals"].items()):
        http2_refusals.add((kind,), n)
    return [
        duration,
        Family("gauge", "http_server_active_requests", "Requests whose app is running.").add(
            (), values["active_requests"]
        ),
        Family("counter", "http_server_request_body_size", "Request body bytes received.", unit="bytes").add(
            (), values["request_bytes"]
        ),
        Family("counter", "http_server_response_body_size", "Response body bytes sent.", unit="bytes").add(
            (), values["response_bytes"]
        ),
        Family("gauge", "asgi_server_open_connections", "Open client connections (HTTP and WebSocket).").add(
            (), values["open_connections"]
        ),
        Family("counter", "asgi_server_connections_accepted", "Client connections accepted.").add(
            (), values["accepted"]
        ),
        Family(
            "counter",
            "asgi_server_connections_refused",
            "Connections answered 503 and closed by --limit-concurrency.",
        ).add((), values["refused"]),
        malformed,
        timeouts,
        http2_refusals,
        Family("gauge", "asgi_server_websocket_open_connections", "Open WebSocket connections.").add(
            (), values["ws_open"]
        ),
        Family("counter", "asgi_server_websocket_connections", "WebSocket connections accepted.").add(
            (), values["ws_total"]
        ),
    ]
