"""The opening handshake over real sockets on every backend: exact 101 bytes, refusals the library
decides (the app never runs), upgrades served as plain HTTP, and an upgrade pipelined behind a request."""

from __future__ import annotations

import asyncio
import gc

from tests.conftest import read_response, read_until
from tests.timing import TICK, TIMEOUT
from tests.ws.apps import Recorder, client, counting_app, echo_app
from tests.ws.frames import (
    ACCEPT,
    CLOSE,
    TEXT,
    FrameReader,
    accept_for,
    close_payload,
    encode_frame,
    handshake_request,
    open_raw,
    parse_close,
    read_head,
)

EXACT = {"server_header": True, "date_header": False}


def address(srv):
    return ("127.0.0.1", srv.port)


def test_switching_head_exact_bytes(serve):
    app = echo_app(subprotocol="chat", headers=[(b"x-extra", b"1")])
    with serve(app, **EXACT) as srv:
        sock, head, reader = open_raw(address(srv), headers=("Sec-WebSocket-Protocol: superchat, chat",))
        with sock:
            assert head == (
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: websocket\r\n"
                b"Connection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\n"
                b"sec-websocket-protocol: chat\r\n"
                b"x-extra: 1\r\n"
                b"server: asgi-worker\r\n"
                b"\r\n"
            )
            sock.sendall(encode_frame(TEXT, b"hello"))
            assert reader.frame() == (True, TEXT, b"hello", False)  # server frames are never masked
            sock.sendall(encode_frame(CLOSE, close_payload(1000)))
            assert reader.frame() == (True, CLOSE, close_payload(1000), False)
            assert reader.at_eof()  # the server closes the TCP connection first (RFC 6455 7.1.1)


def test_accept_key_computed_from_the_client_key(serve):
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    with serve(echo_app(), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(handshake_request(key=key))
        head, _ = read_head(sock)
    assert f"Sec-WebSocket-Accept: {accept_for(key)}\r\n".encode() in head
    assert b"sec-websocket-protocol" not in head.lower()  # none offered, none chosen


def test_app_server_and_date_headers_replace_ours(serve):
    app = echo_app(headers=[(b"server", b"mine"), (b"date", b"today")])
    with serve(app, server_header=True, date_header=True) as srv:
        sock, head, _ = open_raw(address(srv))
        sock.close()
    assert head.count(b"server:") == 1 and b"server: mine\r\n" in head
    assert head.count(b"date:") == 1 and b"date: today\r\n" in head


def test_websockets_client_on_both_parsers(serve):
    with serve(echo_app(subprotocol="b")) as srv, client(srv, subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"
        assert ws.response.headers["server"] == "asgi-worker"
        ws.send("ping")
        assert ws.recv(timeout=TICK * 20) == "ping"


def test_bad_key_is_400_and_the_app_never_runs(serve):
    calls = Recorder()
    with serve(counting_app(calls), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(handshake_request(key="abc"))
        response = read_response(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert head.lower().count(b"connection: close") == 1
    assert b"date:" not in head.lower()  # --no-date-header holds for refusals too
    assert b"\r\nserver: asgi-worker" in head
    assert b"invalid Sec-WebSocket-Key header" in body
    assert calls.items == []


def test_bad_version_is_426_and_the_app_never_runs(serve):
    # More cases (and both ws choices, and gunicorn) in test_ws_handshake_strict.py.
    calls = Recorder()
    with serve(counting_app(calls), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(handshake_request().replace(b"Version: 13", b"Version: 8"))
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in response
    assert calls.items == []


def test_two_upgrade_headers_is_426(serve):
    # Our parser takes the last Upgrade header (websocket); the library reads them all and refuses.
    calls = Recorder()
    with serve(counting_app(calls), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(handshake_request(headers=("Upgrade: h2c", "Upgrade: websocket")))
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nUpgrade: websocket\r\n" in response
    assert calls.items == []


def test_ws_none_serves_the_upgrade_as_http(serve):
    calls = Recorder()
    with serve(counting_app(calls), ws="none", **EXACT) as srv, srv.connect() as sock:
        sock.sendall(handshake_request())
        response = read_until(sock, b"http")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"\r\n\r\nhttp")
    assert calls.items == ["http"]


def test_h2c_upgrade_is_plain_http(serve):
    calls = Recorder()
    request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"
    with serve(counting_app(calls), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(request * 2)  # keep-alive still works: the connection stays HTTP
        sock.settimeout(TIMEOUT)
        response = b""
        while response.count(b"\r\n\r\nhttp") < 2 and (chunk := sock.recv(65536)):
            response += chunk
    assert response.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert calls.items == ["http", "http"]


def test_upgrade_pipelined_behind_a_request_is_answered_after_it(serve):
    order = Recorder()

    async def app(scope, receive, send):
        if scope["type"] == "http":
            order.add("http start")
            await asyncio.sleep(2 * TICK)  # the upgrade is already buffered meanwhile
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
            await send({"type": "http.response.body", "body": b"first"})
            order.add("http done")
            return
        order.add("websocket")
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"].upper()})
        await receive()

    request = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        # The request, the handshake and a first frame in one segment.
        sock.sendall(request + handshake_request("/ws") + encode_frame(TEXT, b"early"))
        first, _, after = read_until(sock, b"\r\n\r\nfirst").partition(b"\r\n\r\nfirst")
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        head, rest = read_head(sock, data=after)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        reader = FrameReader(sock, rest)
        assert reader.frame().payload == b"EARLY"  # bytes sent before the 101 are not lost
        sock.sendall(encode_frame(CLOSE, close_payload(1000)))
        assert reader.frame().opcode == CLOSE
    assert order.wait_len(3) == ["http start", "http done", "websocket"]


def test_frames_sent_with_the_handshake_wait_for_accept(serve):
    recorder = Recorder()

    async def slow_accept(scope, receive, send):
        await receive()
        await asyncio.sleep(TICK)  # the behaviour under test: the frames arrive before the accept
        await send({"type": "websocket.accept"})
        for _ in range(3):
            recorder.add(await receive())

    frames = encode_frame(TEXT, b"one") + encode_frame(TEXT, b"two")
    with serve(slow_accept) as srv, srv.connect() as sock:
        sock.sendall(handshake_request() + frames)
        head, _ = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        received = recorder.wait_len(2)
        sock.sendall(encode_frame(CLOSE, close_payload(1000)))
        recorder.wait_len(3)
    assert received[:2] == [{"type": "websocket.receive", "text": t} for t in ("one", "two")]


def test_ws_websockets_is_the_same_as_auto(serve):
    with serve(echo_app(), ws="websockets") as srv, client(srv) as ws:
        ws.send(b"explicit")
        assert ws.recv(timeout=TIMEOUT) == b"explicit"


def test_close_frame_sent_with_the_handshake(serve):
    recorder = Recorder()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        recorder.add(await receive())
        recorder.add(await receive())

    frames = encode_frame(TEXT, b"last words") + encode_frame(CLOSE, close_payload(4005, "early"))
    with serve(app) as srv, srv.connect() as sock:
        sock.sendall(handshake_request() + frames)
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        reader = FrameReader(sock, rest)
        assert parse_close(reader.frame().payload) == (4005, "early")
        assert reader.at_eof()
        items = recorder.wait_len(2)
    assert items[0] == {"type": "websocket.receive", "text": "last words"}
    assert items[1] == {"type": "websocket.disconnect", "code": 4005, "reason": "early"}


def test_the_http_connection_is_released_after_the_upgrade(serve):
    """An open WebSocket holds nothing of the HTTP connection it came from (uvloop's transport
    caches ``data_received``; a protocol without one would leave the old one alive)."""
    from asgi_worker.http.connection import HttpConnection

    def alive() -> int:
        gc.collect()
        return sum(1 for obj in gc.get_objects() if type(obj) is HttpConnection)

    with serve(echo_app()) as srv, client(srv) as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"
        assert alive() == 0
