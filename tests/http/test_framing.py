"""Response framing over real sockets: the rules in ``asgi_worker/http/response.py``, byte for byte.

Servers here run without the ``server`` and ``date`` lines (``EXACT``) so that whole responses can be
compared exactly: status line, framing headers, ``connection`` header and body.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from tests.conftest import read_exact, read_response, read_until
from tests.timing import TICK, TIMEOUT

EXACT = {"server_header": False, "date_header": False}

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def respond(*bodies: bytes, status: int = 200, headers: tuple[tuple[bytes, bytes], ...] = ()):
    """An app that sends ``bodies`` as separate body messages, all but the last with ``more_body``."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        for index, body in enumerate(bodies):
            more = index < len(bodies) - 1
            await send({"type": "http.response.body", "body": body, "more_body": more})

    return app


def assert_open(sock: socket.socket) -> None:
    """The connection is still usable: another GET on it gets a response."""
    sock.sendall(GET)
    assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")


# Content-Length for a one-message body


def test_single_body_gets_content_length_and_one_write_with_the_head(serve):
    async def app(scope, receive, send):
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await asyncio.sleep(2 * TICK)  # a head written at once would arrive alone
        await send({"type": "http.response.body", "body": b"hi"})

    expected = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi"
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET)
        first = sock.recv(65536)
        assert first == expected


def test_app_content_length_is_honoured_across_messages(serve):
    app = respond(b"he", b"", b"llo", headers=((b"content-length", b"5"),))
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET)
        expected = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        assert read_exact(sock, len(expected)) == expected
        assert_open(sock)


# Chunked for a streamed body


def test_streamed_body_is_chunked(serve):
    app = respond(b"ab", b"cde", b"")
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET)
        data = read_until(sock, b"0\r\n\r\n")
        assert (
            data == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
        )
        assert_open(sock)


def test_empty_more_body_messages_do_not_end_the_body(serve):
    app = respond(b"", b"a", b"", b"", b"bc")
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET)
        data = read_until(sock, b"0\r\n\r\n")
        assert data == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"
        assert_open(sock)


def test_streamed_body_through_httpx(serve):
    app = respond(*[b"%d," % i for i in range(100)], b"")
    with serve(app) as srv:
        response = httpx.get(srv.url, timeout=TIMEOUT)
    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers
    assert response.content == b"".join(b"%d," % i for i in range(100))


# HEAD


@pytest.mark.parametrize(
    "bodies", [pytest.param((b"hello",), id="single"), pytest.param((b"hel", b"lo"), id="streamed")]
)
def test_head_gets_the_get_headers_and_no_body(serve, bodies):
    app = respond(*bodies, headers=((b"content-type", b"text/plain"),))
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET)
        get_head = read_until(sock, b"\r\n\r\n")
        get_head, _, rest = get_head.partition(b"\r\n\r\n")
        # Drain the GET body whatever its framing, so that the socket is at a message boundary.
        if b"chunked" in get_head:
            if not rest.endswith(b"0\r\n\r\n"):
                rest += read_until(sock, b"0\r\n\r\n")
            assert rest == b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
        elif len(rest) < 5:
            rest += read_exact(sock, 5 - len(rest))
        sock.sendall(HEAD)
        head_head = read_until(sock, b"\r\n\r\n")
        assert head_head == get_head + b"\r\n\r\n"
        # No body bytes follow: the next thing on the wire is the answer to the next request.
        sock.sendall(GET)
        assert read_until(sock, b"\r\n\r\n").startswith(get_head + b"\r\n\r\n")


def test_head_with_single_body_has_exact_content_length(serve):
    app = respond(b"hello")
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(HEAD)
        assert read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        assert_open(sock)


# Statuses without a body


@pytest.mark.parametrize("status, reason", [(204, b"No Content"), (304, b"Not Modified")])
@pytest.mark.parametrize("body", [b"", b"ignored"], ids=["empty", "app-sent-body"])
def test_no_body_statuses_get_no_body_and_no_content_length(serve, status, reason, body):
    app = respond(body, status=status)
    expected = b"HTTP/1.1 %d %s\r\n\r\n" % (status, reason)
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET)
        assert read_until(sock, b"\r\n\r\n") == expected
        # The next response follows directly: no body bytes were written in between.
        sock.sendall(GET)
        assert read_until(sock, b"\r\n\r\n") == expected


def test_no_body_status_streamed_is_not_chunked(serve):
    app = respond(b"", b"", status=204)
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET + GET)
        expected = b"HTTP/1.1 204 No Content\r\n\r\n"
        assert read_exact(sock, 2 * len(expected)) == 2 * expected


# HTTP/1.0


def test_http10_closes_by_default(serve):
    with serve(respond(b"hi"), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_response(sock) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"


def test_http10_keep_alive_on_request(serve):
    expected = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nhi"
    with serve(respond(b"hi"), **EXACT) as srv, srv.connect() as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert read_exact(sock, len(expected)) == expected


@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n"], ids=["default", "keep-alive"])
def test_http10_streamed_response_is_close_delimited(serve, connection):
    with serve(respond(b"ab", b"cde"), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n" + connection + b"\r\n")
        assert read_response(sock) == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabcde"


# Connection: close


def test_connection_close_request_closes_after_response(serve):
    with serve(respond(b"hi"), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET_CLOSE)
        assert read_response(sock) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"


def test_connection_close_request_with_streamed_response(serve):
    with serve(respond(b"ab", b""), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET_CLOSE)
        assert read_response(sock) == (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nab\r\n0\r\n\r\n"
        )


@pytest.mark.parametrize("value", [b"close", b"Close"])
def test_app_connection_close_header_closes_after_response(serve, value):
    app = respond(b"hi", headers=((b"connection", value),))
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        sock.sendall(GET)
        assert read_response(sock) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"


def test_default_headers_come_before_framing_headers(serve):
    with serve(respond(b"hi")) as srv, srv.connect() as sock:
        sock.sendall(GET_CLOSE)
        data = read_response(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert lines[1] == b"server: asgi-worker"
    assert lines[2].startswith(b"date: ") and lines[2].endswith(b" GMT")
    assert lines[3:] == [b"content-length: 2", b"connection: close"]
    assert body == b"hi"
