"""What every test that starts real server processes needs: a free port, output collected from
threads (pipes never fill), and a cleanup that leaves nothing behind, even workers that moved to
their own process groups."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.timing import TICK, TIMEOUT, wait_until

IN_FLIGHT_ENV = "ASGI_WORKER_TEST_IN_FLIGHT"
"""The test apps append their pid as a line to the file this variable names when a slow request
reaches them: a test that must act while a request is in flight waits for the line, not a sleep."""


def in_flight_env(marker: Path) -> dict[str, str]:
    """The environment that makes the test apps report slow requests in ``marker``."""
    return {IN_FLIGHT_ENV: str(marker)}


def wait_in_flight(marker: Path, count: int = 1, timeout: float = TIMEOUT) -> None:
    """Wait until ``count`` slow requests have reached the app; fails the test after ``timeout``."""

    def arrived() -> int:
        return len(marker.read_text().splitlines()) if marker.exists() else 0

    assert wait_until(lambda: arrived() >= count, timeout), f"{arrived()} of {count} requests reached the app"


def accepting(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port`` (a stopping server does not)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TICK).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (the small race until a bind is acceptable)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Output:
    """The lines a process writes to its pipes, read by daemon threads as they come."""

    def __init__(self, proc: subprocess.Popen[str], *names: str) -> None:
        self.lines: dict[str, list[str]] = {name: [] for name in names}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read, args=(proc, n), daemon=True) for n in names]
        for thread in self._threads:
            thread.start()

    def _read(self, proc: subprocess.Popen[str], name: str) -> None:
        for line in getattr(proc, name):
            with self._lock:
                self.lines[name].append(line)

    def text(self, name: str) -> str:
        with self._lock:
            return "".join(self.lines[name])

    def join(self) -> None:
        for thread in self._threads:
            thread.join(TIMEOUT)

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)


def stop_tree(proc: subprocess.Popen[str], output: Output | None = None) -> None:
    """SIGKILL ``proc``'s process group and every descendant, wait for them, close the pipes.

    Descendants are also found by their command line: a worker forked in the instant before its
    supervisor died has been re-parented to init and is no child of anybody we know.
    """
    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        descendants = psutil.Process(proc.pid).children(recursive=True)
    command = proc.args if isinstance(proc.args, list) else []
    for other in psutil.process_iter(["cmdline", "ppid"]):
        if other.info["ppid"] == 1 and command and other.info["cmdline"] == [str(a) for a in command]:
            descendants.append(other)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:  # a supervisor's workers run in process groups of their own
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.wait(TIMEOUT)
    psutil.wait_procs(descendants, timeout=TIMEOUT)
    if output is not None:
        output.join()
        if output.alive():  # a reader still blocked in read(): closing would wait on its lock
            return
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class ServerProcess:
    """A server started by a test: its process, port, output, workers, and a JSON GET helper."""

    def __init__(self, proc: subprocess.Popen[str], port: int, *streams: str) -> None:
        self.proc = proc
        self.port = port
        self.output = Output(proc, *streams)

    def text(self, name: str = "stderr") -> str:
        return self.output.text(name)

    def wait_for(
        self, needle: str, name: str = "stderr", count: int = 1, timeout: float = TIMEOUT * 2
    ) -> str:
        """Wait until ``needle`` was written ``count`` times to ``name``; returns that output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text(name)
            if text.count(needle) >= count:
                return text
            if self.proc.poll() is not None:
                self.output.join()
                break
            time.sleep(TICK / 2)
        raise AssertionError(f"{needle!r} x{count} not in {name} within {timeout} s:\n{self.text(name)}")

    def get(self, path: str = "/", timeout: float = TIMEOUT) -> dict[str, object]:
        """One GET on a fresh connection; its JSON answer (the status must be 200)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200, response.status
            return json.loads(response.read())  # type: ignore[no-any-return]
        finally:
            conn.close()

    def workers(self) -> list[psutil.Process]:
        """The live worker processes (children of the server's main process)."""
        try:
            return [p for p in psutil.Process(self.proc.pid).children() if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []


@contextlib.contextmanager
def python_m_server(*args: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``python -m asgi_worker ARGS --port P`` on a free port, once it logged "running on"; its
    whole process tree stopped in the end."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgi_worker", *args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    running = ServerProcess(proc, port, "stderr")
    try:
        running.wait_for("running on")
        yield running
    finally:
        stop_tree(proc, running.output)
