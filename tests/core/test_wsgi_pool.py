"""The WSGI thread pool over real sockets: its size, and the line of requests waiting for a thread.

Rules in ``asgi_worker/wsgi.py``. The app blocks each request on its own ``threading.Event`` so the
test decides when a thread frees, which makes the order requests get a thread observable.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from asgi_worker.apploader import load_app
from asgi_worker.wsgi import WSGI_THREADS, WSGIAdapter, WSGIPool
from tests.cli.test_cli import server as cli_server
from tests.conftest import read_response, read_until
from tests.timing import TICK, TIMEOUT

PATHS = [f"/{index}" for index in range(12)]
EXACT = {"server_header": False, "date_header": False}


class Gate:
    """A WSGI app that holds each request until the test releases its path, recording who ran when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.release = {path: threading.Event() for path in PATHS}
        self.entered: list[str] = []
        self.running = 0
        self.most = 0

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        with self.lock:
            self.entered.append(path)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release[path].wait(TIMEOUT)
            body = environ["wsgi.input"].read()
        finally:
            with self.lock:
                self.running -= 1
        start_response("200 OK", [])
        return [f"{path} {len(body)} {environ['wsgi.multithread']}".encode()]

    def release_all(self) -> None:
        for event in self.release.values():
            event.set()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(TICK / 20)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def ok(path: str, threaded: bool = True) -> bytes:
    body = f"{path} 0 {threaded}".encode()
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b" % (len(body), body)


@contextmanager
def pool_server(serve, gate: Gate, threads: int, **kwargs) -> Iterator[tuple[Any, WSGIAdapter]]:
    """A server for ``gate`` with ``wsgi_threads=threads``; all requests are released before it stops."""
    try:
        with serve(gate, interface="wsgi", wsgi_threads=threads, lifespan="on", **EXACT, **kwargs) as srv:
            adapter = srv.server.config.loaded_app
            assert isinstance(adapter, WSGIAdapter) and adapter.pool.size == threads
            yield srv, adapter
    finally:
        gate.release_all()


def in_line(adapter: WSGIAdapter) -> int:
    """Requests that have a thread or wait for one."""
    return adapter.pool.busy + adapter.pool.waiting


def queue_in_order(srv, adapter: WSGIAdapter, stack: ExitStack, count: int) -> list[socket.socket]:
    """Send ``count`` requests, each one in the pool's line (running or waiting) before the next."""
    socks = []
    for index in range(count):
        sock = stack.enter_context(srv.connect())
        sock.sendall(get(PATHS[index]))
        wait_for(lambda n=index + 1: in_line(adapter) == n, f"request {index} is in line")
        socks.append(sock)
    return socks


def executor_queue(adapter: WSGIAdapter) -> int:
    return adapter.pool._executor._work_queue.qsize()


# Size


def test_default_pool_is_ten_threads(serve):
    assert WSGI_THREADS == 10
    assert load_app(Gate(), False, "wsgi", None).pool.size == 10
    gate = Gate()
    with serve(gate, interface="wsgi", lifespan="on", **EXACT) as srv, ExitStack() as stack:
        adapter = srv.server.config.loaded_app
        socks = queue_in_order(srv, adapter, stack, 11)
        wait_for(lambda: gate.running == 10, "ten requests run")
        time.sleep(TICK)
        assert (gate.running, adapter.pool.waiting, len(gate.entered)) == (10, 1, 10)
        gate.release_all()
        assert [read_response(sock) for sock in socks] == [ok(path) for path in PATHS[:11]]


def test_load_app_sizes_the_pool():
    assert load_app(Gate(), False, "wsgi", None, wsgi_threads=3).pool.size == 3
    with pytest.raises(ValueError, match="at least 1 thread"):
        WSGIPool(0)


def test_single_thread_says_not_multithread(serve):
    gate = Gate()
    gate.release_all()
    with pool_server(serve, gate, 1) as (srv, _adapter), srv.connect() as sock:
        sock.sendall(get("/0"))
        assert read_response(sock) == ok("/0", threaded=False)


# The line of waiting requests


def test_two_threads_run_two_and_the_rest_wait_in_order(serve):
    gate = Gate()
    with pool_server(serve, gate, 2) as (srv, adapter), ExitStack() as stack:
        socks = queue_in_order(srv, adapter, stack, 6)
        wait_for(lambda: gate.running == 2, "two requests run")
        time.sleep(TICK)  # a third request would have entered by now
        assert gate.entered == PATHS[:2] and adapter.pool.waiting == 4
        assert executor_queue(adapter) == 0  # the four waiting are on the loop, not in the executor
        for index, sock in enumerate(socks):
            gate.release[PATHS[index]].set()
            assert read_response(sock) == ok(PATHS[index])
            # The freed thread goes to the oldest waiting request.
            entered = min(index + 3, 6)
            wait_for(lambda n=entered: len(gate.entered) == n, "the next request runs")
            assert executor_queue(adapter) <= 2
        assert gate.entered == PATHS[:6] and gate.most == 2
        wait_for(lambda: adapter.pool.busy == 0 and adapter.pool.waiting == 0, "every slot is free")


def test_waiting_request_reads_no_body(serve):
    gate = Gate()
    gate.release["/1"].set()  # reads its body as soon as it has a thread
    head = (
        b"POST /1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
        b"Connection: close\r\n\r\n"
    )
    with pool_server(serve, gate, 1) as (srv, adapter), srv.connect() as busy, srv.connect() as sock:
        busy.sendall(get("/0"))
        wait_for(lambda: gate.running == 1, "the first request runs")
        sock.sendall(head)
        wait_for(lambda: adapter.pool.waiting == 1, "the upload waits for a thread")
        sock.settimeout(TICK)
        with pytest.raises(TimeoutError):  # no "100 Continue": nothing asked for the body yet
            sock.recv(1)
        gate.release["/0"].set()
        assert read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        assert read_response(sock).endswith(b"\r\n\r\n/1 4 False")
        assert read_response(busy) == ok("/0", threaded=False)


def test_limit_concurrency_answers_503_while_requests_wait(serve):
    gate = Gate()
    with pool_server(serve, gate, 1, limit_concurrency=3) as (srv, adapter), ExitStack() as stack:
        socks = queue_in_order(srv, adapter, stack, 3)
        with srv.connect() as extra:
            extra.sendall(get("/3"))
            assert read_response(extra).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert adapter.pool.waiting == 2 and "/3" not in gate.entered
        gate.release_all()
        assert [read_response(sock) for sock in socks] == [ok(path, False) for path in PATHS[:3]]


# Graceful stop


def test_graceful_stop_serves_the_waiting_requests(serve):
    gate = Gate()
    with pool_server(serve, gate, 2) as (srv, adapter), ExitStack() as stack:
        socks = queue_in_order(srv, adapter, stack, 4)
        srv.server.should_exit = True
        time.sleep(TICK)
        assert gate.entered == PATHS[:2] and adapter.pool.waiting == 2
        gate.release_all()
        assert [read_response(sock) for sock in socks] == [ok(path) for path in PATHS[:4]]
        assert gate.entered == PATHS[:4]


def test_graceful_timeout_drops_waiting_requests_without_hanging(serve):
    gate = Gate()
    with (
        pool_server(serve, gate, 1, timeout_graceful_shutdown=TICK) as (srv, adapter),
        ExitStack() as stack,
    ):
        socks = queue_in_order(srv, adapter, stack, 3)
        srv.server.should_exit = True
        # The running request is abandoned (its thread still blocks), the waiting ones cancelled.
        assert [read_response(sock) for sock in socks] == [b"", b"", b""]
        assert adapter.pool.waiting == 0
    assert gate.entered == ["/0"]  # the waiting requests never reached the app
    wait_for(lambda: gate.running == 0, "the abandoned thread returned")


def test_pool_unit_waiters_cancelled_leave_the_line():
    async def main() -> list[str]:
        pool = WSGIPool(1)
        order: list[str] = []
        release = threading.Event()
        first = asyncio.ensure_future(pool.run(release.wait, TIMEOUT))
        second = asyncio.ensure_future(pool.run(order.append, "second"))
        third = asyncio.ensure_future(pool.run(order.append, "third"))
        deadline = time.monotonic() + TIMEOUT
        while pool.waiting < 2:
            assert time.monotonic() < deadline, "the two later calls did not wait"
            await asyncio.sleep(TICK / 20)
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        assert (pool.busy, pool.waiting) == (1, 1)
        release.set()
        await asyncio.wait_for(asyncio.gather(first, third), TIMEOUT)
        assert (pool.busy, pool.waiting) == (0, 0)
        pool.shutdown()
        return order

    assert asyncio.run(main()) == ["third"]


def test_http_clients_all_answered_by_a_small_pool(serve):
    def app(environ, start_response):
        time.sleep(TICK / 10)
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    async def fetch_all(url: str) -> list[str]:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            responses = await asyncio.gather(*(client.get(f"{url}/{n}") for n in range(20)))
        return [response.text for response in responses]

    with serve(app, interface="wsgi", wsgi_threads=2, lifespan="on") as srv:
        assert asyncio.run(fetch_all(srv.url)) == [f"/{n}" for n in range(20)]


# The command line

_overlap = {"running": 0, "most": 0}
_overlap_lock = threading.Lock()


def overlap_app(environ, start_response):
    """For ``python -m asgi_worker``: ``/hold`` runs until three calls overlap (or ``5 * TICK``);
    ``/most`` answers the most calls that ever ran at once."""
    if environ["PATH_INFO"] == "/hold":
        with _overlap_lock:
            _overlap["running"] += 1
            _overlap["most"] = max(_overlap["most"], _overlap["running"])
        deadline = time.monotonic() + 5 * TICK
        while _overlap["running"] < 3 and time.monotonic() < deadline:
            time.sleep(TICK / 20)
        with _overlap_lock:
            _overlap["running"] -= 1
    start_response("200 OK", [])
    return [str(_overlap["most"]).encode()]


def test_cli_wsgi_threads_two():
    async def hold_four(url: str) -> list[int]:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            responses = await asyncio.gather(*(client.get(f"{url}/hold") for _ in range(4)))
        return [response.status_code for response in responses]

    args = ("tests.core.test_wsgi_pool:overlap_app", "--interface", "wsgi", "--wsgi-threads", "2")
    with cli_server(*args) as (proc, port):
        url = f"http://127.0.0.1:{port}"
        assert asyncio.run(hold_four(url)) == [200] * 4
        assert httpx.get(f"{url}/most", timeout=TIMEOUT).text == "2"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
