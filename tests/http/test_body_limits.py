"""``--limit-request-body`` and ``--timeout-request-body`` over real sockets, on every backend.

A body over the limit is 413: before the app runs when Content-Length declares it (no
``100 Continue`` either), or as a chunked body grows past it. A body that stops arriving is 408.
Either way a request whose app is running ends (its ``receive`` answers ``http.disconnect``), and
once its response has begun the connection closes instead. Rules in ``http/connection.py``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from asgi_worker.cli import parse_config_kwargs
from asgi_worker.config import OPTIONS, Config
from supervisor.config import SUPERVISOR_OPTIONS
from tests.conftest import read_response, read_until
from tests.supervisor.harness import supervise
from tests.timing import TICK, TIMEOUT, wait_until

EXACT = {"server_header": False, "date_header": False}
LIMIT = 100
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout"
)
CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
DISCONNECT = ("http.disconnect",)
LOOP_CLOCK_SLACK = 0.005  # the loop's clock and time.monotonic() differ by a few ms


def head(length: int, expect: bool = False, path: str = "/") -> bytes:
    extra = b"Expect: 100-continue\r\n" if expect else b""
    return b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%b\r\n" % (path.encode(), length, extra)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)


def assert_413(data: bytes) -> None:
    """A complete 413 that closes the connection (the reason phrase is the server's to choose)."""
    head_part, sep, _body = data.partition(b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413 ") and sep, data
    assert b"\r\nconnection: close" in head_part and CONTINUE not in data, data


class BodyReader:
    """An ASGI app that reads the whole body, recording each message as ``("http.request", size,
    more_body)`` or ``("http.disconnect",)``, then echoes it. With ``respond_first`` it starts a
    chunked response (``partial``) before reading, so a response byte is out when the body ends."""

    def __init__(self, respond_first: bool = False, wait_before_reading: float = 0.0) -> None:
        self.respond_first = respond_first
        self.wait_before_reading = wait_before_reading
        self.called = False
        self.messages: list[tuple[object, ...]] = []
        self.done = threading.Event()

    async def __call__(self, scope, receive, send):
        self.called = True
        try:
            if self.respond_first:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            await asyncio.sleep(self.wait_before_reading)
            body = b""
            while True:
                message = await asyncio.wait_for(receive(), TIMEOUT)
                if message["type"] != "http.request":
                    self.messages.append((message["type"],))
                    return
                self.messages.append((message["type"], len(message["body"]), message["more_body"]))
                body += message["body"]
                if not message["more_body"]:
                    break
            if not self.respond_first:
                await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.done.set()

    def ended_mid_body(self, limit: int | None = None) -> bool:
        """The app got part of the body (at most ``limit`` bytes), never its end, then http.disconnect."""
        *requests, last = self.messages
        sizes = [size for _type, size, more in requests if more]  # type: ignore[misc]
        within = limit is None or sum(sizes) <= limit
        return last == DISCONNECT and len(sizes) == len(requests) and within


# --limit-request-body


@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100-continue"])
def test_declared_length_over_the_limit_is_413_before_the_app_runs(serve, expect):
    app = BodyReader()
    with serve(app, limit_request_body=LIMIT, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(LIMIT + 1, expect=expect))  # the client waits: no body byte is sent
        assert_413(read_response(sock))
    assert not app.called


def test_a_client_that_sends_the_refused_body_anyway_still_reads_the_413(serve):
    # The refusal comes before the body; a client that does not wait for it (no Expect) sends 8 MiB.
    # Closing with those bytes unread would reset the connection under the client (EPIPE or
    # ECONNRESET, the 413 lost): the server shuts its side, drains, and closes when the client does.
    body = b"x" * (8 << 20)
    with serve(BodyReader(), limit_request_body=LIMIT, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(len(body)) + body)
        sock.shutdown(socket.SHUT_WR)
        answer = read_response(sock)
        assert_413(answer)
        assert sock.recv(1) == b""  # then the server closes: it does not wait out its linger


def test_a_refused_client_that_never_closes_is_closed_after_the_linger():
    from asgi_worker.http.connection import LINGER_SECONDS
    from tests.conftest import run_server

    with run_server(BodyReader(), limit_request_body=LIMIT, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(LIMIT + 1) + b"x" * 1000)
        assert_413(read_response(sock))
        started = time.monotonic()
        sock.settimeout(LINGER_SECONDS + TIMEOUT)
        assert sock.recv(1) == b""  # closed by the server, without our EOF
        assert time.monotonic() - started < LINGER_SECONDS + TIMEOUT  # the sweep runs once a second


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_at_the_limit_is_served(serve, framing):
    body = b"x" * LIMIT
    request = head(LIMIT) + body if framing == "content-length" else CHUNKED_HEAD + chunk(body) + chunk(b"")
    with serve(BodyReader(), limit_request_body=LIMIT, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(request)
        assert read_until(sock, body) == ok(body)


def test_chunked_body_crossing_the_limit_is_413_and_the_app_sees_disconnect(serve):
    app = BodyReader()
    with serve(app, limit_request_body=LIMIT, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(CHUNKED_HEAD + chunk(b"a" * 60))
        assert wait_until(lambda: app.messages), "the first chunk did not reach the app"
        sock.sendall(chunk(b"b" * 60))  # 120 bytes in all
        assert_413(read_response(sock))
        assert app.done.wait(TIMEOUT)
    assert app.ended_mid_body(LIMIT), app.messages


def test_chunked_body_crossing_the_limit_after_the_response_began_closes(serve):
    app = BodyReader(respond_first=True)
    with serve(app, limit_request_body=LIMIT, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(CHUNKED_HEAD + chunk(b"a" * 60))
        data = read_until(sock, b"partial\r\n")
        assert wait_until(lambda: app.messages), "the first chunk did not reach the app"
        sock.sendall(chunk(b"b" * 60))
        data += read_response(sock)  # closed: the client sees a response without its end
        assert app.done.wait(TIMEOUT)
    assert data == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n"
    assert app.ended_mid_body(LIMIT), app.messages


# --timeout-request-body


def test_stalled_body_gets_408_and_the_app_sees_disconnect(serve):
    timeout = 5 * TICK
    app = BodyReader()
    with serve(app, timeout_request_body=timeout, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(10) + b"abc")
        started = time.monotonic()
        assert read_response(sock) == REQUEST_TIMEOUT
        elapsed = time.monotonic() - started
        assert app.done.wait(TIMEOUT)
    assert timeout - LOOP_CLOCK_SLACK <= elapsed <= timeout + 10 * TICK
    assert app.messages == [("http.request", 3, True), DISCONNECT]


def test_stalled_chunked_body_after_the_response_began_closes(serve):
    app = BodyReader(respond_first=True)
    with serve(app, timeout_request_body=5 * TICK, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(CHUNKED_HEAD + chunk(b"abc"))
        data = read_response(sock)
        assert app.done.wait(TIMEOUT)
    assert data == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n"
    assert app.messages == [("http.request", 3, True), DISCONNECT]


def test_stalled_body_of_an_app_that_does_not_read_gets_408(serve):
    """We read while the app works (below the high-water mark): a client that stops is still late."""
    app = BodyReader(wait_before_reading=6 * TICK)  # busy past the timeout, then reads
    with serve(app, timeout_request_body=3 * TICK, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(10) + b"abc")
        assert read_response(sock) == REQUEST_TIMEOUT
        assert app.done.wait(TIMEOUT)
    assert app.messages == [("http.request", 3, True), DISCONNECT]


def test_body_sent_slowly_but_steadily_is_served(serve):
    """Each byte re-arms the deadline: the whole body may take longer than the timeout."""
    timeout = 5 * TICK
    with serve(BodyReader(), timeout_request_body=timeout, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(6))
        for byte in b"abcdef":
            time.sleep(2 * TICK)  # the behaviour under test: 12 TICK in all, each gap under the timeout
            sock.sendall(bytes([byte]))
        assert read_until(sock, b"abcdef") == ok(b"abcdef")


def test_no_body_timeout_while_reading_is_paused_for_the_app(serve):
    """An app that has not taken what is buffered pauses reading: the client is not late meanwhile."""
    size = 4 * 1024 * 1024  # more than the read-ahead and the socket buffers hold
    app = BodyReader(wait_before_reading=8 * TICK)
    sender: list[BaseException] = []

    def send_body(sock):
        try:
            sock.sendall(head(size) + b"x" * size)
        except OSError as exc:
            sender.append(exc)

    with serve(app, timeout_request_body=3 * TICK, **EXACT) as srv, srv.connect() as sock:
        thread = threading.Thread(target=send_body, args=(sock,), daemon=True)
        thread.start()
        response = read_until(sock, b"\r\n\r\n", timeout=2 * TIMEOUT)
        thread.join(TIMEOUT)
        assert response.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % size), response[:80]
    assert not sender and app.messages[-1][2] is False


def test_a_body_that_stalls_while_reading_is_paused_times_out_once_reading_resumes(serve):
    """The deadline starts again when the app takes the buffered body and reading resumes."""
    timeout = 3 * TICK
    app = BodyReader(wait_before_reading=2 * TICK)
    with serve(app, timeout_request_body=timeout, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(200_000) + b"x" * 100_000)  # past the read-ahead: reading pauses, then stalls
        assert read_response(sock) == REQUEST_TIMEOUT
        assert app.done.wait(TIMEOUT)
    assert app.ended_mid_body(), app.messages


def test_no_body_timeout_while_the_client_waits_for_100_continue(serve):
    app = BodyReader(wait_before_reading=8 * TICK)  # longer than the timeout: the app works first
    with serve(app, timeout_request_body=3 * TICK, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(5, expect=True))
        assert read_until(sock, CONTINUE, timeout=2 * TIMEOUT) == CONTINUE
        sock.sendall(b"hello")
        assert read_until(sock, b"hello") == ok(b"hello")


def test_a_client_silent_after_100_continue_gets_408(serve):
    timeout = 3 * TICK
    app = BodyReader()
    with serve(app, timeout_request_body=timeout, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(head(5, expect=True))
        assert read_until(sock, CONTINUE) == CONTINUE
        started = time.monotonic()
        rest = read_response(sock)
        elapsed = time.monotonic() - started
        assert app.done.wait(TIMEOUT)
    assert rest == REQUEST_TIMEOUT and app.messages == [DISCONNECT]
    assert timeout - LOOP_CLOCK_SLACK <= elapsed <= 2 * timeout + 10 * TICK  # armed before the 100


# WSGI: a body that cannot complete is never handed over as if whole


def wsgi_reader(outcome: list[str], done: threading.Event):
    def app(environ, start_response):
        try:
            body = environ["wsgi.input"].read()
        except OSError as exc:
            outcome.append(type(exc).__name__)
            raise
        finally:
            done.set()
        outcome.append(f"read {len(body)}")
        start_response("200 OK", [])
        return [body]

    return app


@pytest.mark.parametrize("case", ["limit", "timeout"])
def test_wsgi_input_raises_when_the_body_cannot_complete(serve, caplog, case):
    outcome: list[str] = []
    done = threading.Event()
    config = {"limit_request_body": LIMIT} if case == "limit" else {"timeout_request_body": 3 * TICK}
    app = wsgi_reader(outcome, done)
    with (
        caplog.at_level(logging.DEBUG, logger="asgi_worker.error"),
        serve(app, interface="wsgi", **config, **EXACT) as srv,
        srv.connect() as sock,
    ):
        sock.sendall(CHUNKED_HEAD + chunk(b"a" * 60))
        if case == "limit":
            sock.sendall(chunk(b"b" * 60))
        data = read_response(sock)
        assert done.wait(TIMEOUT)
    if case == "limit":
        assert_413(data)
    else:
        assert data == REQUEST_TIMEOUT
    assert outcome == ["ClientDisconnected"]
    noisy = [r for r in caplog.records if r.name == "asgi_worker.error" and r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]  # the client's doing: no error, no traceback


# Refusals are quiet


def test_a_refusal_is_one_debug_line_without_traceback(serve, caplog):
    with (
        caplog.at_level(logging.DEBUG, logger="asgi_worker.error"),
        serve(BodyReader(), **EXACT) as srv,
        srv.connect() as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 400 ")
    records = [r for r in caplog.records if r.name == "asgi_worker.error"]
    refusals = [r for r in records if r.getMessage().startswith("Invalid HTTP request received")]
    assert [(r.levelno, r.exc_info) for r in refusals] == [(logging.DEBUG, None)]
    assert all(r.levelno < logging.WARNING for r in records), [r.getMessage() for r in records]


# The settings


def test_both_settings_are_declared_once_with_their_defaults():
    config = Config("app:app")
    assert (config.limit_request_body, config.timeout_request_body) == (0, 60.0)
    assert config.request_limits.body == 0  # off unless asked: uvicorn users see no change
    assert Config("app:app", limit_request_body=1024).request_limits.body == 1024
    argv = ["app:app", "--limit-request-body", "10485760", "--timeout-request-body", "30"]
    for options in (OPTIONS, (*OPTIONS, *SUPERVISOR_OPTIONS)):  # python -m asgi_worker, asgi-supervise
        _app, kwargs = parse_config_kwargs(argv, environ={}, options=options)
        assert (kwargs["limit_request_body"], kwargs["timeout_request_body"]) == (10485760, 30.0)
    environ = {"ASGI_WORKER_LIMIT_REQUEST_BODY": "5", "ASGI_WORKER_TIMEOUT_REQUEST_BODY": "0"}
    _app, kwargs = parse_config_kwargs(["app:app"], environ=environ)
    assert (kwargs["limit_request_body"], kwargs["timeout_request_body"]) == (5, 0.0)


QUIET = ("--no-server-header", "--no-date-header")


def test_deploy_sets_the_limit_to_nginx_client_max_body_size():
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    env = (deploy / "asgi-supervise.env").read_text()
    limit = re.search(r"^ASGI_WORKER_LIMIT_REQUEST_BODY=(\d+)$", env, re.MULTILINE)
    nginx = re.search(r"^\s*client_max_body_size (\d+)m;", (deploy / "nginx.conf").read_text(), re.MULTILINE)
    assert limit and nginx and int(limit[1]) == int(nginx[1]) * 1024 * 1024


def test_asgi_supervise_workers_time_out_a_stalled_body():
    with (
        supervise(*QUIET, "--timeout-request-body", str(5 * TICK), "supapps:info") as sup,
        socket.create_connection(("127.0.0.1", sup.port), timeout=TIMEOUT) as sock,
    ):
        sock.sendall(head(10, path=f"/slow?{TIMEOUT}") + b"abc")  # the app is busy, not reading
        assert read_response(sock) == REQUEST_TIMEOUT


def test_asgi_supervise_workers_refuse_a_declared_body_over_the_limit():
    with (
        supervise(*QUIET, "--limit-request-body", str(LIMIT), "supapps:info") as sup,
        socket.create_connection(("127.0.0.1", sup.port), timeout=TIMEOUT) as sock,
    ):
        sock.sendall(head(LIMIT + 1, expect=True))
        assert_413(read_response(sock))
