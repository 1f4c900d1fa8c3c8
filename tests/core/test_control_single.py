"""``--control-bind`` of a single process: what ``/metrics`` counts, ``/livez`` and ``/readyz``.

Counting tests run an in-process server on every loop x parser (the ``serve`` fixture) and read the
scrape over a real socket; what depends on signals or exit codes runs ``python -m asgi_worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asgi_worker.control import endpoints
from tests.conftest import read_response, read_until, run_server
from tests.processes import ServerProcess, free_port, stop_tree
from tests.timing import TICK, TIMEOUT, wait_until
from tests.ws.apps import client, echo_app

APPS = str(Path(__file__).parent.parent / "cli" / "apps")
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Address = tuple[str, int] | str  # (host, port), or the path of a UNIX socket


# The control port, over raw sockets


def control(address: Address, path: str, method: str = "GET", accept: str | None = None):
    """One request to the control listener: ``(status, header fields, body)``."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(address)
        extra = f"Accept: {accept}\r\n" if accept is not None else ""
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        data = read_response(sock)
    if not data:
        raise ConnectionError(f"{path}: closed without an answer")
    head, _, body = data.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    assert line.startswith("HTTP/1.1 "), data[:200]
    headers = {name.lower(): value for name, _, value in (f.partition(": ") for f in fields)}
    assert int(headers["content-length"]) == len(body) or method == "HEAD"
    return int(line.split(" ")[1]), headers, body


def status(address: Address, path: str) -> int | None:
    """The status of ``path``, or None while nothing answers there (not yet, no more, or full)."""
    try:
        return control(address, path)[0]
    except OSError:
        return None


class Scrape:
    """One ``/metrics`` text body, with ``value`` to sum the samples that match a name and labels."""

    def __init__(self, address: Address) -> None:
        code, headers, body = control(address, "/metrics")
        assert code == 200 and headers["content-type"].startswith("text/plain"), (code, headers)
        self.text = body.decode()
        self.samples = [s for family in text_string_to_metric_families(self.text) for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())


def settles(address: Address, name: str, expected: float, **labels: str) -> float:
    """Wait until the scrape shows ``expected`` for ``name`` (a request is counted as its app task
    ends, which may be just after the client read the response); the last value seen."""
    seen: list[float] = []

    def reached() -> bool:
        seen.append(Scrape(address).value(name, **labels))
        return seen[-1] == expected

    wait_until(reached)
    return seen[-1]


def control_address(srv) -> tuple[str, int]:
    """Where an in-process server bound ``control_bind="127.0.0.1:0"`` (its port is the kernel's)."""
    return srv.server._control.listener.sock.getsockname()


# Apps


async def body_app(scope, receive, send):
    """Reads the whole body and answers "ok"."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def gated_app(entered: threading.Event, opened: threading.Event, block: float = 0.0):
    """``/slow`` waits for ``opened`` (bounded); ``/block`` blocks the whole loop ``block`` seconds."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/slow":
            entered.set()
            deadline = time.monotonic() + TIMEOUT
            while not opened.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(TICK / 10)
        elif scope["path"] == "/block":
            entered.set()
            time.sleep(block)  # on purpose: an app that blocks the event loop
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    return app


# What /metrics counts (in-process, every backend)


def test_histogram_counts_every_request_and_body_bytes(serve):
    bodies = [b"", b"x" * 10, b"y" * 1000, b"z" * 70000]
    with serve(body_app, control_bind="127.0.0.1:0") as srv:
        address = control_address(srv)
        with httpx.Client(timeout=TIMEOUT) as http:
            for body in bodies:
                assert http.post(srv.url + "/", content=body).status_code == 200
            for _ in range(5):
                assert http.get(srv.url + "/?q=1").status_code == 200
        sent = len(bodies) + 5
        assert settles(address, "http_server_request_duration_seconds_count", sent) == sent
        scrape = Scrape(address)
        labels = {"http_response_status_code": "200", "url_scheme": "http", "network_protocol_version": "1.1"}
        assert scrape.value("http_server_request_duration_seconds_count", http_request_method="POST") == 4
        assert scrape.value("http_server_request_duration_seconds_count", http_request_method="GET") == 5
        assert scrape.value("http_server_request_duration_seconds_bucket", le="+Inf", **labels) == sent
        assert scrape.value("http_server_request_body_size_bytes_total") == sum(map(len, bodies))
        assert scrape.value("http_server_response_body_size_bytes_total") == 2 * sent
        assert scrape.value("http_server_active_requests") == 0
        assert scrape.value("asgi_server_connections_accepted_total") == 1


def test_malformed_requests_counted_by_status(serve):
    refused = {
        "400": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",  # two spaces in the request line
        "431": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        "414": b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    with serve(body_app, control_bind="127.0.0.1:0", limit_request_line=100) as srv:
        address = control_address(srv)
        for code, data in refused.items():
            with srv.connect() as sock:
                sock.sendall(data)
                assert read_response(sock).startswith(f"HTTP/1.1 {code} ".encode())
        scrape = Scrape(address)
        for code in refused:
            assert scrape.value("asgi_server_requests_malformed_total", http_response_status_code=code) == 1
        assert scrape.value("asgi_server_requests_malformed_total") == 3
        assert scrape.value("http_server_request_duration_seconds_count") == 0  # never reached the app
        assert scrape.value("http_server_active_requests") == 0


def test_head_and_keep_alive_timeouts_counted_by_kind(serve):
    timeout = 3 * TICK
    with serve(
        body_app, control_bind="127.0.0.1:0", timeout_request_header=timeout, timeout_keep_alive=timeout
    ) as srv:
        address = control_address(srv)
        with srv.connect() as slow_head:
            slow_head.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
            assert read_response(slow_head).startswith(b"HTTP/1.1 408 ")
        with srv.connect() as idle:
            idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_until(idle, b"ok").endswith(b"ok")
            assert read_response(idle) == b""  # then closed for idling
        assert settles(address, "asgi_server_timeouts_total", 1, kind="keep_alive") == 1
        scrape = Scrape(address)
        assert scrape.value("asgi_server_timeouts_total", kind="request_head") == 1
        assert scrape.value("asgi_server_timeouts_total", kind="request_body") == 0
        assert scrape.value("asgi_server_requests_malformed_total") == 0  # a 408 is a timeout, not malformed


def test_limit_concurrency_refusals_counted(serve):
    entered, opened = threading.Event(), threading.Event()
    with serve(gated_app(entered, opened), control_bind="127.0.0.1:0", limit_concurrency=1) as srv:
        address = control_address(srv)
        with srv.connect() as busy:
            busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            assert entered.wait(TIMEOUT), "the first request did not reach the app"
            for _ in range(2):
                with srv.connect() as second:
                    second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert read_response(second).startswith(b"HTTP/1.1 503 ")
            assert Scrape(address).value("http_server_active_requests") == 1
            opened.set()
            assert read_until(busy, b"done").startswith(b"HTTP/1.1 200 ")
        assert settles(address, "http_server_request_duration_seconds_count", 1) == 1
        scrape = Scrape(address)
        assert scrape.value("asgi_server_connections_refused_total") == 2
        assert scrape.value("http_server_active_requests") == 0


def test_websocket_open_then_closed(serve):
    with serve(echo_app(), control_bind="127.0.0.1:0") as srv:
        address = control_address(srv)
        with client(srv) as ws:
            ws.send("ping")
            assert ws.recv(timeout=TIMEOUT) == "ping"
            scrape = Scrape(address)
            assert scrape.value("asgi_server_websocket_open_connections") == 1
            assert scrape.value("asgi_server_websocket_connections_total") == 1
        assert settles(address, "asgi_server_websocket_open_connections", 0) == 0
        scrape = Scrape(address)
        assert scrape.value("asgi_server_websocket_connections_total") == 1
        assert scrape.value("http_server_active_requests") == 0
        assert settles(address, "asgi_server_open_connections", 0) == 0


# The scrape's formats and the routes (one backend: nothing here depends on the parser)


def busy_server(**kwargs):
    """A server with something in every metric family (requests, a refusal, a WebSocket)."""
    return run_server(echo_app(), control_bind="127.0.0.1:0", **kwargs)


def test_promtool_accepts_the_scrape():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Prometheus' own checker) is not installed")
    with busy_server() as srv:
        address = control_address(srv)
        with client(srv):
            pass
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 400 ")
        with httpx.Client(timeout=TIMEOUT) as http:
            http.get(srv.url + "/")  # an HTTP request to a WebSocket-only app: 500, still a request
        settles(address, "http_server_request_duration_seconds_count", 1)
        body = control(address, "/metrics")[2]
    assert b"http_server_request_duration_seconds_bucket{" in body
    assert b'asgi_server_requests_malformed_total{http_response_status_code="400"} 1.0' in body
    checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=TIMEOUT)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_openmetrics_when_asked():
    with run_server(body_app, control_bind="127.0.0.1:0") as srv:
        address = control_address(srv)
        code, headers, body = control(address, "/metrics", accept="application/openmetrics-text")
        assert code == 200 and headers["content-type"] == OPENMETRICS
        assert body.endswith(b"# EOF\n") and b"# TYPE asgi_server_connections_accepted counter" in body
        code, headers, body = control(address, "/metrics", accept="text/plain")
        assert code == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"# EOF" not in body and b"asgi_server_connections_accepted_total 0.0" in body


def test_routes_and_methods():
    with run_server(body_app, control_bind="127.0.0.1:0") as srv:
        address = control_address(srv)
        assert control(address, "/other")[0] == 404
        assert control(address, "/metrics/")[0] == 404
        assert control(address, "/livez?verbose")[:3:2] == (200, b"event loop running\n")
        assert control(address, "/readyz")[:3:2] == (200, b"serving\n")
        code, headers, body = control(address, "/readyz", method="HEAD")
        assert (code, body, headers["content-length"]) == (200, b"", str(len(b"serving\n")))
        assert control(address, "/livez", method="POST")[0] == 405
        with httpx.Client(timeout=TIMEOUT) as http:  # the app's port knows nothing of these paths
            assert http.get(srv.url + "/livez").text == "ok"


def test_control_on_a_unix_socket(tmp_path):
    path = str(tmp_path / "control.sock")
    with run_server(body_app, control_bind=f"unix:{path}") as srv:
        assert control(path, "/livez")[0] == 200
        assert control(path, "/readyz")[0] == 200
        with httpx.Client(timeout=TIMEOUT) as http:
            assert http.get(srv.url + "/").status_code == 200
        assert settles(path, "http_server_request_duration_seconds_count", 1) == 1
    assert status(path, "/livez") is None  # gone with the server


def test_readyz_503_while_starting(tmp_path):
    """The control listener is up before lifespan startup ends: not ready (yet alive) meanwhile."""
    port = free_port()
    opened = threading.Event()
    seen: list[tuple[int, bytes]] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            deadline = time.monotonic() + TIMEOUT
            while not opened.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(TICK / 10)
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})

    def probe() -> None:
        if wait_until(lambda: status(("127.0.0.1", port), "/readyz") is not None):
            seen.append(control(("127.0.0.1", port), "/readyz")[:3:2])
            seen.append(control(("127.0.0.1", port), "/livez")[:3:2])
        opened.set()

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    with run_server(app, lifespan="on", control_bind=f"127.0.0.1:{port}"):
        prober.join(TIMEOUT)
        assert seen == [(503, b"starting\n"), (200, b"starting\n")]
        assert control(("127.0.0.1", port), "/readyz")[:3:2] == (200, b"serving\n")


def test_livez_503_while_the_loop_is_blocked(monkeypatch):
    stall = 5 * TICK
    monkeypatch.setattr(endpoints, "LIVENESS_STALL", stall)
    entered, opened = threading.Event(), threading.Event()
    app = gated_app(entered, opened, block=4 * stall)
    # A short keep-alive timeout makes the loop tick often (every TICK), well inside the stall.
    with run_server(app, control_bind="127.0.0.1:0", timeout_keep_alive=5 * TICK) as srv:
        address = control_address(srv)
        assert control(address, "/livez")[0] == 200
        with srv.connect() as sock:
            sock.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
            assert entered.wait(TIMEOUT)
            assert wait_until(lambda: status(address, "/livez") == 503, 4 * stall), "never 503"
            _code, _headers, body = control(address, "/livez")
            assert body.startswith(b"event loop blocked for ")
            assert Scrape(address).value("http_server_active_requests") == 1  # the control thread answers
            assert wait_until(lambda: status(address, "/livez") == 200), "never back to 200"
            assert read_until(sock, b"done").startswith(b"HTTP/1.1 200 ")


# A real process: signals, exit codes, one-line errors


@contextlib.contextmanager
def server_process(*args: str) -> Iterator[ServerProcess]:
    """``python -m asgi_worker --app-dir APPS --port P ARGS``; the whole group killed in the end."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgi_worker", "--app-dir", APPS, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    running = ServerProcess(proc, port, "stdout", "stderr")
    try:
        yield running
    finally:
        stop_tree(proc, running.output)


def app_status(port: int) -> int:
    with httpx.Client(timeout=TIMEOUT) as http:
        return http.get(f"http://127.0.0.1:{port}/").status_code


def test_readyz_503_during_shutdown_delay_then_exit_0():
    delay = 15 * TICK
    control_port = free_port()
    address = ("127.0.0.1", control_port)
    args = ("cliapps:hello", "--control-bind", f"127.0.0.1:{control_port}", "--shutdown-delay", str(delay))
    with server_process(*args) as srv:
        assert wait_until(lambda: status(address, "/readyz") == 200), srv.text()
        srv.proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert wait_until(lambda: status(address, "/readyz") == 503, delay / 2), "not 503 at once"
        assert control(address, "/readyz")[2] == b"stopping\n"
        assert control(address, "/livez")[0] == 200  # stopping is not dead
        assert app_status(srv.port) == 200  # a new connection, still served as usual
        assert time.monotonic() - began < delay, "the checks took longer than the delay they check"
        assert srv.proc.wait(delay + TIMEOUT) == 0, srv.text()
        took = time.monotonic() - began
    assert took >= delay - TICK, f"exited after {took:.2f} s, before the {delay} s delay"
    assert "Shutdown delay" in srv.text()


def test_second_signal_ends_the_shutdown_delay():
    control_port = free_port()
    address = ("127.0.0.1", control_port)
    args = ("cliapps:hello", "--control-bind", f"127.0.0.1:{control_port}", "--shutdown-delay", "60")
    with server_process(*args) as srv:
        assert wait_until(lambda: status(address, "/readyz") == 200), srv.text()
        srv.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: status(address, "/readyz") == 503)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(TIMEOUT) == 0, srv.text()


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1:http", "unix:", "127.0.0.1:"])
def test_malformed_control_bind_is_one_line_and_exit_1(value):
    result = subprocess.run(
        [sys.executable, "-m", "asgi_worker", "--app-dir", APPS, "cliapps:hello", "--control-bind", value],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        start_new_session=True,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asgi_worker: error: control_bind"), result.stderr
    assert repr(value) in lines[0]


def test_control_port_in_use_is_one_line_and_exit_3():
    """Exit 3 (``BOOT_ERROR``: a socket could not be bound), before the app's port is bound."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        control_port = taken.getsockname()[1]
        with server_process("cliapps:hello", "--control-bind", f"127.0.0.1:{control_port}") as srv:
            assert srv.proc.wait(TIMEOUT * 2) == 3, srv.text()
            srv.output.join()
            port = srv.port
            errors = [line for line in srv.text().splitlines() if not line.startswith("INFO:")]
    assert errors == [
        f"ERROR:    Control listener: could not bind to 127.0.0.1:{control_port}: Address already in use"
    ]
    assert "Traceback" not in srv.text() and "running on" not in srv.text()
    with pytest.raises(OSError):  # the app's port was never bound
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
