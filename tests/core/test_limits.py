"""Concurrency and request limits, max-requests recycling, bounded graceful shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tests.conftest import read_response, read_until, run_server
from tests.timing import TICK, TIMEOUT


def counting_app(counter, delay=0.0):
    async def app(scope, receive, send):
        counter.append(scope["path"])
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_limit_concurrency_answers_503(serve):
    with serve(counting_app([], delay=5 * TICK), limit_concurrency=1) as srv, srv.connect() as busy:
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(TICK)
        with srv.connect() as second:
            second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(second).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert read_until(busy, b"ok").startswith(b"HTTP/1.1 200 OK\r\n")


def test_limit_max_requests_stops_after_exactly_n(backend):
    counter = []
    loop, http = backend
    with run_server(counting_app(counter), loop=loop, http=http, limit_max_requests=5) as srv:
        for _ in range(5):
            with httpx.Client(timeout=TIMEOUT) as client:
                assert client.get(srv.url + "/").status_code == 200
        deadline = time.monotonic() + TIMEOUT
        while not srv.server.should_exit and time.monotonic() < deadline:
            time.sleep(TICK / 5)
        assert srv.server.should_exit
    assert len(counter) == 5
    assert srv.server.server_state.total_requests == 5


def test_jitter_bounds_the_limit():
    from asgi_worker import Config

    limits = set()
    for _ in range(30):
        config = Config(counting_app([]), limit_max_requests=10, limit_max_requests_jitter=3, log_config=None)
        config.load()
        limits.add(config.max_requests)
    assert limits <= {10, 11, 12, 13} and len(limits) > 1


def test_graceful_timeout_cancels_stuck_request(backend, caplog):
    loop, http = backend
    result = []
    with run_server(counting_app([], delay=100), loop=loop, http=http, timeout_graceful_shutdown=0.5) as srv:
        sock = srv.connect()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(TICK)
        began = time.monotonic()
        thread = threading.Thread(target=lambda: result.append(read_response(sock)))
        thread.start()
    took = time.monotonic() - began
    thread.join(TIMEOUT)
    sock.close()
    assert took < 0.5 + 10 * TICK
    assert result == [b""]  # closed without a response
    assert any("Cancel 1 running task(s)" in r.getMessage() for r in caplog.records)


def test_graceful_stop_finishes_in_flight_and_refuses_new(backend):
    loop, http = backend
    with run_server(counting_app([], delay=5 * TICK), loop=loop, http=http) as srv:
        busy = srv.connect()
        idle = srv.connect()
        busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(TICK)
        srv.server.should_exit = True
        time.sleep(TICK)
        assert read_response(idle, timeout=TIMEOUT) == b""  # idle keep-alive closed at once
        response = read_response(busy)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in response
        port = srv.port
        busy.close()
        idle.close()
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


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
