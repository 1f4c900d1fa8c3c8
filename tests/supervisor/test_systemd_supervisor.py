"""The supervisor under systemd: socket activation (LISTEN_FDS) and the sd_notify conversation,
read from a test NOTIFY_SOCKET."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from tests.processes import stop_tree
from tests.supervisor.harness import APPS, Supervised
from tests.timing import TICK, TIMEOUT

# A wrapper that does what systemd does before exec: the listening socket at fd 3, LISTEN_PID set
# to the pid that will run the supervisor (exec keeps it).
_ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "supervisor", *sys.argv[2:]])
"""


@contextlib.contextmanager
def activated(listener: socket.socket, *args: str, env: dict[str, str] | None = None) -> Iterator[Supervised]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _ACTIVATE, str(listener.fileno()), "--app-dir", APPS, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(listener.fileno(),),
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    running = Supervised(proc, listener.getsockname()[1])
    try:
        running.wait_log("worker(s) ready")
        yield running
    finally:
        stop_tree(proc, running.output)


def test_socket_activation_serves_the_passed_socket():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with activated(listener, "supapps:info", "--workers", "2") as sup:
            answers = {sup.get()["pid"] for _ in range(20)}
            assert answers <= {p.pid for p in sup.workers()}
            assert "Listening on http://127.0.0.1:" in sup.log


def read_datagrams(sock: socket.socket, until: str, timeout: float = TIMEOUT * 2) -> list[str]:
    """Every datagram received until one containing ``until``."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(TICK, deadline - time.monotonic()))
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until in messages[-1]:
            return messages
    raise AssertionError(f"{until!r} never came; got {messages}")


def test_sd_notify_ready_reloading_status_watchdog_stopping(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, socket.socket() as listener:
        notify.bind(path)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(int(0.4 * 1e6))}
        with activated(listener, "supapps:info", "--workers", "2", env=env) as sup:
            first = read_datagrams(notify, "READY=1")
            ready = next(m for m in first if "READY=1" in m)
            assert "STATUS=2 workers" in ready
            watchdogs = read_datagrams(notify, "WATCHDOG=1")
            assert watchdogs
            sup.signal(signal.SIGHUP)
            rolled = read_datagrams(notify, "READY=1")
            reloading = [m for m in rolled if "RELOADING=1" in m]
            assert reloading and "MONOTONIC_USEC=" in reloading[0]
            assert rolled.index(reloading[0]) < len(rolled) - 1  # READY=1 again after it
            sup.signal(signal.SIGTERM)
            stopped = read_datagrams(notify, "STOPPING=1")
            assert stopped
            assert sup.proc.wait(TIMEOUT * 2) == 0
        # Workers never talk to systemd themselves (NotifyAccess=main would drop it anyway).
        assert "NOTIFY_SOCKET" not in sup.log
