"""Concurrency and request limits, max-requests recycling, bounded graceful shutdown."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from tests.conftest import read_response, read_until, run_server
from tests.timing import TICK, TIMEOUT, wait_until

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
SLOW = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"


class Gate:
    """Holds requests to ``/slow`` in the app until the test opens the gate (or ``hold`` passes).

    ``entered`` is set once such a request is in the app: the test waits on that state instead of
    sleeping and hoping the request got there.
    """

    def __init__(self, hold: float = TIMEOUT) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.hold = hold

    async def wait_opened(self) -> None:
        deadline = time.monotonic() + self.hold
        while not self.opened.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(TICK / 10)


def counting_app(counter, gate=None):
    """Records each request's path and answers "ok"; requests to ``/slow`` wait for ``gate``."""

    async def app(scope, receive, send):
        counter.append(scope["path"])
        if gate is not None and scope["path"] == "/slow":
            gate.entered.set()
            await gate.wait_opened()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_limit_concurrency_answers_503(serve):
    gate = Gate()
    with serve(counting_app([], gate), limit_concurrency=1) as srv, srv.connect() as busy:
        busy.sendall(SLOW)
        assert gate.entered.wait(TIMEOUT), "the first request did not reach the app"
        with srv.connect() as second:
            second.sendall(GET)
            assert read_response(second).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        gate.opened.set()
        assert read_until(busy, b"ok").startswith(b"HTTP/1.1 200 OK\r\n")


def test_limit_max_requests_stops_after_exactly_n(backend):
    counter = []
    loop, http = backend
    with run_server(counting_app(counter), loop=loop, http=http, limit_max_requests=5) as srv:
        for _ in range(5):
            with httpx.Client(timeout=TIMEOUT) as client:
                assert client.get(srv.url + "/").status_code == 200
        assert wait_until(lambda: srv.server.should_exit), "the server did not stop after 5 requests"
    assert len(counter) == 5
    assert srv.server.server_state.total_requests == 5


def test_jitter_bounds_the_limit():
    from asgi_worker import Config
    from asgi_worker.context import max_requests_of

    config = Config(counting_app([]), limit_max_requests=10, limit_max_requests_jitter=3, log_config=None)
    limits = {max_requests_of(config) for _ in range(30)}  # each draw is one process's own limit
    assert limits <= {10, 11, 12, 13} and len(limits) > 1


def test_graceful_timeout_cancels_stuck_request(backend, caplog):
    loop, http = backend
    grace = 5 * TICK
    gate = Gate(hold=10 * TIMEOUT)  # never opened: only the graceful timeout can end the request
    with run_server(counting_app([], gate), loop=loop, http=http, timeout_graceful_shutdown=grace) as srv:
        sock = srv.connect()
        sock.sendall(SLOW)
        assert gate.entered.wait(TIMEOUT), "the request did not reach the app"
        began = time.monotonic()
    took = time.monotonic() - began
    with sock:
        assert read_response(sock) == b""  # closed without a response
    assert grace - TICK < took < grace + 10 * TICK
    assert any("Cancel 1 running task(s)" in r.getMessage() for r in caplog.records)


def test_graceful_stop_finishes_in_flight_and_refuses_new(backend):
    loop, http = backend
    gate = Gate()
    with (
        run_server(counting_app([], gate), loop=loop, http=http) as srv,
        srv.connect() as busy,
        srv.connect() as idle,
    ):
        idle.sendall(GET)  # answered at once: then an idle keep-alive connection
        assert read_until(idle, b"ok").endswith(b"\r\n\r\nok")
        busy.sendall(SLOW)
        assert gate.entered.wait(TIMEOUT), "the request did not reach the app"
        srv.server.should_exit = True
        assert read_response(idle) == b""  # closed while the other request is still in the app
        with pytest.raises(ConnectionRefusedError):  # and the listener is already gone
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT).close()
        assert not gate.opened.is_set()
        gate.opened.set()
        response = read_response(busy)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in response


@pytest.mark.parametrize(
    ("kwargs", "request_bytes", "status"),
    [
        ({"limit_request_line": 100}, b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        ({"limit_request_fields": 5}, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 6 + b"\r\n", b"431"),
        (
            {"limit_request_field_size": 100},
            b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 200 + b"\r\n\r\n",
            b"431",
        ),
        (
            {"h11_max_incomplete_event_size": 1000},
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"X-Long: "
            + b"y" * 600
            + b"\r\n"
            + b"X-More: "
            + b"z" * 600
            + b"\r\n\r\n",
            b"431",
        ),
    ],
)
def test_request_limits_exact_status(serve, kwargs, request_bytes, status):
    with (
        serve(counting_app([]), server_header=False, date_header=False, **kwargs) as srv,
        srv.connect() as sock,
    ):
        sock.sendall(request_bytes)
        data = read_response(sock)
    assert data.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"connection: close\r\n" in data
