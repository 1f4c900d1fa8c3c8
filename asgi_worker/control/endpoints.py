"""What a single process (``python -m asgi_worker --control-bind``) answers on its control listener.

- ``/livez``: 200 while the server's event loop ticks; 503 once it has not for ``LIVENESS_STALL``
  seconds (an app blocking the loop: restarting the process is the cure). Answered from the control
  thread, so a blocked loop is reported rather than silencing the probe.
- ``/readyz``: 200 once serving, 503 while starting and from the first moment of a stop (the
  ``--shutdown-delay`` included).
- ``/metrics``: this process's counters, its accept queue, and ``process_*``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from asgi_worker.metrics.counts import Totals
from asgi_worker.metrics.families import Family, server_families
from asgi_worker.metrics.sockets import accept_queue_families

__all__ = ["LIVENESS_STALL", "ProcessEndpoints", "load_scrape"]

logger = logging.getLogger("asgi_worker.error")

# Seconds without a tick after which a loop counts as blocked: gunicorn's --timeout default, and the
# supervisor's --timeout-worker-healthcheck default.
LIVENESS_STALL = 30.0


class ServedProcess(Protocol):
    """What the endpoints read of a ``Server``."""

    started: bool
    last_tick: float  # time.monotonic() of the loop's last tick; 0.0 before the first

    @property
    def should_exit(self) -> bool: ...
    def metrics_snapshot(self) -> dict[str, Any]: ...
    def listening(self) -> tuple[list[socket.socket], list[str]]: ...


def load_scrape(collect: Callable[[], list[Family]]) -> Any:
    """A ``metrics.exposition.Scrape`` for ``collect``, or None (one warning) without prometheus_client."""
    try:
        from asgi_worker.metrics.exposition import Scrape
    except ImportError:
        logger.warning("/metrics needs prometheus_client: pip install 'asgi-worker[metrics]'")
        return None
    return Scrape(collect)


class ProcessEndpoints:
    """The control endpoints of one serving process."""

    def __init__(self, server: ServedProcess) -> None:
        self._server = server
        self._scrape = load_scrape(self._families)

    def live(self) -> tuple[bool, str]:
        last = self._server.last_tick
        if not last:
            return True, "starting"
        stalled = time.monotonic() - last
        if stalled > LIVENESS_STALL:
            return False, f"event loop blocked for {stalled:.0f} s"
        return True, "event loop running"

    def ready(self) -> tuple[bool, str]:
        server = self._server
        if server.should_exit:
            return False, "stopping"
        if not server.started:
            return False, "starting"
        return True, "serving"

    def metrics(self, accept: str) -> tuple[bytes, str] | None:
        scrape = self._scrape
        return None if scrape is None else scrape.render(accept)

    def _families(self) -> list[Family]:
        totals = Totals()
        totals.add(self._server.metrics_snapshot())
        sockets, names = self._server.listening()
        return server_families(totals) + accept_queue_families(sockets, names)
