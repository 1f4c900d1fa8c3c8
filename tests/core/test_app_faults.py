"""What the client sees when the app misbehaves: exact bytes over a real socket, on every backend."""

from __future__ import annotations

import logging

from tests.conftest import read_response

EXACT = {"server_header": False, "date_header": False}
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"  # for answers that keep the connection
ERROR_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


def exchange(srv, request=GET):
    with srv.connect() as sock:
        sock.sendall(request)
        return read_response(sock)


async def raises_before_start(scope, receive, send):
    raise RuntimeError("boom before start")


async def raises_after_start(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("boom after start")


async def raises_mid_body(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"part", "more_body": True})
    raise RuntimeError("boom mid body")


async def returns_nothing(scope, receive, send):
    return None


async def returns_after_start(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})


def headers_app(headers, status=200):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_raise_before_start_is_500_with_traceback(serve, caplog):
    with (
        caplog.at_level(logging.ERROR, logger="asgi_worker.error"),
        serve(raises_before_start, **EXACT) as srv,
    ):
        assert exchange(srv) == ERROR_500
    assert any(r.exc_info and "boom before start" in str(r.exc_info[1]) for r in caplog.records)


def test_raise_between_start_and_body_is_still_500(serve):
    with serve(raises_after_start, **EXACT) as srv:
        assert exchange(srv) == ERROR_500


def test_raise_mid_body_closes_without_terminating_chunk(serve):
    with serve(raises_mid_body, **EXACT) as srv:
        data = exchange(srv)
    assert data.startswith(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\npart\r\n")
    assert not data.endswith(b"0\r\n\r\n")


def test_return_without_response_is_500(serve):
    with serve(returns_nothing, **EXACT) as srv:
        assert exchange(srv) == ERROR_500
    with serve(returns_after_start, **EXACT) as srv:
        assert exchange(srv) == ERROR_500


def test_invalid_header_refused_never_written(serve):
    for headers in ([(b"bad name", b"v")], [(b"x", b"a\r\nInjected: 1")], [(b"x", b"a\nb")], [(b"", b"v")]):
        with serve(headers_app(headers), **EXACT) as srv:
            data = exchange(srv)
        assert data == ERROR_500, headers
        assert b"Injected" not in data


def test_invalid_status_is_500(serve):
    with serve(headers_app([], status="abc"), **EXACT) as srv:
        assert exchange(srv) == ERROR_500
    with serve(headers_app([], status=999), **EXACT) as srv:  # unknown but well-formed: sent as is
        assert exchange(srv, CLOSE).startswith(b"HTTP/1.1 999 \r\n")


def test_app_server_and_date_replace_defaults(serve):
    app = headers_app([(b"server", b"mine"), (b"date", b"then")])
    with serve(app) as srv:
        data = exchange(srv, CLOSE)
    head = data.split(b"\r\n\r\n")[0].lower()
    assert head.count(b"\r\nserver:") == 1 and b"server: mine" in head
    assert head.count(b"\r\ndate:") == 1 and b"date: then" in head


def test_default_headers_and_switches(serve):
    with serve(headers_app([]), headers=[("X-Custom", " v ")]) as srv:
        head = exchange(srv, CLOSE).split(b"\r\n\r\n")[0]
    assert b"\r\nserver: asgi-worker\r\n" in head and b"\r\ndate: " in head and b"\r\nx-custom: v\r\n" in head
    with serve(headers_app([]), **EXACT) as srv:
        head = exchange(srv, CLOSE).split(b"\r\n\r\n")[0]
    assert b"server:" not in head and b"date:" not in head


def test_body_longer_than_content_length_closes(serve):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"toolong"})

    with serve(app, **EXACT) as srv:
        data = exchange(srv)
    assert b"toolong" not in data
