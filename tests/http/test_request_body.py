"""The request side of the ASGI cycle over real sockets (rules in ``http/cycle.py`` and ``connection.py``).

Apps run on the server's thread; they report to the test thread through lists (``append`` is
atomic) and ``threading.Event``s, which the test waits on for at most ``TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import threading
import time

import httpx
import pytest

from tests.conftest import assert_silent, read_exact, read_response, read_until
from tests.timing import TICK, TIMEOUT, wait_until

EXACT = {"server_header": False, "date_header": False}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def ok(body: bytes, close: bool = False) -> bytes:
    connection = b"connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), connection, body)


async def read_body(receive, messages: list | None = None) -> bytes:
    """The whole request body; each ``http.request`` message is also appended to ``messages``."""
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        if messages is not None:
            messages.append((len(message["body"]), message["more_body"]))
        body += message["body"]
        if not message["more_body"]:
            return body


async def echo_body(scope, receive, send):
    body = await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


# Framed bodies


def test_content_length_body(serve):
    with serve(echo_body, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        assert read_exact(sock, len(ok(b"hello world"))) == ok(b"hello world")


def test_content_length_body_in_pieces(serve):
    messages: list = []

    async def app(scope, receive, send):
        body = await read_body(receive, messages)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello")
        assert wait_until(lambda: messages), "the first piece did not reach the app on its own"
        sock.sendall(b" world")
        assert read_exact(sock, len(ok(b"hello world"))) == ok(b"hello world")
    assert messages == [(5, True), (6, False)]


def test_chunked_body_with_extensions_is_reassembled(serve):
    body = (
        b"5;name=value\r\nhello\r\n"
        b'1;a;b="quoted; \\"x\\""\r\n \r\n'
        b"A\r\n0123456789\r\n"
        b"5;ext;more=1\r\nworld\r\n"
        b"0;last=1\r\n\r\n"
    )
    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    with serve(echo_body, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(request)
        expected = ok(b"hello 0123456789world")
        assert read_exact(sock, len(expected)) == expected


def test_chunked_body_sent_chunk_by_chunk(serve):
    with serve(echo_body, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for chunk in (b"3;x=1\r\nabc\r\n", b"2\r\nde\r\n", b"0\r\n\r\n"):
            time.sleep(TICK)  # the input under test: each chunk arrives in a read of its own
            sock.sendall(chunk)
        assert read_exact(sock, len(ok(b"abcde"))) == ok(b"abcde")


def test_large_body_is_streamed_to_the_app(serve):
    payload = bytes(range(256)) * (3 * 4096)  # 3 MiB
    messages: list = []

    async def app(scope, receive, send):
        body = await read_body(receive, messages)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": hashlib.sha256(body).hexdigest().encode()})

    with serve(app) as srv:
        response = httpx.post(srv.url, content=payload, timeout=TIMEOUT)
    assert response.text == hashlib.sha256(payload).hexdigest()
    assert sum(size for size, _ in messages) == len(payload)
    assert len(messages) > 1
    assert [more for _, more in messages] == [True] * (len(messages) - 1) + [False]
    assert max(size for size, _ in messages) < len(payload)


def test_large_chunked_body_is_streamed_to_the_app(serve):
    messages: list = []

    async def app(scope, receive, send):
        body = await read_body(receive, messages)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": hashlib.sha256(body).hexdigest().encode()})

    parts = [bytes([i]) * 65536 for i in range(20)]  # 1.25 MiB

    with serve(app) as srv:
        response = httpx.post(srv.url, content=iter(parts), timeout=TIMEOUT)
    assert response.text == hashlib.sha256(b"".join(parts)).hexdigest()
    assert len(messages) > 1
    assert [more for _, more in messages] == [True] * (len(messages) - 1) + [False]


# Expect: 100-continue

EXPECT_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"


def test_100_continue_is_sent_when_the_app_reads(serve):
    may_read = threading.Event()
    messages: list = []

    async def app(scope, receive, send):
        while not may_read.is_set():  # no 100 Continue before the app asks for the body
            await asyncio.sleep(TICK / 10)
        body = await read_body(receive, messages)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(EXPECT_HEAD)
        assert_silent(sock, 2 * TICK)  # the app has not called receive() yet
        may_read.set()
        assert read_exact(sock, len(CONTINUE)) == CONTINUE
        sock.sendall(b"ab")
        assert wait_until(lambda: messages), "the app did not get the first part"
        sock.sendall(b"cde")  # its second receive() waited for this: still only one 100 Continue
        assert read_exact(sock, len(ok(b"abcde"))) == ok(b"abcde")
        # The connection is in step: the next request, without Expect, gets no 100 Continue.
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert read_exact(sock, len(ok(b"hi"))) == ok(b"hi")


def test_100_continue_is_not_sent_when_the_app_answers_without_reading(serve):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"too big"})

    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(EXPECT_HEAD)
        data = read_response(sock)
    assert (
        data
        == b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-length: 7\r\nconnection: close\r\n\r\ntoo big"
    )


def test_100_continue_then_body_like_curl(serve):
    """The client sends the body only after the interim response, as curl does with a large body."""
    with serve(echo_body, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(EXPECT_HEAD)
        assert read_until(sock, b"\r\n\r\n") == CONTINUE
        sock.sendall(b"hello")
        assert read_exact(sock, len(ok(b"hello"))) == ok(b"hello")


# A body the app never reads


def test_unread_body_sent_late_closes_the_connection(serve):
    """The body was not even sent when the app answered: keeping the connection would desync."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
        response = read_until(sock, b"/first")
        assert response == ok(b"/first", close=True)
        # Bytes that look like a request, inside the body: must never be answered as one.
        try:
            sock.sendall(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert read_response(sock) == b""


@pytest.mark.parametrize("size", [5, 300_000], ids=["small", "large"])
def test_unread_pipelined_body_does_not_desync(serve, size):
    """Either the next request is answered correctly, or the connection closes: nothing else."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".ljust(size, b"x")[:size]
    first = b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (size, body)
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(first + b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_response(sock)
    assert data in (
        ok(b"/first") + ok(b"/second", close=True),  # the body was read past: keep-alive was safe
        ok(b"/first", close=True),  # the body was not all read: closed instead
    )


# receive() after the body


def test_receive_after_the_body_waits_for_the_response_then_disconnects(serve):
    record: list = []
    done = threading.Event()

    async def app(scope, receive, send):
        record.append(await receive())
        later = asyncio.ensure_future(receive())
        await asyncio.sleep(2 * TICK)  # time for receive() to return, were it wrongly not waiting
        record.append(later.done())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await asyncio.sleep(TICK)
        record.append(later.done())  # not over while the response is still streaming
        await send({"type": "http.response.body", "body": b""})
        record.append(await asyncio.wait_for(later, TIMEOUT))
        done.set()

    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert read_until(sock, b"0\r\n\r\n").endswith(b"1\r\na\r\n0\r\n\r\n")
        assert done.wait(TIMEOUT)
        assert record == [
            {"type": "http.request", "body": b"hi", "more_body": False},
            False,
            False,
            {"type": "http.disconnect"},
        ]


def test_get_body_is_empty(serve):
    record: list = []

    async def app(scope, receive, send):
        record.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    assert record == [{"type": "http.request", "body": b"", "more_body": False}]


# Client disconnect


def disconnect_recorder():
    """An app that reads until ``http.disconnect`` (bounded), then tries to respond; and what it saw."""
    waiting = threading.Event()
    finished = threading.Event()
    record: dict = {}

    async def app(scope, receive, send):
        began = False
        while True:
            if began:
                waiting.set()  # the request has begun and the app is about to wait in receive() again
            try:
                message = await asyncio.wait_for(receive(), 7 * TICK)
            except asyncio.TimeoutError:
                record["timed_out"] = True
                break
            if message["type"] == "http.disconnect":
                record["disconnect_at"] = time.monotonic()
                break
            began = True
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except Exception as exc:
            record["send_error"] = exc
        finished.set()

    return app, waiting, finished, record


def disconnect_and_wait(srv, app_state, request: bytes, reset: bool = False) -> float:
    """Send ``request``, close once the app waits in receive(); returns how long it took to notice."""
    _app, waiting, finished, record = app_state
    with srv.connect() as sock:
        sock.sendall(request)
        assert waiting.wait(TIMEOUT)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        closed_at = time.monotonic()
    assert finished.wait(TIMEOUT)
    assert "send_error" not in record
    assert "timed_out" not in record, "the app never got http.disconnect"
    return record["disconnect_at"] - closed_at


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", id="mid-body"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", id="mid-chunked"
        ),
    ],
)
def test_client_disconnect_mid_body_wakes_receive(serve, request_bytes):
    app_state = disconnect_recorder()
    with serve(app_state[0]) as srv:
        assert disconnect_and_wait(srv, app_state, request_bytes) < 5 * TICK


def test_client_close_after_the_body_wakes_receive(serve):
    """The request is whole and the app waits in receive() for the end (long poll, server-sent events):
    a client that closes its socket must be reported to the app."""
    app_state = disconnect_recorder()
    with serve(app_state[0]) as srv:
        assert disconnect_and_wait(srv, app_state, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") < 5 * TICK


def test_client_reset_after_the_body_wakes_receive(serve):
    app_state = disconnect_recorder()
    with serve(app_state[0]) as srv:
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        assert disconnect_and_wait(srv, app_state, request, reset=True) < 5 * TICK


def test_half_closed_client_gets_its_response_then_close(serve):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(2):
            await asyncio.sleep(TICK / 2)  # the response is still being written after the client's FIN
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = read_until(sock, b"0\r\n\r\n")
        assert data == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n1\r\nx\r\n0\r\n\r\n"
        sock.settimeout(5 * TICK)
        assert sock.recv(1) == b""  # and then the server closes: there is nothing more to read


def test_malformed_chunk_mid_body_ends_the_request(serve):
    """Either the app learns the request is broken (http.disconnect) and the client gets a 400, or at least
    the connection closes; it must not hang until the client gives up."""
    app_state = disconnect_recorder()
    _app, waiting, finished, record = app_state
    bad_request = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    with serve(app_state[0], **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        assert waiting.wait(TIMEOUT)
        sent_at = time.monotonic()
        sock.sendall(b"zz\r\nnot a chunk\r\n")
        sock.settimeout(5 * TICK)  # shorter than the app's own bounded wait
        try:
            data = sock.recv(65536)
        except TimeoutError:
            data = None
        assert finished.wait(TIMEOUT)
        assert data is not None, "neither an answer nor a close"
        assert data == b"" or data.startswith(bad_request)
        assert "timed_out" not in record
        assert record["disconnect_at"] - sent_at < 5 * TICK


def test_send_after_disconnect_mid_stream_does_not_raise(serve):
    streaming = threading.Event()
    client_gone = threading.Event()
    finished = threading.Event()
    record: dict = {}

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(250):  # bounded: at most 250 x TICK / 5 = TIMEOUT
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
                streaming.set()
                if client_gone.is_set():
                    break
                await asyncio.sleep(TICK / 5)
            while (await asyncio.wait_for(receive(), TIMEOUT))["type"] != "http.disconnect":
                pass  # the server has seen the close once it reports it
            for _ in range(3):
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except Exception as exc:
            record["send_error"] = exc
        finished.set()

    with serve(app) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert streaming.wait(TIMEOUT)
        client_gone.set()
        assert finished.wait(TIMEOUT)
    assert "send_error" not in record
