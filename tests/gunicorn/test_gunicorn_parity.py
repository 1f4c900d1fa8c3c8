"""gunicorn's own ASGI settings, and its recycling signals, on real ``gunicorn -k asgi_worker.Worker``
processes: each setting on and off, which of gunicorn's setting and ``ASGI_WORKER_<NAME>`` wins,
what the worker refuses, and no request lost while gunicorn replaces workers under load.

The apps are tests/gunicorn/apps/parity.py (lifespan, loop, root_path, cancellation, WebSocket echo,
a WSGI app) and gapps.py (the load target).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import resource
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError

from tests.gunicorn.harness import Gunicorn, gunicorn
from tests.processes import in_flight_env, wait_in_flight
from tests.supervisor.harness import Load
from tests.timing import TICK, TIMEOUT, wait_until
from tests.ws.apps import client

pytest.importorskip("gunicorn")

PARITY = "parity:app"  # answers {pid, lifespan, loop, root_path}


# --asgi-lifespan


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param((), "started", id="default-auto"),
        pytest.param(("--asgi-lifespan", "auto"), "started", id="auto"),
        pytest.param(("--asgi-lifespan", "on"), "started", id="on"),
        pytest.param(("--asgi-lifespan", "off"), "never", id="off"),
    ],
)
def test_asgi_lifespan_runs_the_apps_lifespan_or_not(args, expected):
    with gunicorn(*args, app=PARITY) as g:
        assert g.get()["lifespan"] == expected


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_an_app_without_lifespan_support_is_served_unless_lifespan_is_on(mode):
    """``auto`` tries the lifespan, notes that the app does not speak it and serves; ``off`` never asks."""
    with gunicorn("--asgi-lifespan", mode, app="parity:no_lifespan") as g:
        assert g.get()["pid"]
        log = g.text()
    assert ("appears unsupported" in log) == (mode == "auto"), log


def test_asgi_lifespan_on_with_an_app_without_lifespan_support_fails_to_boot():
    with gunicorn("--asgi-lifespan", "on", app="parity:no_lifespan", ready=False) as g:
        assert g.proc.wait(TIMEOUT * 3) == 3
        log = g.wait_for("Worker failed to boot")
    assert "unsupported scope type lifespan" in log


# --asgi-loop


@pytest.mark.parametrize(
    ("args", "module"),
    [
        pytest.param((), "uvloop", id="default-auto"),  # uvloop is installed with [standard]
        pytest.param(("--asgi-loop", "asyncio"), "asyncio.unix_events", id="asyncio"),
        pytest.param(("--asgi-loop", "uvloop"), "uvloop", id="uvloop"),
    ],
)
def test_asgi_loop_picks_the_event_loop(args, module):
    with gunicorn(*args, app=PARITY) as g:
        assert g.get()["loop"] == module


# Which wins: gunicorn's setting when it differs from gunicorn's default, else ASGI_WORKER_<NAME>.


@pytest.mark.parametrize(
    ("args", "env", "field", "expected"),
    [
        pytest.param((), {"ASGI_WORKER_LIFESPAN": "off"}, "lifespan", "never", id="lifespan-env-wins"),
        pytest.param(
            ("--asgi-lifespan", "off"),
            {"ASGI_WORKER_LIFESPAN": "on"},
            "lifespan",
            "never",
            id="lifespan-gunicorn-wins",
        ),
        pytest.param((), {"ASGI_WORKER_LOOP": "asyncio"}, "loop", "asyncio.unix_events", id="loop-env-wins"),
        pytest.param(
            ("--asgi-loop", "uvloop"),
            {"ASGI_WORKER_LOOP": "asyncio"},
            "loop",
            "uvloop",
            id="loop-gunicorn-wins",
        ),
        pytest.param((), {"ASGI_WORKER_ROOT_PATH": "/env"}, "root_path", "/env", id="root-path-env-wins"),
        pytest.param(
            ("--root-path", "/cli"),
            {"ASGI_WORKER_ROOT_PATH": "/env"},
            "root_path",
            "/cli",
            id="root-path-gunicorn-wins",
        ),
    ],
)
def test_precedence_of_gunicorn_settings_and_the_environment(args, env, field, expected):
    with gunicorn(*args, app=PARITY, env=env) as g:
        assert g.get()[field] == expected


# --root-path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param((), "", id="default"),
        pytest.param(("--root-path", "/api"), "/api", id="api"),
        pytest.param(("--root-path", "/api/v1/"), "/api/v1", id="trailing-slash"),
    ],
)
def test_root_path_is_the_scopes_root_path(args, expected):
    with gunicorn(*args, app=PARITY) as g:
        assert g.get()["root_path"] == expected


# --asgi-disconnect-grace-period


def _disconnect_during_a_slow_call(g: Gunicorn, in_flight: Path, abort: bool) -> float:
    """Start ``/slow?60``, wait until the app runs it, close the connection; when it closed (epoch).

    ``abort`` closes with a reset (SO_LINGER 0), else with a plain close (FIN), as a browser tab does.
    """
    sock = socket.create_connection(("127.0.0.1", g.port), timeout=TIMEOUT)
    sock.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_in_flight(in_flight)
    if abort:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    closed = time.time()
    sock.close()
    return closed


def _cancelled_after(args: tuple[str, ...], env: dict[str, str], tmp_path: Path, abort: bool) -> float:
    """Seconds from the client's disconnect to the cancellation of its app call (fails if none)."""
    cancelled, in_flight = tmp_path / "cancelled", tmp_path / "in-flight"
    env = {**env, **in_flight_env(in_flight), "PARITY_CANCELLED": str(cancelled)}
    with gunicorn(*args, app=PARITY, env=env) as g:
        closed = _disconnect_during_a_slow_call(g, in_flight, abort)
        noted = wait_until(lambda: cancelled.exists() and cancelled.read_text().endswith("\n"), TIMEOUT)
        assert noted, "the app's call was not cancelled"
    return float(cancelled.read_text().split()[0]) - closed


@pytest.mark.parametrize(
    ("args", "env", "grace"),
    [
        pytest.param(("--asgi-disconnect-grace-period", "0"), {}, 0, id="zero-cancels-at-once"),
        pytest.param(("--asgi-disconnect-grace-period", "2"), {}, 2, id="two"),
        pytest.param((), {}, 3, id="gunicorn-default-3", marks=pytest.mark.slow),
        pytest.param((), {"ASGI_WORKER_DISCONNECT_GRACE_PERIOD": "1"}, 1, id="env-wins-over-default"),
        pytest.param(
            ("--asgi-disconnect-grace-period", "2"),
            {"ASGI_WORKER_DISCONNECT_GRACE_PERIOD": "1"},
            2,
            id="gunicorn-wins-over-env",
        ),
    ],
)
def test_disconnect_grace_cancels_the_call_after_the_grace_and_not_before(tmp_path, args, env, grace):
    elapsed = _cancelled_after(args, env, tmp_path, abort=True)
    assert grace - TICK <= elapsed < grace + 10 * TICK


def test_disconnect_grace_also_follows_a_plain_close(tmp_path):
    """A FIN mid-call may be a half-close, but most often the client has gone: gunicorn's own
    worker cancels after the grace, and so do we."""
    elapsed = _cancelled_after(("--asgi-disconnect-grace-period", "1"), {}, tmp_path, abort=False)
    assert 1 - TICK <= elapsed < 1 + 10 * TICK


# --websocket-max-message-size


def test_websocket_max_message_size_closes_a_bigger_message_with_1009():
    with gunicorn("--websocket-max-message-size", "1024", app=PARITY) as g:
        with client(g) as ws:
            ws.send(b"x" * 1024)
            assert ws.recv(timeout=TIMEOUT) == b"x" * 1024
        with client(g) as ws:
            ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1009


def test_websocket_messages_past_1024_bytes_pass_without_the_setting():
    with gunicorn(app=PARITY) as g, client(g) as ws:
        ws.send(b"y" * 100_000)
        assert ws.recv(timeout=TIMEOUT) == b"y" * 100_000


# --threads (a WSGI app's thread pool)


def _most_wsgi_calls_at_once(args: tuple[str, ...], env: dict[str, str], tmp_path: Path, calls: int) -> int:
    """Send ``calls`` slow requests at once to ``parity:wsgi_app``; the most the app ran together."""
    env = {**env, **in_flight_env(tmp_path / "in-flight"), "ASGI_WORKER_INTERFACE": "wsgi"}
    with gunicorn(*args, app="parity:wsgi_app", env=env) as g:
        with concurrent.futures.ThreadPoolExecutor(calls) as pool:
            answers = list(pool.map(lambda _: g.get("/slow?0.5"), range(calls)))
        assert len(answers) == calls
        return int(g.get()["most_at_once"])  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        pytest.param((), {}, 6, id="default-pool-of-10"),
        pytest.param(("--threads", "2"), {}, 2, id="threads-2"),
        pytest.param((), {"ASGI_WORKER_WSGI_THREADS": "3"}, 3, id="env-wins-over-default"),
    ],
)
def test_threads_size_the_wsgi_pool(tmp_path, args, env, expected):
    assert _most_wsgi_calls_at_once(args, env, tmp_path, calls=6) == expected


def test_threads_given_to_gunicorn_win_over_the_environment(tmp_path):
    env = {"ASGI_WORKER_WSGI_THREADS": "4"}
    assert _most_wsgi_calls_at_once(("--threads", "2"), env, tmp_path, calls=6) == 2


# What the worker cannot honour yet


# gunicorn's --proxy-protocol and --proxy-allow-from (tests/http/test_proxy_protocol_wire.py has the rest)

PROXY_V1 = b"PROXY TCP4 203.0.113.7 192.0.2.10 4711 443\r\n"
PROXY_V2 = (  # v2 PROXY, TCP over IPv4, the same addresses and ports
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
    + socket.inet_aton("203.0.113.7")
    + socket.inet_aton("192.0.2.10")
    + struct.pack("!HH", 4711, 443)
)


def _raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; everything the worker answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


@pytest.mark.parametrize(
    ("mode", "header"), [("v1", PROXY_V1), ("v2", PROXY_V2), ("auto", PROXY_V1), ("auto", PROXY_V2)]
)
def test_proxy_protocol_is_served(mode, header):
    """The worker reads the header gunicorn's setting asks for: the header's client is the one
    served and logged, and a trusted peer that sends plain HTTP instead is closed unanswered."""
    args = ("--proxy-protocol", mode, "--proxy-allow-from", "127.0.0.1")
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with gunicorn(*args, "--access-logfile", "-", "--access-logformat", "%(h)s %(s)s %(U)s") as g:
        answer = _raw_exchange(g.port, header + request)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        g.wait_for("203.0.113.7 200 /", "stdout")
        assert _raw_exchange(g.port, request) == b""
        log = g.text()
    assert "Worker failed to boot" not in log and "proxy_protocol" not in log, log


def _h2_after_validation(tmp_path: Path) -> tuple[str, ...]:
    """gunicorn refuses ``h2`` at startup unless its h2 package is installed; a ``post_fork`` hook
    sets it on the worker's copy of the config instead, where our worker reads it."""
    hooks = tmp_path / "h2_hooks.py"
    hooks.write_text("def post_fork(server, worker):\n    worker.cfg.set('http_protocols', 'h2,h1')\n")
    return ("-c", str(hooks))


@pytest.mark.parametrize("given", ["command-line", "post-fork-hook"])
def test_http_protocols_with_h2_warns_once_and_serves_http_1_1(tmp_path, given):
    if given == "command-line":
        pytest.importorskip("h2", reason="gunicorn refuses --http-protocols h2 without its h2 package")
    args = ("--http-protocols", "h2,h1") if given == "command-line" else _h2_after_validation(tmp_path)
    with gunicorn(*args) as g:
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT)
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        conn.close()
        log = g.text()
    assert response.status == 200 and response.version == 11
    assert log.count("http_protocols h2 without TLS or http2_cleartext: HTTP/1.1 only") == 1, log


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (Debian's, built with nghttp2)")
def test_http_protocols_h2_with_cleartext_prior_knowledge_serves_http_2():
    """gunicorn's own HTTP/2 settings: http_protocols h2 and http2_cleartext prior-knowledge."""
    pytest.importorskip("h2", reason="gunicorn refuses --http-protocols h2 without its h2 package")
    args = ("--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge")
    with gunicorn(*args) as g:
        url = f"http://127.0.0.1:{g.port}/"
        done = subprocess.run(
            ["curl", "-s", "-i", "--http2-prior-knowledge", "--max-time", str(TIMEOUT), url],
            capture_output=True,
            timeout=TIMEOUT + 5,
        )
        plain = subprocess.run(
            ["curl", "-s", "-i", "--http1.1", "--max-time", str(TIMEOUT), url],
            capture_output=True,
            timeout=TIMEOUT + 5,
        )
        log = g.text()
    assert done.stdout.startswith(b"HTTP/2 200"), (done.stdout, done.stderr, log)
    assert plain.stdout.startswith(b"HTTP/1.1 200"), plain.stdout
    assert "HTTP/1.1 only" not in log


# worker_connections is no limit: many idle keep-alive connections on one worker


IDLE_CONNECTIONS = 2000


@contextlib.contextmanager
def open_files(needed: int) -> Iterator[None]:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit if ``needed`` is more (children
    started meanwhile inherit it); skip the test if even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} file descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def read_one_response(sock: socket.socket) -> bytes:
    """One response head and its Content-Length body, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = head.lower().split(b"\r\n")
    length = int(next(line for line in fields if line.startswith(b"content-length:"))[15:])
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        body += chunk
    return head


def test_two_thousand_idle_keep_alive_connections_on_one_worker():
    started = time.monotonic()
    with open_files(IDLE_CONNECTIONS + 500), gunicorn("--workers", "1", "--keep-alive", "30") as g:
        socks: list[socket.socket] = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                socks.append(socket.create_connection(("127.0.0.1", g.port), timeout=TIMEOUT))
            for sock in socks:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            heads = [read_one_response(sock) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert len(g.workers()) == 1
    statuses = {head.split(b"\r\n")[0] for head in heads}
    assert statuses == {b"HTTP/1.1 200 OK"}
    assert not any(b"connection: close" in head.lower() for head in heads)
    assert time.monotonic() - started < 30


# Recycling under load loses no request


def _signal_during_load(g: Gunicorn, signum: int | None, times: int) -> None:
    """Send ``signum`` to the arbiter ``times`` times, spread over the load, each seen in its log."""
    for count in range(1, times + 1):
        time.sleep(1.5)
        if signum is not None:
            g.proc.send_signal(signum)
            g.wait_for(f"Handling signal: {signal.Signals(signum).name[3:].lower()}", count=count)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "signum", "times"),
    [
        pytest.param(2, None, 2, id="max-requests"),
        pytest.param(2, signal.SIGHUP, 2, id="max-requests-and-hup-twice"),
        pytest.param(3, signal.SIGTTOU, 1, id="max-requests-and-ttou"),
    ],
)
def test_no_failed_request_while_gunicorn_recycles(workers, signum, times):
    args = ("--workers", str(workers), "--max-requests", "30", "--max-requests-jitter", "5")
    with gunicorn(*args) as g:
        g.wait_for("Booting worker", count=workers)
        with Load(g.port, threads=6) as load:
            started = time.monotonic()
            _signal_during_load(g, signum, times)
            time.sleep(max(0.0, 5 - (time.monotonic() - started)))
        left = workers - 1 if signum == signal.SIGTTOU else workers
        assert wait_until(lambda: len(g.workers()) == left, TIMEOUT), [w.pid for w in g.workers()]
        log = g.text()
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}"
    assert load.ok >= 1000, load.ok
    assert len(load.pids) > 10, "the workers were not recycled"
    assert "Error while closing socket" not in log, log
    assert "[ERROR]" not in log, log
