"""Real servers for the wire campaigns, and one fuzz input sent to one of them over a raw socket.

Every server serves ``tests.fuzz.echo_app:app`` with the same limits and short timeouts (``SERVER_TIMEOUT``
for keep-alive and for an unfinished head), in its own process group, and is killed with its
children on the way out (``tests.processes.stop_tree``), also on Ctrl-C.

An exchange sends the bytes, then either half-closes at once (the server sees EOF) or keeps the
connection open for the server's own timeouts plus ``MARGIN`` and half-closes only then. What it
records: each response's status and echo, and how the connection ended. No close within the
timeouts plus the margin after EOF is a hang.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.gunicorn.harness import wait_accepting
from tests.processes import Output, free_port, stop_tree

ROOT = Path(__file__).resolve().parent.parent.parent
APP = "tests.fuzz.echo_app:app"
SERVER_TIMEOUT = 1  # --timeout-keep-alive and --timeout-request-header of every server
MARGIN = 2.0  # how much later than its timeouts a server may close and still not hang
STARTUP = 30.0  # seconds a server may take to answer its first request
LIMIT_REQUEST_LINE = "8190"  # ours by default; gunicorn's default is 4094

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@dataclass
class Server:
    """One running server: what it is called, its process and port."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    output: Output

    def rss(self) -> int:
        """Resident memory of the server and its workers, in bytes (0 once gone)."""
        try:
            main = psutil.Process(self.proc.pid)
            return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])
        except psutil.NoSuchProcess:
            return 0

    def alive(self) -> bool:
        return self.proc.poll() is None


def _command(kind: str, http: str, port: int) -> tuple[list[str], dict[str, str]]:
    timeout = str(SERVER_TIMEOUT)  # whole seconds: gunicorn takes no fraction
    if kind == "ours":
        return [
            sys.executable, "-m", "asgi_worker", APP, "--host", "127.0.0.1", "--port", str(port),
            "--http", http, "--lifespan", "off", "--no-access-log", "--log-level", "warning",
            "--timeout-keep-alive", timeout, "--timeout-request-header", timeout,
            "--limit-request-line", LIMIT_REQUEST_LINE,
        ], {}  # fmt: skip
    worker = "asgi_worker.Worker" if http == "httptools" else "asgi_worker.H11Worker"
    return [
        sys.executable, "-m", "gunicorn", "-k", worker, "-b", f"127.0.0.1:{port}", "--workers", "1",
        "--keep-alive", timeout, "--limit-request-line", LIMIT_REQUEST_LINE, "--log-level", "warning",
        "--chdir", str(ROOT), APP,
    ], {"ASGI_WORKER_TIMEOUT_REQUEST_HEADER": timeout}  # fmt: skip


@contextlib.contextmanager
def running(kind: str, http: str) -> Iterator[Server]:
    """Start ``kind`` ("ours" or "gunicorn") with parser ``http``; wait until it answers a GET."""
    port = free_port()
    command, env = _command(kind, http, port)
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        start_new_session=True,
    )
    output = Output(proc, "stdout", "stderr")
    server = Server(f"{kind}-{http}", proc, port, output)
    try:
        wait_accepting(port, proc)
        probe = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        deadline = time.monotonic() + STARTUP
        first = exchange(port, probe, half_close=True)
        while first.responses != ("200 GET / 0",) and time.monotonic() < deadline and server.alive():
            time.sleep(0.1)  # gunicorn's arbiter accepts before its worker serves
            first = exchange(port, probe, half_close=True)
        if first.responses != ("200 GET / 0",):
            raise RuntimeError(f"{server.name} did not start: {first}\n{output.text('stderr')}")
        yield server
    finally:
        stop_tree(proc, output)


@dataclass(frozen=True)
class Exchange:
    """What one connection gave back: the responses (status and echo) and how it ended."""

    responses: tuple[str, ...]
    ending: str  # "closed", "closed after EOF" (ours, sent late), "reset", "hung", "refused"
    seconds: float

    def shape(self) -> str:
        """The responses' statuses and the ending, e.g. "200,400 closed"; the echoes are compared apart."""
        statuses = ",".join(response.split(" ", 1)[0] for response in self.responses) or "nothing"
        ending = (
            "closed" if self.ending == "reset" else self.ending
        )  # a reset is a close with our bytes unread
        return f"{statuses} {ending}"


def parse_responses(data: bytes) -> tuple[str, ...]:
    """Each response in ``data`` as "STATUS ECHO" (the echo app's header, or the body's size)."""
    responses, pos = [], 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        match = _STATUS_LINE.match(data, pos)
        if end < 0 or match is None:
            responses.append(f"garbage {data[pos : pos + 40]!r}")
            break
        fields = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in data[pos:end].split(b"\r\n")[1:])
        )
        length = int(fields.get(b"content-length", b"0") or 0)
        status = match.group(1).decode()
        echo = fields.get(b"x-echo", b"").decode("latin-1") or f"body {length}"
        responses.append(f"{status} {echo}" if status != "100" else "100")
        pos = end + 4 + (length if status != "100" else 0)
    return tuple(responses)


def exchange(port: int, data: bytes, half_close: bool) -> Exchange:
    """Send ``data`` on a fresh connection; read until the server closes or the deadlines pass."""
    started = time.monotonic()
    received = b""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=SERVER_TIMEOUT + MARGIN)
    except OSError:
        return Exchange((), "refused", 0.0)
    with sock:
        eof_sent = False
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
                eof_sent = True
        except OSError:  # the server closed while we were still sending: its answer may be waiting
            pass
        deadline = started + SERVER_TIMEOUT + MARGIN
        ending = "hung"
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if time.monotonic() < deadline:
                    continue
                if eof_sent:
                    break
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                eof_sent, deadline = True, time.monotonic() + MARGIN
                continue
            except OSError:
                ending = "reset"
                break
            if not chunk:
                ending = "closed after EOF" if eof_sent and not half_close else "closed"
                break
            received += chunk
    return Exchange(parse_responses(received), ending, time.monotonic() - started)
