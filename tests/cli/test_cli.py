"""``python -m asgi_worker`` in real subprocesses: exit codes, one-line errors, signals, limits."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.processes import accepting, free_port, in_flight_env, wait_in_flight
from tests.timing import TICK, TIMEOUT, wait_until

APPS = str(Path(__file__).parent / "apps")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (it must exit by itself)."""
    return subprocess.run(
        [sys.executable, "-m", "asgi_worker", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


@contextmanager
def server(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start a server process on a free port; wait until it accepts; kill its group in the end."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgi_worker", "--app-dir", APPS, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        wait_until(lambda: proc.poll() is not None or accepting(port))  # a test may expect a failed start
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)


def test_version_and_help():
    assert run_cli("--version").returncode == 0
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--timeout-keep-alive" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("cliapps:hello", "--port", "abc"), "--port"),
        (("cliapps:hello", "--loop", "nope"), "--loop"),
        (("cliapps:hello", "--no-such-flag"), "--no-such-flag"),
    ],
)
def test_bad_flag_is_one_line_and_exit_2(args, needle):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module:app", 'Could not import module "no_such_module"'),
        ("cliapps:missing", 'Attribute "missing" not found in module "cliapps"'),
        ("cliapps:not_callable", "is not callable"),
        ("cliapps", "must be in format"),
    ],
)
def test_unloadable_app_is_one_line_and_exit_3(app, message):
    """uvicorn exits 3 (its STARTUP_FAILURE) for an import string it cannot resolve; so do we."""
    result = run_cli(app, "--app-dir", APPS)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[0].startswith("asgi_worker: error: ") and message in lines[0]


def test_bad_setting_is_one_line_and_exit_1():
    result = run_cli("cliapps:hello", "--app-dir", APPS, "--root-path", "no-slash")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("asgi_worker: error: root_path")


def test_lifespan_startup_failure_exits_3():
    result = run_cli("cliapps:failing_startup", "--app-dir", APPS, "--lifespan", "on", "--port", "0")
    assert result.returncode == 3
    assert "database unreachable" in result.stderr


def test_port_in_use_exits_3_with_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("cliapps:hello", "--app-dir", APPS, "--port", str(port))
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0]


def test_port_0_logs_the_real_port():
    with server("cliapps:hello", "--port", "0") as (proc, _):
        deadline = time.monotonic() + TIMEOUT
        line = ""
        while time.monotonic() < deadline and "running on" not in line:
            line = proc.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "hello"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_and_in_flight_request_completes(sig, tmp_path):
    marker = tmp_path / "in-flight"
    with server("cliapps:slow", env=in_flight_env(marker)) as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /?1 HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_in_flight(marker)
            proc.send_signal(sig)
            data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in data
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0
    assert "Finished server process" in err


def test_second_sigint_forces_exit(tmp_path):
    marker = tmp_path / "in-flight"
    with (
        server("cliapps:slow", env=in_flight_env(marker)) as (proc, port),
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock,
    ):
        sock.sendall(b"GET /?30 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_in_flight(marker)  # a graceful stop would now wait for it
        proc.send_signal(signal.SIGINT)
        assert wait_until(lambda: not accepting(port)), "the first SIGINT did not start the stop"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT) == 0
        assert time.monotonic() - started < 10 * TICK


def test_limit_max_requests_exits_0_after_exactly_n():
    with server("cliapps:hello", "--limit-max-requests", "3") as (proc, port):
        for _ in range(3):
            with httpx.Client(timeout=TIMEOUT) as client:
                assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
        assert proc.wait(TIMEOUT) == 0


def test_env_var_used_and_flag_beats_it():
    port = free_port()
    with server("cliapps:hello", env={"ASGI_WORKER_PORT": str(port)}) as (_proc, flag_port):
        assert httpx.get(f"http://127.0.0.1:{flag_port}/", timeout=TIMEOUT).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)


def test_headers_factory_asgi2_and_access_log():
    args = ("--header", "X-A:1", "--header", "X-B: 2", "--no-server-header")
    with server("cliapps:factory", "--factory", *args) as (proc, port):
        response = httpx.get(f"http://127.0.0.1:{port}/p?q=1", timeout=TIMEOUT)
        assert response.headers["x-a"] == "1" and response.headers["x-b"] == "2"
        assert "server" not in response.headers
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=TIMEOUT)
    assert re.search(r'^INFO:     127\.0\.0\.1:\d+ - "GET /p\?q=1 HTTP/1\.1" 200 OK$', out, re.M)
    with server("cliapps:ASGI2App", "--interface", "asgi2", "--no-access-log") as (proc, port):
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "hello"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=TIMEOUT)
    assert out == ""


def test_log_level_warning_hides_info():
    with server("cliapps:hello", "--log-level", "warning") as (proc, port):
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    assert "INFO" not in err and "INFO" not in out
