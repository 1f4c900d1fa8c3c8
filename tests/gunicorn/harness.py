"""Run real ``gunicorn -k asgi_worker.Worker`` processes for the tests, bounded and cleaned up."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.processes import Output, free_port, stop_tree
from tests.timing import TICK, TIMEOUT

APPS = str(Path(__file__).parent / "apps")


class Gunicorn:
    """A running arbiter: its process, port, and what it wrote to stderr and stdout."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.output = Output(proc, "stderr", "stdout")

    def text(self, name: str = "stderr") -> str:
        return self.output.text(name)

    def wait_for(
        self, needle: str, name: str = "stderr", count: int = 1, timeout: float = TIMEOUT * 2
    ) -> str:
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

    def workers(self) -> list[psutil.Process]:
        try:
            return [p for p in psutil.Process(self.proc.pid).children() if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []

    def get(self, path: str = "/", timeout: float = TIMEOUT) -> dict[str, object]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200, response.status
            return json.loads(response.read())  # type: ignore[no-any-return]
        finally:
            conn.close()


def wait_accepting(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT * 2
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=TICK).close()
            return
        except OSError:
            time.sleep(TICK / 2)


@contextlib.contextmanager
def gunicorn(
    *args: str,
    app: str = "gapps:app",
    worker: str = "asgi_worker.Worker",
    ready: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Gunicorn]:
    """Start ``python -m gunicorn -k WORKER -b 127.0.0.1:PORT ARGS APP`` and wait for a served request."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            worker,
            "-b",
            f"127.0.0.1:{port}",
            "--pythonpath",
            APPS,
            *args,
            app,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    running = Gunicorn(proc, port)
    try:
        if ready:
            wait_accepting(port, proc)
            running.wait_for("Booting worker")
        yield running
    finally:
        stop_tree(proc, running.output)
