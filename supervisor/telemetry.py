"""The supervisor's control endpoints: ``/metrics`` for every worker at once, ``/livez``, ``/readyz``.

Served from the arbiter's own poll loop (``asgi_worker.control.listener``), never by a
worker, so they answer while every worker is blocked or busy, and an answer to ``/livez`` is itself
the proof that the supervisor's loop runs.

Counters never go backwards: each worker sends cumulative snapshots (``heartbeat.py``); when it
exits, its last one is added to ``gone`` (gauges left out, they are 0 now). A scrape shows ``gone``
plus the latest snapshot of every living worker. What a worker counted after its last snapshot is
lost only if it dies without a drain (SIGKILL, a crash): at most one ``METRICS_INTERVAL``.

Worker restarts are counted by reason when the worker leaves (``RESTART_REASONS``), not when it is
asked to: a replacement that never happened is not a restart.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from asgi_worker.control.endpoints import load_scrape
from asgi_worker.metrics.counts import Totals
from asgi_worker.metrics.families import Family, server_families
from asgi_worker.metrics.sockets import accept_queue_families
from supervisor.policy import WorkerState
from supervisor.workers import WorkerRecord

__all__ = ["RESTART_REASONS", "SupervisorEndpoints"]

# Why a worker left its slot, as the restarts metric labels it.
RESTART_REASONS = ("max_requests", "memory", "crash", "blocked", "rolling_restart", "reload", "scale")


class SupervisorEndpoints:
    """What the supervisor's control listener answers. ``workers`` and ``state`` read the arbiter."""

    def __init__(
        self,
        workers: Callable[[], list[WorkerRecord]],
        ready: Callable[[], tuple[bool, str]],
        sockets: list[socket.socket],
        socket_names: list[str],
    ) -> None:
        self._workers = workers
        self._ready = ready
        self._sockets = sockets
        self._socket_names = socket_names
        self.gone = Totals()
        self.restarts = dict.fromkeys(RESTART_REASONS, 0)
        self._scrape: Any = None
        self._scrape_loaded = False

    def worker_left(self, worker: WorkerRecord, reason: str | None) -> None:
        """``worker`` has exited: keep its counts; count a restart when ``reason`` says it was one."""
        if worker.metrics is not None:
            self.gone.add(worker.metrics, gauges=False)
        if reason is not None:
            self.restarts[reason] += 1

    # Endpoints

    def live(self) -> tuple[bool, str]:
        return True, f"supervisor {os.getpid()} running"

    def ready(self) -> tuple[bool, str]:
        return self._ready()

    def metrics(self, accept: str) -> tuple[bytes, str] | None:
        if not self._scrape_loaded:  # on the first scrape: a supervisor never scraped never imports it
            self._scrape_loaded = True
            self._scrape = load_scrape(self._families)
        scrape = self._scrape
        return None if scrape is None else scrape.render(accept)

    def _families(self) -> list[Family]:
        workers = self._workers()
        totals = self.gone.copy()
        for worker in workers:
            if worker.metrics is not None:
                totals.add(worker.metrics)
        return (
            server_families(totals)
            + accept_queue_families(self._sockets, self._socket_names)
            + self._worker_families(workers)
        )

    def _worker_families(self, workers: list[WorkerRecord]) -> list[Family]:
        now = time.monotonic()
        states = Family("gauge", "asgi_supervisor_workers", "Worker processes by state.", ("state",))
        for state in (WorkerState.BOOTING, WorkerState.READY, WorkerState.DRAINING):
            states.add((state.value,), sum(1 for w in workers if w.state is state))
        restarts = Family(
            "counter",
            "asgi_supervisor_worker_restarts",
            "Workers replaced, by reason: " + ", ".join(RESTART_REASONS) + ".",
            ("reason",),
        )
        for reason, n in self.restarts.items():
            restarts.add((reason,), n)
        rss = Family(
            "gauge",
            "asgi_supervisor_worker_resident_memory",
            "Each worker's resident memory.",
            ("slot", "pid"),
            unit="bytes",
        )
        beat = Family(
            "gauge",
            "asgi_supervisor_worker_heartbeat_age",
            "Seconds since each worker's event loop last ticked.",
            ("slot", "pid"),
            unit="seconds",
        )
        for worker in sorted(workers, key=lambda w: (w.slot, w.pid)):
            labels = (str(worker.slot), str(worker.pid))
            memory = resident_memory(worker.pid)
            if memory is not None:
                rss.add(labels, memory)
            beat.add(labels, max(0.0, now - worker.last_beat))
        return [states, restarts, rss, beat]


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_memory(pid: int) -> int | None:
    """``pid``'s resident set size in bytes (Linux ``/proc``, else psutil), None if unknown."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None
