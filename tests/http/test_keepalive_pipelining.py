"""Keep-alive, pipelining and connection timeouts over real sockets (rules in ``http/connection.py``).

Servers run without ``server`` and ``date`` lines (``EXACT``) so that responses compare exactly.
Timeouts are configured as multiples of ``TICK`` and measured with a bound of one second of slack,
the most the server's deadline sweep (``clock.py``) may add.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.timing import TICK, TIMEOUT

EXACT = {"server_header": False, "date_header": False}

# uvloop's loop.time() has millisecond resolution and is read once per loop iteration, so a
# deadline the server computes can fire up to a millisecond before the client's clock says.
LOOP_CLOCK_SLACK = 0.005


class Responses:
    """Reads responses one at a time from a raw socket, keeping bytes that arrive early."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        sock.settimeout(TIMEOUT)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed with {bytes(self.buf)!r} unread")
        self.buf += data

    def _take(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) == -1:
            self._fill()
        return self._take(end + 2)

    def next(self) -> bytes:
        """The raw bytes of the next response (head and body), framed by its own headers."""
        while (end := self.buf.find(b"\r\n\r\n")) == -1:
            self._fill()
        head = self._take(end + 4)
        lower = head.lower()
        if b"\r\ntransfer-encoding: chunked\r\n" in lower:
            body = b""
            while True:
                line = self._line()
                size = int(line.split(b";")[0], 16)
                body += line + self._take(size + 2)
                if size == 0:
                    return head + body
        marker = lower.find(b"\r\ncontent-length: ")
        if marker == -1:
            return head
        length = int(lower[marker + 18 : lower.index(b"\r\n", marker + 2)])
        return head + self._take(length)

    def wait_closed(self) -> None:
        """Returns when the server closes; fails if more bytes come or nothing happens within TIMEOUT."""
        data = self.sock.recv(65536)
        assert bytes(self.buf) + data == b"", "bytes after the last expected response"


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)


def get(path: str) -> bytes:
    return b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()


async def echo_path(scope, receive, send):
    """Answers with the request path; ``/slow`` first sleeps, so a reordering server would show."""
    if scope["path"] == "/slow":
        await asyncio.sleep(2 * TICK)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


async def echo_body(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message["body"]
        if not message["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["method"].encode() + b" " + body})


# Pipelining


@pytest.mark.parametrize(
    "paths", [["/slow", "/a", "/b"], ["/a", "/slow", "/b"]], ids=["slow-first", "slow-middle"]
)
def test_pipelined_requests_are_answered_in_order(serve, paths):
    with serve(echo_path, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"".join(get(path) for path in paths))
        responses = Responses(sock)
        assert [responses.next() for _ in paths] == [ok(path.encode()) for path in paths]
        # And the connection is still in step for one more.
        sock.sendall(get("/after"))
        assert responses.next() == ok(b"/after")


def test_pipelined_posts_with_bodies(serve):
    requests = (
        b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
        b"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n"
        b"PUT /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        b"POST /4 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nlast"
    )
    with serve(echo_body, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(requests)
        responses = Responses(sock)
        bodies = [b"POST first", b"POST second", b"PUT ", b"POST last"]
        assert [responses.next() for _ in bodies] == [ok(body) for body in bodies]


def test_pipelined_requests_ending_with_close(serve):
    with serve(echo_path, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(
            get("/slow") + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + get("/never")
        )
        responses = Responses(sock)
        assert responses.next() == ok(b"/slow")
        assert responses.next() == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n/last"
        responses.wait_closed()


# Keep-alive


def test_fifty_sequential_requests_on_one_connection(serve):
    clients = []

    async def app(scope, receive, send):
        clients.append(scope["client"])
        await echo_path(scope, receive, send)

    with serve(app, **EXACT) as srv, srv.connect() as sock:
        responses = Responses(sock)
        for index in range(50):
            sock.sendall(get(f"/{index}"))
            assert responses.next() == ok(b"/%d" % index)
        assert clients == [sock.getsockname()] * 50


def test_idle_keep_alive_connection_is_closed_after_the_timeout(serve):
    timeout = 5 * TICK
    with serve(echo_path, timeout_keep_alive=timeout, **EXACT) as srv, srv.connect() as sock:
        started = time.monotonic()  # before the request: the idle clock starts after its response
        sock.sendall(get("/"))
        responses = Responses(sock)
        assert responses.next() == ok(b"/")
        responses.wait_closed()
        elapsed = time.monotonic() - started
    assert timeout - LOOP_CLOCK_SLACK <= elapsed <= timeout + 10 * TICK


def test_keep_alive_timeout_restarts_after_each_response(serve):
    timeout = 3 * TICK
    with serve(echo_path, timeout_keep_alive=timeout, **EXACT) as srv, srv.connect() as sock:
        responses = Responses(sock)
        for _ in range(3):  # 3 x 2 TICK in all: longer than one timeout, shorter than each gap
            sock.sendall(get("/"))
            assert responses.next() == ok(b"/")
            time.sleep(2 * TICK)
        sock.sendall(get("/"))
        assert responses.next() == ok(b"/")


def test_slow_app_is_not_cut_off_by_the_keep_alive_timeout(serve):
    async def app(scope, receive, send):
        if scope["path"] == "/a":
            await asyncio.sleep(4 * TICK)  # the behaviour under test: longer than the keep-alive timeout
        await echo_path(scope, receive, send)

    with serve(app, timeout_keep_alive=TICK, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(get("/a"))
        responses = Responses(sock)
        assert responses.next() == ok(b"/a")
        sock.sendall(get("/b"))
        assert responses.next() == ok(b"/b")


def test_slow_streaming_app_is_not_cut_off_by_the_keep_alive_timeout(serve):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            await asyncio.sleep(1.5 * TICK)  # each gap longer than both timeouts
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    config = {"timeout_keep_alive": TICK, "timeout_request_header": TICK, **EXACT}
    with serve(app, **config) as srv, srv.connect() as sock:
        sock.sendall(get("/"))
        assert Responses(sock).next() == (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 3 + b"0\r\n\r\n"
        )


# Request-head timeout

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout"
)


def test_silent_connection_is_closed_after_the_header_timeout(serve):
    timeout = 5 * TICK
    with serve(echo_path, timeout_request_header=timeout, **EXACT) as srv:
        started = time.monotonic()
        with srv.connect() as sock:
            Responses(sock).wait_closed()  # no 408 for a client that never started a request
            elapsed = time.monotonic() - started
    assert timeout - LOOP_CLOCK_SLACK <= elapsed <= timeout + 10 * TICK


def test_half_a_head_gets_408_then_close(serve):
    timeout = 5 * TICK
    with serve(echo_path, timeout_request_header=timeout, **EXACT) as srv, srv.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        responses = Responses(sock)
        assert responses.next() == REQUEST_TIMEOUT
        responses.wait_closed()
        elapsed = time.monotonic() - started
    assert timeout - LOOP_CLOCK_SLACK <= elapsed <= timeout + 10 * TICK


def test_half_a_head_after_keep_alive_gets_408_at_the_header_timeout(serve):
    timeout = 3 * TICK
    config = {"timeout_request_header": timeout, "timeout_keep_alive": 40 * TICK, **EXACT}
    with serve(echo_path, **config) as srv, srv.connect() as sock:
        responses = Responses(sock)
        sock.sendall(get("/"))
        assert responses.next() == ok(b"/")
        started = time.monotonic()
        sock.sendall(b"GET /second HTTP/1.1\r\n")
        assert responses.next() == REQUEST_TIMEOUT
        responses.wait_closed()
        elapsed = time.monotonic() - started
    assert timeout - LOOP_CLOCK_SLACK <= elapsed <= timeout + 10 * TICK


def test_head_sent_slowly_within_the_timeout_is_served(serve):
    with serve(echo_path, timeout_request_header=5 * TICK, **EXACT) as srv, srv.connect() as sock:
        for piece in (b"GET /slowly HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(TICK)  # the behaviour under test: a client that sends its head slowly
        assert Responses(sock).next() == ok(b"/slowly")
