"""Start, check and stop one server process, never leaving one behind.

Each server has a command builder here (the flags it needs to serve like the others). Each runs in
its own session (process group) so that one `killpg` reaches it and anything it spawned (granian's
and gunicorn's workers, the supervisor's); `running_server` stops the group in `finally`, whatever
happened in between. Every wait here is bounded by one of the timeouts below.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from spec import (
    BENCH_DIR,
    CEILING_ASGI_ROWS,
    COMMON_FLAGS,
    HOST,
    REPO_ROOT,
    SERVER_CPU,
    BenchmarkError,
    LogPass,
    Scenario,
)

STARTUP_TIMEOUT = 10.0  # seconds until the server must accept connections
CHECK_TIMEOUT = 10.0  # seconds for the one raw-socket check (includes a 1 MiB upload)
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL, and after SIGKILL
APP_MODULES = ("apps.py", "framework_apps.py")  # what the servers may import from benchmarks/


def free_port() -> int:
    """Ask the kernel for an unused port; the tiny race until the server binds is acceptable."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _uvicorn_style(log_pass: LogPass, ours: bool) -> list[str]:
    """The flags ours, uvicorn and asgi-supervise share (uvicorn's names)."""
    flags = [*COMMON_FLAGS, "--access-log" if log_pass.access_log else "--no-access-log"]
    flags += ["--log-level", log_pass.level]
    if ours and log_pass.ours_format:
        flags += ["--access-log-format", log_pass.ours_format]
    return flags


def _module_server(module: str, *prefix: str, ours: bool) -> Callable[..., list[str]]:
    def build(python: str, scenario: Scenario, log_pass: LogPass, port: int) -> list[str]:
        return [
            *(python, "-m", module, *prefix, scenario.target),
            *("--host", HOST, "--port", str(port)),
            *_uvicorn_style(log_pass, ours),
        ]

    return build


def _granian(python: str, scenario: Scenario, log_pass: LogPass, port: int) -> list[str]:
    """One worker, HTTP/1 only, uvloop: the closest granian gets to the others' setup."""
    return [
        *(python, "-m", "granian", "--interface", "asgi"),
        *("--host", HOST, "--port", str(port)),
        *("--loop", "uvloop", "--http", "1", "--workers", "1"),
        "--access-log" if log_pass.access_log else "--no-access-log",
        *("--log-level", log_pass.level),
        scenario.target,
    ]


def _ceiling(python: str, scenario: Scenario, log_pass: LogPass, port: int) -> list[str]:
    """Precomputed bytes for the plain rows; the row's app under the least ASGI server for the rest."""
    script = str(BENCH_DIR / "ceiling.py")
    if scenario.name in CEILING_ASGI_ROWS:
        return [python, script, "--host", HOST, "--port", str(port), "--asgi", scenario.target]
    return [python, script, "--host", HOST, "--port", str(port), "--scenario", scenario.name]


def _gunicorn(python: str, scenario: Scenario, log_pass: LogPass, port: int) -> list[str]:
    """Our gunicorn worker class, one worker; its loop and parser are auto (uvloop, httptools).

    gunicorn writes no access log unless given --access-logfile, so the log pass only sets the level.
    """
    return [
        *(python, "-m", "gunicorn", "-k", "asgi_worker.Worker", "-w", "1"),
        *("-b", f"{HOST}:{port}", "--log-level", log_pass.level),
        scenario.target,
    ]


# Server name (spec.SERVERS) -> builder of its command line, without the CPU pinning.
BUILDERS: dict[str, Callable[[str, Scenario, LogPass, int], list[str]]] = {
    "ours": _module_server("asgi_worker", ours=True),
    "uvicorn": _module_server("uvicorn", ours=False),
    "granian": _granian,
    "ceiling": _ceiling,
    "ours_gunicorn": _gunicorn,
    "ours_supervised": _module_server("supervisor", "--workers", "1", ours=True),
}

# Server name -> the arguments after the interpreter that print its version.
VERSION_ARGS = {
    "ours": ["-m", "asgi_worker", "--version"],
    "uvicorn": ["-m", "uvicorn", "--version"],
    "granian": ["-m", "granian", "--version"],
    "ceiling": [str(BENCH_DIR / "ceiling.py"), "--version"],
    "ours_gunicorn": ["-m", "gunicorn", "--version"],
    "ours_supervised": ["-m", "supervisor", "--version"],
}


def server_command(python: str, server: str, scenario: Scenario, log_pass: LogPass, port: int) -> list[str]:
    """The exact command line of `server` for one row, pinned to the server CPU."""
    return ["taskset", "-c", SERVER_CPU, *BUILDERS[server](python, scenario, log_pass, port)]


def expose_apps(directory: Path) -> Path:
    """Make a directory holding only the app modules (symlinks) for the servers' PYTHONPATH.

    Putting benchmarks/ itself on the path would let our helper modules (spec, load, ...) shadow
    any same-named module the servers import; this way the servers see the apps and nothing else.
    """
    app_dir = directory / "apps"
    app_dir.mkdir()
    for name in APP_MODULES:
        (app_dir / name).symlink_to(BENCH_DIR / name)
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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its descendants (workers, threads)."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return total
    for proc in tree:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def check_response(port: int, scenario: Scenario) -> None:
    """Send the row's request once over a raw socket; insist on a 200 and exactly the right body.

    A server answering 500, or a short body, at full speed is not fast, so this runs before any
    load. Raw bytes rather than an HTTP client: no dependency, and we see exactly what the server
    sent. The response is read by its own framing (never to EOF), so a keep-alive-only server such
    as the ceiling passes the same check.
    """
    body = b"a" * scenario.body_size
    head = f"{scenario.method} / HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n"
    where = f"{scenario.name} on port {port}"
    with socket.create_connection((HOST, port), timeout=CHECK_TIMEOUT) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        try:
            status, headers, received, chunked = _read_response(sock.makefile("rb"), where)
        except ValueError as exc:  # a chunk size or content-length that is not a number
            raise BenchmarkError(f"{where}: malformed response: {exc}") from None
    if not status.startswith(b"HTTP/1.1 200 "):
        raise BenchmarkError(f"{where}: expected 200, got {status[:80]!r}")
    if scenario.chunked and not chunked:
        raise BenchmarkError(f"{where}: expected a chunked response, got headers {headers!r}")
    if scenario.expect and received != scenario.expect:
        raise BenchmarkError(
            f"{where}: wrong body: {len(received)} bytes {received[:40]!r}, "
            f"expected {len(scenario.expect)} bytes {scenario.expect[:40]!r}"
        )


def _read_response(stream, where: str) -> tuple[bytes, dict[bytes, bytes], bytes, bool]:
    """(status line, headers, body, chunked?) of one HTTP/1.1 response read by its framing."""
    status = stream.readline().rstrip(b"\r\n")
    headers = {}
    while line := stream.readline().rstrip(b"\r\n"):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        parts = []
        while size := int(stream.readline().split(b";")[0], 16):
            parts.append(stream.read(size))
            stream.readline()  # the CRLF after each chunk
        while stream.readline().rstrip(b"\r\n"):  # trailers, up to the blank line
            pass
        return status, headers, b"".join(parts), True
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        body = stream.read(length)
        if len(body) != length:
            raise BenchmarkError(f"{where}: connection closed after {len(body)} of {length} body bytes")
        return status, headers, body, False
    return status, headers, stream.read(), False
