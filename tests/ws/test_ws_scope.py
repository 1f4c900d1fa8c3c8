"""The ``websocket`` scope the app gets, over real sockets on every backend: paths, headers,
subprotocols, lifespan state, the denial-response extension, TLS (wss) and trusted proxy headers."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.timing import TIMEOUT
from tests.ws.apps import Recorder
from tests.ws.frames import CLOSE, TEXT, close_payload, encode_frame, handshake_request, open_raw, read_head


def scope_app(recorder):
    """Records the scope, accepts, and echoes text until the client leaves."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        recorder.add(scope)
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": message.get("text") or ""})

    return app


def scope_of(srv, recorder, path="/", headers=()):
    sock, head, _ = open_raw(("127.0.0.1", srv.port), path, headers)
    with sock:
        assert head.startswith(b"HTTP/1.1 101 ")
        scope = recorder.wait_len(1)[0]
        name = sock.getsockname()
    return scope, name


def test_scope_fields(serve):
    recorder = Recorder()
    with serve(scope_app(recorder)) as srv:
        scope, (client_host, client_port) = scope_of(
            srv, recorder, "/chat%20room/x?a=1&b=%20", ("Sec-WebSocket-Protocol: one, two", "X-Custom: yes")
        )
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat room/x"
    assert scope["raw_path"] == b"/chat%20room/x"
    assert scope["query_string"] == b"a=1&b=%20"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["one", "two"]
    assert "method" not in scope
    assert (b"x-custom", b"yes") in scope["headers"]
    assert (b"host", b"example.test") in scope["headers"]
    assert (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==") in scope["headers"]
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert tuple(scope["client"]) == (client_host, client_port)
    assert tuple(scope["server"]) == ("127.0.0.1", srv.port)
    assert scope["state"] == {}


def test_no_subprotocols_offered_is_an_empty_list(serve):
    recorder = Recorder()
    with serve(scope_app(recorder)) as srv:
        scope, _ = scope_of(srv, recorder)
    assert scope["subprotocols"] == []


def test_root_path_prefixes_path_and_raw_path(serve):
    recorder = Recorder()
    with serve(scope_app(recorder), root_path="/api") as srv:
        scope, _ = scope_of(srv, recorder, "/ws?x=1")
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/ws"
    assert scope["raw_path"] == b"/api/ws"
    assert scope["query_string"] == b"x=1"


def test_lifespan_state_is_a_copy_per_websocket(serve):
    recorder = Recorder()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["db"] = "connected"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        recorder.add(dict(scope["state"]))
        scope["state"]["db"] = "changed by one connection"
        await receive()
        await send({"type": "websocket.close"})

    with serve(app, lifespan="on") as srv:
        for _ in range(2):
            with srv.connect() as sock:
                sock.sendall(handshake_request())
                assert read_head(sock)[0].startswith(b"HTTP/1.1 403 ")
    assert recorder.wait_len(2) == [{"db": "connected"}, {"db": "connected"}]


FORWARDED = ("X-Forwarded-Proto: https", "X-Forwarded-For: 203.0.113.7")


def test_trusted_proxy_sets_wss_and_the_client(serve):
    recorder = Recorder()
    with serve(scope_app(recorder), forwarded_allow_ips="127.0.0.1") as srv:
        scope, _ = scope_of(srv, recorder, headers=FORWARDED)
    assert scope["scheme"] == "wss"
    assert tuple(scope["client"]) == ("203.0.113.7", 0)


@pytest.mark.parametrize(("proto", "scheme"), [("wss", "wss"), ("ws", "ws"), ("http", "ws")])
def test_forwarded_proto_values(serve, proto, scheme):
    recorder = Recorder()
    with serve(scope_app(recorder)) as srv:
        scope, _ = scope_of(srv, recorder, headers=(f"X-Forwarded-Proto: {proto}",))
    assert scope["scheme"] == scheme


def test_untrusted_peer_headers_are_ignored(serve):
    recorder = Recorder()
    with serve(scope_app(recorder), forwarded_allow_ips="192.0.2.1") as srv:
        scope, (client_host, _) = scope_of(srv, recorder, headers=FORWARDED)
    assert scope["scheme"] == "ws"
    assert scope["client"][0] == client_host == "127.0.0.1"


def test_wss_over_tls(serve, tls_files):
    recorder = Recorder()
    context = ssl.create_default_context(cafile=tls_files["ca"])
    with serve(scope_app(recorder), ssl_certfile=tls_files["cert"], ssl_keyfile=tls_files["key"]) as srv:
        # A raw TLS socket, not the websockets sync client: that client, reading and writing one TLS
        # socket from two threads, stalls about once in 700 handshakes here (the server had the TLS
        # connection and never got the request; a raw client never stalled in 1,500 tries).
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        sock, head, reader = open_raw(("127.0.0.1", srv.port), "/secure?q=1", sock=tls)
        with sock:
            assert head.startswith(b"HTTP/1.1 101 ")
            sock.sendall(encode_frame(TEXT, b"over tls"))
            assert reader.frame().payload == b"over tls"
            sock.sendall(encode_frame(CLOSE, close_payload(1000)))
            assert [frame.opcode for frame in reader.frames_until_close()] == [CLOSE]
            assert reader.at_eof()
        scope = recorder.wait_len(1)[0]
    assert scope["scheme"] == "wss"
    assert scope["path"] == "/secure" and scope["query_string"] == b"q=1"
    assert set(scope["extensions"]) == {"tls", "websocket.http.response"}
    assert scope["extensions"]["tls"]["tls_version"] in (0x0303, 0x0304)
