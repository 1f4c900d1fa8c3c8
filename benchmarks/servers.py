"""Start, check and stop one server process, never leaving one behind.

Each server runs in its own session (process group) so that one `killpg` reaches it and anything
it spawned; `running_server` stops the group in `finally`, whatever happened in between. Every
wait here is bounded by one of the timeouts below.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spec import BENCH_DIR, COMMON_FLAGS, HOST, REPO_ROOT, SERVER_CPU, BenchmarkError, LogPass, Scenario

STARTUP_TIMEOUT = 10.0  # seconds until the server must accept connections
CHECK_TIMEOUT = 10.0  # seconds for the one raw-socket check (includes a 1 MiB upload)
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL, and after SIGKILL


def free_port() -> int:
    """Ask the kernel for an unused port; the tiny race until the server binds is acceptable."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_command(python: str, module: str, scenario: Scenario, log_pass: LogPass, port: int) -> list[str]:
    """The exact command line, identical for both servers apart from the module name."""
    return [
        *("taskset", "-c", SERVER_CPU),
        *(python, "-m", module, f"apps:{scenario.name}"),
        *("--host", HOST, "--port", str(port)),
        *COMMON_FLAGS,
        *log_pass.flags,
        *(log_pass.ours_only if module == "asgi_worker" else ()),
    ]


def expose_apps(directory: Path) -> Path:
    """Make a directory holding only apps.py (a symlink) for the servers' PYTHONPATH; return it.

    Putting benchmarks/ itself on the path would let our helper modules (spec, load, ...) shadow
    any same-named module the servers import; this way the servers see `apps` and nothing else.
    """
    app_dir = directory / "apps"
    app_dir.mkdir()
    (app_dir / "apps.py").symlink_to(BENCH_DIR / "apps.py")
    return app_dir


@contextmanager
def running_server(cmd: list[str], port: int, app_dir: Path) -> Iterator[subprocess.Popen]:
    """Start a server, yield it once it accepts connections, and always kill its process group.

    Output goes to /dev/null: the access-log pass must not pay for a pipe nobody drains. The cwd is
    the repository root so `python -m asgi_worker` runs the working copy; PYTHONPATH has app_dir.
    """
    pythonpath = os.pathsep.join(filter(None, [str(app_dir), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_accepting(proc, port)
        yield proc
    finally:
        stop_process_group(proc)


def wait_accepting(proc: subprocess.Popen, port: int) -> None:
    """Poll with plain connects until the server accepts, it exits, or STARTUP_TIMEOUT passes."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchmarkError(f"server exited with code {proc.returncode}: {' '.join(proc.args)}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchmarkError(f"server did not accept on port {port} within {STARTUP_TIMEOUT:.0f} s")


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the whole group, then SIGKILL it if it has not exited within STOP_TIMEOUT."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=STOP_TIMEOUT)
            break
        except subprocess.TimeoutExpired:
            continue


def check_response(port: int, scenario: Scenario) -> None:
    """Send the scenario's request once over a raw socket and insist on a 200.

    A server answering 500 at full speed is not fast, so this runs before any load. Raw bytes
    rather than an HTTP client: no dependency, and we see exactly what the server sent.
    """
    body = b"a" * scenario.body_size
    head = f"{scenario.method} / HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n"
    response = b""
    with socket.create_connection((HOST, port), timeout=CHECK_TIMEOUT) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        while chunk := sock.recv(65536):
            response += chunk
    status_line = response.split(b"\r\n", 1)[0]
    if not status_line.startswith(b"HTTP/1.1 200 "):
        raise BenchmarkError(f"{scenario.name} on port {port}: expected 200, got {status_line[:80]!r}")
    if body and not response.endswith(str(len(body)).encode()):
        raise BenchmarkError(f"upload on port {port}: server did not read the whole body: {response[-40:]!r}")
