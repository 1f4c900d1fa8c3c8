"""Refusing a WebSocket over real sockets on every backend: close before accept (403), an app that
returns or raises first (500), the denial-response extension (exact bytes), and ``send`` after the
client is gone (an ``OSError`` inside the app)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import read_response
from tests.timing import TICK, TIMEOUT
from tests.ws.apps import Recorder, client
from tests.ws.frames import CLOSE, close_payload, encode_frame, handshake_request, open_raw

EXACT = {"server_header": False, "date_header": False}


def error_response(status, reason):
    return (
        b"HTTP/1.1 %d %b\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (status, reason, len(reason), reason)
    )


def exchange(srv):
    with srv.connect() as sock:
        sock.sendall(handshake_request())
        return read_response(sock)


async def close_first(scope, receive, send):
    await receive()
    await send({"type": "websocket.close", "code": 4003})


async def returns_first(scope, receive, send):
    await receive()


async def raises_first(scope, receive, send):
    await receive()
    raise RuntimeError("boom before accept")


def test_close_before_accept_is_403(serve):
    with serve(close_first, **EXACT) as srv:
        assert exchange(srv) == error_response(403, b"Forbidden")


def test_close_before_accept_with_the_websockets_client(serve):
    with serve(close_first) as srv, pytest.raises(InvalidStatus) as caught:
        client(srv).__enter__()  # raises before a connection exists: nothing to close
    assert caught.value.response.status_code == 403


def test_return_before_accept_is_500(serve, caplog):
    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(returns_first, **EXACT) as srv:
        assert exchange(srv) == error_response(500, b"Internal Server Error")
    assert any("returned without accepting" in r.getMessage() for r in caplog.records)


def test_raise_before_accept_is_500_with_traceback(serve, caplog):
    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(raises_first, **EXACT) as srv:
        assert exchange(srv) == error_response(500, b"Internal Server Error")
    assert any(r.exc_info and "boom before accept" in str(r.exc_info[1]) for r in caplog.records)


def test_invalid_message_before_accept_is_500(serve, caplog):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.send", "text": "not accepted yet"})

    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(app, **EXACT) as srv:
        assert exchange(srv) == error_response(500, b"Internal Server Error")
    message = next(str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert "'websocket.send'" in message and "'connecting'" in message


def denying(*messages):
    async def app(scope, receive, send):
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        for message in messages:
            await send(message)

    return app


def start(status, headers=()):
    return {"type": "websocket.http.response.start", "status": status, "headers": list(headers)}


def body(data, more=False):
    return {"type": "websocket.http.response.body", "body": data, "more_body": more}


def test_denial_response_single_part(serve):
    app = denying(
        start(401, [(b"content-type", b"text/plain"), (b"www-authenticate", b"Basic")]), body(b"nope")
    )
    with serve(app, **EXACT) as srv:
        assert exchange(srv) == (
            b"HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\nwww-authenticate: Basic\r\n"
            b"content-length: 4\r\nconnection: close\r\n\r\nnope"
        )


def test_denial_response_multi_part_is_chunked(serve):
    app = denying(start(403, [(b"x-why", b"parts")]), body(b"one ", True), body(b"", True), body(b"two"))
    with serve(app, **EXACT) as srv:
        assert exchange(srv) == (
            b"HTTP/1.1 403 Forbidden\r\nx-why: parts\r\ntransfer-encoding: chunked\r\n"
            b"connection: close\r\n\r\n"
            b"4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n"
        )


def test_denial_response_with_content_length_and_parts(serve):
    app = denying(start(400, [(b"content-length", b"6")]), body(b"abc", True), body(b"def"))
    with serve(app, **EXACT) as srv:
        assert (
            exchange(srv)
            == b"HTTP/1.1 400 Bad Request\r\ncontent-length: 6\r\nconnection: close\r\n\r\nabcdef"
        )


def test_denial_response_empty_body_and_default_headers(serve):
    with serve(denying(start(404), body(b"")), date_header=False) as srv:
        assert exchange(srv) == (
            b"HTTP/1.1 404 Not Found\r\nserver: asgi-worker\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )


def test_denial_response_seen_by_the_websockets_client(serve):
    app = denying(start(418, [(b"x-tea", b"yes")]), body(b"short and stout"))
    with serve(app) as srv, pytest.raises(InvalidStatus) as caught:
        client(srv).__enter__()
    response = caught.value.response
    assert response.status_code == 418
    assert response.headers["x-tea"] == "yes"
    assert response.body == b"short and stout"


def test_denial_with_an_invalid_header_is_500(serve, caplog):
    app = denying(start(403, [(b"bad header", b"x")]), body(b"x"))
    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(app, **EXACT) as srv:
        assert exchange(srv) == error_response(500, b"Internal Server Error")
    assert any(r.exc_info and "invalid response header" in str(r.exc_info[1]) for r in caplog.records)


def test_accept_with_an_invalid_header_is_500(serve, caplog):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"bad header", b"x")]})

    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(app, **EXACT) as srv:
        assert exchange(srv) == error_response(500, b"Internal Server Error")
    assert any(r.exc_info and "invalid response header" in str(r.exc_info[1]) for r in caplog.records)


def test_raise_after_denial_start_before_its_body_is_500(serve, caplog):
    async def app(scope, receive, send):
        await receive()
        await send(start(403))
        raise RuntimeError("boom in the denial")

    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(app, **EXACT) as srv:
        assert exchange(srv) == error_response(500, b"Internal Server Error")


def test_raise_mid_denial_body_closes_the_connection(serve, caplog):
    async def app(scope, receive, send):
        await receive()
        await send(start(403))
        await send(body(b"partial", True))
        raise RuntimeError("boom mid denial")

    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(app, **EXACT) as srv:
        response = exchange(srv)  # returns: the server closed the connection
    assert response.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert response.endswith(b"7\r\npartial\r\n")  # truncated: no last chunk


def test_send_after_disconnect_raises_oserror(serve):
    recorder = Recorder()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        recorder.add(await receive())
        for message in ({"type": "websocket.send", "text": "late"}, {"type": "websocket.close"}):
            try:
                await send(message)
            except OSError as exc:
                recorder.add(exc)

    with serve(app) as srv:
        sock, _, reader = open_raw(("127.0.0.1", srv.port))
        with sock:
            sock.sendall(encode_frame(CLOSE, close_payload(1001)))
            assert reader.frame().opcode == CLOSE
        items = recorder.wait_len(3)
    assert items[0]["code"] == 1001
    assert all(type(exc).__name__ == "ClientDisconnected" for exc in items[1:])
    assert all(isinstance(exc, OSError) for exc in items[1:])


def test_sending_app_stops_when_the_client_drops(serve):
    recorder = Recorder()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        sent = 0
        try:
            while sent < 100000:
                await send({"type": "websocket.send", "bytes": b"x" * 1024})
                sent += 1
                await asyncio.sleep(0)
        except OSError as exc:
            recorder.add(exc)

    with serve(app) as srv:
        sock, _, reader = open_raw(("127.0.0.1", srv.port))
        reader.frame()
        sock.close()
        exc = recorder.wait_len(1, timeout=TIMEOUT)[0]
    assert isinstance(exc, OSError)


def test_accept_twice_is_an_error_after_accept(serve):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(TICK)  # the second accept comes once the first is on the wire
        await send({"type": "websocket.accept"})

    with serve(app) as srv:
        sock, head, reader = open_raw(("127.0.0.1", srv.port))
        with sock:
            assert head.startswith(b"HTTP/1.1 101 ")
            close = reader.frame()
    assert close.opcode == CLOSE and close.payload[:2] == (1011).to_bytes(2, "big")
