"""Run real ``gunicorn -k asgi_worker.Worker`` processes for the tests, bounded and cleaned up."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.processes import ServerProcess, free_port, stop_tree
from tests.timing import TICK, TIMEOUT

APPS = str(Path(__file__).parent / "apps")


class Gunicorn(ServerProcess):
    """A running arbiter: what it wrote to stderr (its log) and stdout (access lines with ``-``)."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        super().__init__(proc, port, "stderr", "stdout")


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
