"""A rolling restart behind a real load balancer: HAProxy in front of two supervisors, health-checking
each one's ``/readyz`` on its control port, as a cloud or in-cluster balancer does (deploy/README.md,
"A rollout, step by step"). One supervisor gets SIGTERM under steady load: its ``--shutdown-delay``
must outlast HAProxy's noticing the 503, and its drain must finish what was sent before. Not one
request may fail, and once the stopped one is gone only the survivor serves.

Skipped where ``haproxy`` is not installed (Debian's package ``haproxy``; .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import ServerProcess, free_port, stop_tree
from tests.supervisor.harness import ClientThreads, Supervised, supervise
from tests.timing import TICK, TIMEOUT, wait_until

DELAY = 1.5  # --shutdown-delay: several of HAProxy's 200 ms checks fit in it
AFTER = 1.0  # seconds of load kept going once the stopped supervisor has exited
BUDGET = 250 * TICK  # the whole test (25 s at factor 1): every wait takes from what is left
SERVED_BY = "X-Served-By"  # HAProxy names the server that answered in this response header


class Budget:
    """What is left of the test's time; each wait may take at most that, so the sum stays bounded."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        assert remaining > 0, "the test ran out of its time budget"
        return remaining


def haproxy_config(front: int, servers: dict[str, tuple[int, int]]) -> str:
    """HTTP mode; each server (name: app port, control port) is checked with ``GET /readyz`` on its
    control port every 200 ms, out after one failure and back after one success. A request whose
    connection fails is retried, on another server (redispatch)."""
    lines = [
        "global",
        "    maxconn 512",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 10s",
        "    timeout server 10s",
        "    retries 3",
        "    option redispatch",
        "frontend web",
        f"    bind 127.0.0.1:{front}",
        "    default_backend app",
        "backend app",
        "    balance roundrobin",
        "    option httpchk GET /readyz",
        f"    http-response set-header {SERVED_BY} %[srv_name]",
    ]
    for name, (port, control) in servers.items():
        lines.append(f"    server {name} 127.0.0.1:{port} check port {control} inter 200ms fall 1 rise 1")
    return "\n".join(lines) + "\n"


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def haproxy(config: Path, front: int, budget: Budget) -> Iterator[ServerProcess]:
    """``haproxy -f CONFIG -db`` (foreground) in its own session; killed, with its group, on exit."""
    proc = subprocess.Popen(
        ["haproxy", "-f", str(config), "-db"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    running = ServerProcess(proc, front, "stderr")
    try:
        listening = wait_until(lambda: proc.poll() is None and accepts(front), min(TIMEOUT, budget.left()))
        assert listening, f"haproxy is not listening on {front}: {running.text()}"
        yield running
    finally:
        stop_tree(proc, running.output)


class Through(ClientThreads):
    """Client threads sending GETs through the balancer on keep-alive connections, a short pause
    between two requests of a thread. Each 200 is recorded with its time and the server HAProxy
    names; ``failures`` lists every other status and every connection error (nothing is retried)."""

    def __init__(self, port: int, threads: int = 4, pause: float = TICK / 20) -> None:
        super().__init__(threads)
        self.port = port
        self.pause = pause
        self.served: list[tuple[float, str]] = []

    def count(self, server: str, since: float = 0.0, until: float = float("inf")) -> int:
        """Requests ``server`` answered between the two times."""
        with self._lock:
            return sum(1 for at, name in self.served if name == server and since <= at < until)

    def last(self, server: str) -> float:
        with self._lock:
            return max((at for at, name in self.served if name == server), default=0.0)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                with self._lock:
                    self.served.append((time.monotonic(), response.getheader(SERVED_BY, "?")))
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as exc:  # every failure counts; the connection starts over
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


@contextlib.contextmanager
def supervise_behind(control: int) -> Iterator[Supervised]:
    """Two workers of the pid app, the control listener on ``control``, the test's shutdown delay;
    not yet waited for (both start at once)."""
    flags = ("--workers", "2", "--control-bind", f"127.0.0.1:{control}", "--shutdown-delay", str(DELAY))
    with supervise("supapps:info", *flags, ready=False) as running:
        yield running


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (Debian package haproxy)"
)
def test_sigterm_behind_haproxy_fails_no_request(tmp_path):
    budget = Budget(BUDGET)
    controls = {"old": free_port(), "new": free_port()}
    front = free_port()
    with supervise_behind(controls["old"]) as old, supervise_behind(controls["new"]) as new:
        for running in (old, new):
            running.wait_log("worker(s) ready", timeout=budget.left())
        config = tmp_path / "haproxy.cfg"
        backends = {name: (sup.port, controls[name]) for name, sup in (("old", old), ("new", new))}
        config.write_text(haproxy_config(front, backends))
        with haproxy(config, front, budget) as balancer, Through(front) as clients:
            both = wait_until(lambda: min(clients.count("old"), clients.count("new")) >= 100, budget.left())
            assert both, f"old {clients.count('old')}, new {clients.count('new')}: {clients.failures[:5]}"
            old.signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert old.proc.wait(min(DELAY + TIMEOUT * 2, budget.left())) == 0, old.log
            gone = time.monotonic()
            time.sleep(AFTER)  # a stretch of load, not a wait for a state: the survivor takes all of it
            clients.stop()
        checks = balancer.text()
    assert clients.failures == [], (len(clients.failures), clients.failures[:5], checks)
    assert gone - signalled >= DELAY
    assert clients.count("old", until=signalled) and clients.count("new", until=signalled)
    assert clients.count("new", since=gone) >= 50
    assert clients.count("?") == 0
    # Taken out by the health check's 503 within the delay, not by refused connections after it.
    assert "Server app/old is DOWN, reason: Layer7 wrong status, code: 503" in checks, checks
    assert "Server app/new is DOWN" not in checks, checks
    assert clients.last("old") < signalled + DELAY
    assert clients.count("old", since=gone) == 0
    before = {name: clients.count(name, until=signalled) for name in ("old", "new")}
    print(
        f"before SIGTERM: {before}; old's last answer {(clients.last('old') - signalled) * 1000:.0f} ms "
        f"after it, exit after {gone - signalled:.2f} s; new after it: {clients.count('new', since=gone)}"
    )
