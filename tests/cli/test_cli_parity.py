"""uvicorn parity of the commands, in real processes: ``--reset-contextvars``, the exit codes of both
``python -m asgi_worker`` and ``asgi-supervise``, a stop bounded by ``--timeout-graceful-shutdown``,
and ``--disconnect-grace-period``. The apps are in ``apps/ctxapps.py``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import read_response
from tests.processes import ServerProcess, free_port, in_flight_env, python_m_server, wait_in_flight
from tests.timing import TICK, TIMEOUT, wait_until

APPS = str(Path(__file__).parent / "apps")
MARGIN = 15 * TICK
"""What a stop may take beyond its budget: interpreter exit, log flushing, a busy 2-core machine."""


def started(app: str, *args: str, env: dict[str, str] | None = None) -> AbstractContextManager[ServerProcess]:
    """``python -m asgi_worker APP`` (from ``apps/``) on a free port, once it logged "running on"."""
    return python_m_server(app, "--app-dir", APPS, *args, env=env)


def sigterm_until_exit(running: ServerProcess) -> float:
    """Send SIGTERM; the seconds until the process exited, which it must do with 0."""
    began = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    code = running.proc.wait(TIMEOUT * 2)
    elapsed = time.monotonic() - began
    assert code == 0, running.text()
    return elapsed


# --reset-contextvars


RESET_FLAG = pytest.param(("--reset-contextvars",), {}, id="flag")
RESET_ENV = pytest.param((), {"ASGI_WORKER_RESET_CONTEXTVARS": "1"}, id="env")


@pytest.mark.parametrize(
    ("args", "env", "from_import"),
    [
        pytest.param((), {}, "import", id="default"),
        pytest.param(("--reset-contextvars",), {}, None, id="flag"),
        pytest.param((), {"ASGI_WORKER_RESET_CONTEXTVARS": "1"}, None, id="env"),
    ],
)
def test_a_request_sees_the_servers_context_unless_reset(args, env, from_import):
    """By default a request starts from a copy of the context the server runs in (here: a variable the
    app module set at import); reset, from an empty one. What the lifespan sets is never seen: it runs
    as a sibling task, with a context of its own (uvicorn 0.55 behaves the same)."""
    with started("ctxapps:context_report", "--lifespan", "on", *args, env=env) as running:
        seen = running.get("/")
    assert seen == {"import": from_import, "lifespan": None, "previous_request": None}


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def _read_json(sock: socket.socket, count: int) -> list[dict[str, Any]]:
    """The bodies of the next ``count`` responses (each has a content-length) on ``sock``."""
    sock.settimeout(TIMEOUT)
    data, bodies = b"", []
    while len(bodies) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            match = re.search(rb"content-length: *(\d+)", data[:head_end], re.IGNORECASE)
            assert match and data.startswith(b"HTTP/1.1 200 "), data
            end = head_end + 4 + int(match.group(1))
            if len(data) >= end:
                bodies.append(json.loads(data[head_end + 4 : end]))
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(bodies)} of {count} responses"
        data += chunk
    return bodies


def _previous_requests_seen(running: ServerProcess) -> list[object]:
    """On one keep-alive connection: two pipelined requests, then two more one at a time. What each
    saw of the variable every request sets."""
    with socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) as sock:
        sock.sendall(_get("/1") + _get("/2"))
        bodies = _read_json(sock, 2)
        for path in ("/3", "/4"):
            sock.sendall(_get(path))
            bodies += _read_json(sock, 1)
    return [body["previous_request"] for body in bodies]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize(("args", "env"), [RESET_FLAG, RESET_ENV])
def test_reset_keeps_a_requests_context_from_the_next_on_the_connection(args, env, loop):
    with started("ctxapps:context_report", "--loop", loop, *args, env=env) as running:
        assert _previous_requests_seen(running) == [None, None, None, None]


def test_without_reset_a_pipelined_request_inherits_the_previous_ones_context():
    """The leak the flag is for (and the proof the check above can see one): a pipelined request is
    started from the task of the request before it, whose context asyncio copies."""
    with started("ctxapps:context_report", "--loop", "asyncio") as running:
        assert _previous_requests_seen(running)[1] == "a request was here"


@pytest.mark.parametrize(("args", "from_import"), [((), "import"), (("--reset-contextvars",), None)])
def test_a_websocket_sees_the_servers_context_unless_reset(args, from_import):
    with (
        started("ctxapps:context_report", *args) as running,
        ws_connect(f"ws://127.0.0.1:{running.port}/", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws,
    ):
        seen = json.loads(ws.recv(timeout=TIMEOUT))
    assert seen == {"import": from_import, "lifespan": None, "previous_request": None}


# Exit codes (asgi_worker/exitcodes.py)


COMMANDS = [
    pytest.param(("asgi_worker",), id="asgi_worker"),
    pytest.param(("supervisor",), id="supervise"),
    pytest.param(("supervisor", "--preload"), id="supervise-preload"),
]


def _run(
    command: tuple[str, ...], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` to completion: every case here fails at startup and exits by itself."""
    module, *flags = command
    return subprocess.run(
        [sys.executable, "-m", module, *args, "--app-dir", APPS, "--port", str(free_port()), *flags],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def _the_one_line(result: subprocess.CompletedProcess[str], command: tuple[str, ...]) -> str:
    """The whole of stderr, which must be one ``<prog>: error: ...`` line."""
    prog = "asgi_worker" if command[0] == "asgi_worker" else "asgi-supervise"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("app", "message"),
    [
        pytest.param("no_such_module:app", 'Could not import module "no_such_module"', id="no-module"),
        pytest.param("cliapps:missing", 'Attribute "missing" not found in module "cliapps"', id="no-attr"),
        pytest.param("cliapps:not_callable", "is not callable", id="not-callable"),
        pytest.param("cliapps", "must be in format", id="bad-import-string"),
        pytest.param("raises_on_import:app", "RuntimeError: no database", id="raises-at-import"),
    ],
)
def test_an_app_that_cannot_be_loaded_exits_3(tmp_path, command, app, message):
    """uvicorn's STARTUP_FAILURE. A supervisor that loads the app itself (--preload) says it in one
    line; without, its worker fails to load it, and the supervisor stops with the worker's 3."""
    (tmp_path / "raises_on_import.py").write_text('raise RuntimeError("no database")\n')
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = _run(command, app, env={"PYTHONPATH": pythonpath})
    assert result.returncode == 3, result.stderr
    if command == ("supervisor",):
        assert message in result.stderr and "failed to boot (exit code 3)" in result.stderr
    else:
        assert message in _the_one_line(result, command)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_setting_exits_1(command):
    result = _run(command, "cliapps:hello", "--root-path", "no-slash")
    assert result.returncode == 1
    assert "root_path must start with '/'" in _the_one_line(result, command)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_flag_exits_2(command):
    result = _run(command, "cliapps:hello", "--no-such-flag")
    assert result.returncode == 2
    assert "--no-such-flag" in _the_one_line(result, command)


# A stop bounded by --timeout-graceful-shutdown


HANGS = ("ctxapps:hanging_shutdown", "--lifespan", "on", "--timeout-graceful-shutdown", "2")


def test_a_hanging_lifespan_shutdown_is_cut_at_the_graceful_timeout():
    with started(*HANGS) as running:
        elapsed = sigterm_until_exit(running)
    assert elapsed < 2 + MARGIN
    assert "Application shutdown did not complete" in running.text()


def test_the_shutdown_delay_comes_on_top_of_the_graceful_timeout():
    with started(*HANGS, "--shutdown-delay", "1") as running:
        elapsed = sigterm_until_exit(running)
    assert elapsed < 1 + 2 + MARGIN
    log = running.text()
    assert "Shutdown delay: serving 1 s more" in log and "Application shutdown did not complete" in log


def test_an_in_flight_request_completes_and_the_stop_still_fits_the_timeout(tmp_path):
    """The drain takes 1.5 s of the 2; the hanging lifespan shutdown gets only what is left."""
    marker = tmp_path / "in-flight"
    with (
        started(*HANGS, env=in_flight_env(marker)) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) as sock,
    ):
        sock.sendall(_get("/?1.5"))
        wait_in_flight(marker)
        began = time.monotonic()
        running.proc.send_signal(signal.SIGTERM)
        answer = read_response(sock)
        assert running.proc.wait(TIMEOUT * 2) == 0, running.text()
        elapsed = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"done")
    assert elapsed < 2 + MARGIN
    assert "Application shutdown did not complete" in running.text()


# --disconnect-grace-period


def _cancelled_after_disconnect(tmp_path: Path, *args: str, reset: bool, within: float) -> float | None:
    """Start a 10 s request, leave (a reset, or a plain close: FIN), and wait up to ``within`` s for
    its app call to be cancelled: the seconds from leaving to the cancellation, None if it was not."""
    cancelled, marker = tmp_path / "cancelled", tmp_path / "in-flight"
    env = {**in_flight_env(marker), "CTXAPPS_CANCELLED": str(cancelled)}
    with (
        started("ctxapps:slow_recording_cancel", *args, env=env) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) as sock,
    ):
        sock.sendall(_get("/?10"))
        wait_in_flight(marker)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        left = time.time()
        sock.close()
        if not wait_until(lambda: cancelled.exists() and cancelled.read_text().endswith("\n"), within):
            return None
    return float(cancelled.read_text().split()[1]) - left


def test_disconnect_grace_cancels_the_call_after_a_reset(tmp_path):
    elapsed = _cancelled_after_disconnect(
        tmp_path, "--disconnect-grace-period", "0.5", reset=True, within=0.5 + 10 * TICK
    )
    assert elapsed is not None, "the app's call was not cancelled"
    assert 0.5 - TICK <= elapsed < 0.5 + 10 * TICK


def test_disconnect_grace_cancels_the_call_after_a_plain_close(tmp_path):
    elapsed = _cancelled_after_disconnect(
        tmp_path, "--disconnect-grace-period", "0.5", reset=False, within=0.5 + 10 * TICK
    )
    assert elapsed is not None, "the app's call was not cancelled"
    assert 0.5 - TICK <= elapsed < 0.5 + 10 * TICK


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "close"])
def test_without_disconnect_grace_the_call_is_not_cancelled(tmp_path, reset):
    """uvicorn's default: the app hears http.disconnect if it asks, and is never cancelled for it."""
    assert _cancelled_after_disconnect(tmp_path, reset=reset, within=2.0) is None
