"""Run ``asgi-supervise`` as a real process; load it from client threads; watch its log.

Every process starts in its own session and is killed (the whole group, and any worker that left
it) in ``finally``; every wait is a multiple of ``tests.timing.TICK``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from tests.processes import ServerProcess, free_port, stop_tree
from tests.timing import TIMEOUT, wait_until

APPS = str(Path(__file__).parent / "apps")


class Supervised(ServerProcess):
    """A running supervisor; its log is what it (and its workers) wrote to stderr."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        super().__init__(proc, port, "stderr")

    @property
    def log(self) -> str:
        return self.text("stderr")

    def wait_log(self, needle: str, count: int = 1, timeout: float = TIMEOUT * 2) -> str:
        """Wait until ``needle`` was logged ``count`` times; returns the log."""
        return self.wait_for(needle, "stderr", count, timeout)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)


@contextlib.contextmanager
def supervise(
    *args: str, env: dict[str, str] | None = None, ready: bool = True, prefix: tuple[str, ...] = ()
) -> Iterator[Supervised]:
    """Start ``python -m supervisor --app-dir APPS --port P ARGS``; wait for "All ... ready".

    ``prefix`` is a command put in front (``unshare ...``, a cgroup mover) that ends by exec-ing or
    forking the supervisor; the whole tree is killed afterwards either way."""
    port = free_port()
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "supervisor", "--app-dir", APPS, "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    running = Supervised(proc, port)
    try:
        if ready:
            running.wait_log("worker(s) ready")
        yield running
    finally:
        stop_tree(proc, running.output)


class ClientThreads:
    """Threads that each run ``_run`` until ``stop`` (a ``with`` block starts and stops them);
    ``failures`` and ``_lock`` are for what they record. Load generators subclass it."""

    def __init__(self, threads: int) -> None:
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self: _Threads) -> _Threads:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self, timeout: float = TIMEOUT * 2) -> None:
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a client thread is stuck"

    def _run(self) -> None:
        raise NotImplementedError


_Threads = TypeVar("_Threads", bound=ClientThreads)


class Load(ClientThreads):
    """Client threads sending GETs on keep-alive connections, as a well-behaved HTTP/1.1 client
    does: a response with ``connection: close`` makes it reconnect, nothing is ever retried.
    ``failures`` lists every request that did not get a 200."""

    def __init__(self, port: int, threads: int = 8, path: str = "/") -> None:
        super().__init__(threads)
        self.port = port
        self.path = path
        self.ok = 0
        self.pids: set[int] = set()

    def wait_requests(self, count: int, timeout: float = TIMEOUT * 6) -> None:
        """Wait until ``count`` requests got their 200; fails the test after ``timeout``."""
        answered = wait_until(lambda: self.ok >= count, timeout)
        assert answered, f"{self.ok} of {count} requests answered; failures: {self.failures[:5]}"

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                pid = json.loads(body)["pid"]
                with self._lock:
                    self.ok += 1
                    self.pids.add(pid)
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as exc:  # every failure counts; the connection starts over
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
