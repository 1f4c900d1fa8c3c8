"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT) served over real sockets (issue 17).

Clients: h2's own client for the plain echo (a second implementation of the handshake), and the
frame-exact ``H2Peer`` for the rest (windows held, resets, DATA cut anywhere, frames after GOAWAY).
WebSocket frames inside the DATA are built and parsed by the websockets library's sans-I/O
``Protocol`` on the client side.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import threading
from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RemoteSettingsChanged, ResponseReceived
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, RstStreamFrame, WindowUpdateFrame
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.headers import parse_extension
from websockets.protocol import Protocol, Side, State

from asgi_worker.http2.events import ErrorCode
from tests.http2 import peer as peer_module
from tests.http2.peer import H2Peer, Response
from tests.http2.served import LOOPS, h2_server, peer, respond
from tests.timing import TICK, TIMEOUT
from tests.ws.apps import Recorder

ENABLE_CONNECT_PROTOCOL = int(SettingCodes.ENABLE_CONNECT_PROTOCOL)


def extended_connect(path: bytes = b"/ws", version: bytes | None = b"13") -> list[tuple[bytes, bytes]]:
    """What follows ``:method``/``:scheme``/``:authority``/``:path`` in an RFC 8441 request."""
    fields = [(b":protocol", b"websocket")]
    if version is not None:
        fields.append((b"sec-websocket-version", version))
    return fields


class WsStream:
    """One WebSocket over a stream of an ``H2Peer``: frames out as DATA, frames in parsed from DATA.

    Pongs and the close reply the client protocol owes leave by themselves (``reply``), as with a
    real client."""

    def __init__(self, client: H2Peer, stream_id: int, reply: bool = True) -> None:
        self.client = client
        self.stream_id = stream_id
        self.reply = reply
        self.protocol = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        self.frames: list[Frame] = []
        self._fed = 0

    @classmethod
    def open(
        cls, client: H2Peer, path: bytes = b"/ws", extra: list[tuple[bytes, bytes]] | None = None
    ) -> WsStream:
        assert client.read(lambda: client.server_settings), client.summary()
        assert client.server_settings.get(ENABLE_CONNECT_PROTOCOL) == 1
        stream_id = client.request(path, b"CONNECT", extended_connect() + (extra or []), end_stream=False)
        return cls(client, stream_id)

    @property
    def response(self) -> Response:
        return self.client.streams[self.stream_id]

    def accepted(self) -> Response:
        response = self.response
        assert self.client.read(lambda: response.status is not None or response.done), self.client.summary()
        assert response.status == 200, (response.status, bytes(response.body))
        return response

    def send(self, message: str | bytes, sizes: list[int] | None = None) -> None:
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        self.send_data(b"".join(self.protocol.data_to_send()), sizes)

    def send_data(self, data: bytes, sizes: list[int] | None = None, end_stream: bool = False) -> None:
        """``data`` as DATA frames of ``sizes`` bytes (the rest in one more), at most 16 KiB each."""
        pieces, offset = [], 0
        for size in sizes or []:
            pieces.append(data[offset : offset + size])
            offset += size
        rest = data[offset:]
        pieces += [rest[i : i + 16384] for i in range(0, len(rest), 16384)]
        frames = [DataFrame(self.stream_id, piece) for piece in pieces if piece]
        if end_stream:
            frames.append(DataFrame(self.stream_id, b"", flags={"END_STREAM"}))
        self.client.send_frames(frames)

    def _parse(self) -> None:
        body = self.response.body
        if len(body) > self._fed:
            self.protocol.receive_data(bytes(body[self._fed :]))
            self._fed = len(body)
            self.frames += [event for event in self.protocol.events_received() if isinstance(event, Frame)]
            owed = b"".join(self.protocol.data_to_send())
            if owed and self.reply and not self.response.done:
                self.send_data(owed)

    def read_frames(self, count: int, timeout: float = TIMEOUT) -> list[Frame]:
        def enough() -> bool:
            self._parse()
            return len(self.frames) >= count

        assert self.client.read(enough, timeout), (len(self.frames), self.client.summary())
        return self.frames[:count]

    def messages(self, count: int) -> list[str | bytes]:
        frames = self.read_frames(count)
        return [frame.data.decode() if frame.opcode is Opcode.TEXT else frame.data for frame in frames]

    def close_frame(self, timeout: float = TIMEOUT) -> Close:
        def closed() -> bool:
            self._parse()
            return any(frame.opcode is Opcode.CLOSE for frame in self.frames)

        assert self.client.read(closed, timeout), self.client.summary()
        frame = next(frame for frame in self.frames if frame.opcode is Opcode.CLOSE)
        return Close.parse(frame.data)


def echo(recorder: Recorder | None = None, subprotocol: str | None = None) -> Any:
    """HTTP: the path; WebSocket: records the scope, accepts, echoes every message, records the end."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await respond(send, 200, scope["path"].encode())
            return
        if recorder is not None:
            recorder.add(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                if recorder is not None:
                    recorder.add(message)
                return
            await send({**message, "type": "websocket.send"})

    return app


# The setting


@pytest.mark.parametrize(
    ("options", "offered"),
    [({}, True), ({"ws": "none"}, False), ({"limit_request_body": 1000}, True)],
    ids=["websockets-on", "websockets-off", "body-limit"],
)
def test_extended_connect_is_offered_only_with_websockets_on(options, offered):
    with h2_server(echo(), **options) as server, peer(server) as client:
        assert client.read(lambda: client.server_settings), client.summary()
    assert (client.server_settings.get(ENABLE_CONNECT_PROTOCOL) == 1) is offered


def test_protocol_is_malformed_without_the_setting_or_on_another_method():
    with h2_server(echo(), ws="none") as server, peer(server) as client:
        stream = client.request(b"/ws", b"CONNECT", extended_connect(), end_stream=False)
        assert client.response(stream).reset == ErrorCode.PROTOCOL_ERROR
    with h2_server(echo()) as server, peer(server) as client:
        stream = client.request(b"/ws", b"GET", extended_connect())
        assert client.response(stream).reset == ErrorCode.PROTOCOL_ERROR
        assert client.response(client.request(b"/after")).status == 200  # only that stream


# Handshake and messages


def h2_client_echo(port: int, messages: list[str | bytes]) -> tuple[list[tuple[bytes, bytes]], list[Frame]]:
    """h2's own client: extended CONNECT once the server allows it, then ``messages`` and their echo."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    ws = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    head: list[tuple[bytes, bytes]] = []
    frames: list[Frame] = []
    stream_id = 0
    try:
        while len(frames) < len(messages):
            data = sock.recv(65536)
            assert data, "the server closed"
            for event in conn.receive_data(data):
                if isinstance(event, RemoteSettingsChanged) and not stream_id:
                    assert conn.remote_settings.enable_connect_protocol == 1
                    stream_id = conn.get_next_available_stream_id()
                    fields = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http")]
                    fields += [(b":path", b"/chat"), (b":authority", b"localhost")]
                    fields += [(b"sec-websocket-version", b"13")]
                    conn.send_headers(stream_id, fields)
                elif isinstance(event, ResponseReceived):
                    head = list(event.headers)
                    for message in messages:
                        if isinstance(message, str):
                            ws.send_text(message.encode())
                        else:
                            ws.send_binary(message)
                    data = b"".join(ws.data_to_send())
                    for offset in range(0, len(data), 16384):  # the server's (default) frame size
                        conn.send_data(stream_id, data[offset : offset + 16384])
                elif isinstance(event, DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    ws.receive_data(event.data)
                    frames += [e for e in ws.events_received() if isinstance(e, Frame)]
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return head, frames


@pytest.mark.parametrize("loop", LOOPS)
def test_h2_client_echoes_text_and_binary(loop, caplog):
    messages: list[str | bytes] = ["hello", b"\x00\xffbinary", "é" * 1000, bytes(range(256)) * 300]
    with caplog.at_level(logging.INFO, logger="asgi_worker.error"), h2_server(echo(), loop) as server:
        head, frames = h2_client_echo(server.port, messages)
    assert dict(head)[b":status"] == b"200"
    assert b"sec-websocket-accept" not in dict(head)  # RFC 8441 5: no key, no accept
    assert [f.data.decode() if f.opcode is Opcode.TEXT else f.data for f in frames] == messages
    assert any('"WebSocket /chat" [accepted]' in record.getMessage() for record in caplog.records)


def test_request_body_limit_does_not_count_a_websockets_bytes():
    # --limit-request-body bounds a request's body; a WebSocket's DATA is a byte stream of
    # messages, bounded by --ws-max-size instead.
    messages: list[str | bytes] = [b"x" * 800] * 5
    with h2_server(echo(), limit_request_body=1000) as server:
        head, frames = h2_client_echo(server.port, messages)
    assert dict(head)[b":status"] == b"200"
    assert [f.data for f in frames] == messages


def test_the_scope_and_the_chosen_subprotocol():
    recorder = Recorder()
    with (
        h2_server(echo(recorder, subprotocol="b"), ws_per_message_deflate=False) as server,
        peer(server) as client,
    ):
        extra = [(b"sec-websocket-protocol", b"a, b"), (b"x-test", b"1")]
        ws = WsStream.open(client, b"/room%201?x=y", extra)
        response = ws.accepted()
        ws.send("ping")
        assert ws.messages(1) == ["ping"]
        local = client.sock.getsockname()
    assert response.header(b"sec-websocket-protocol") == b"b"
    assert response.header(b"sec-websocket-extensions") is None
    assert response.header(b"server") is not None  # the server's default headers
    scope = recorder.items[0]
    assert (scope["type"], scope["http_version"], scope["scheme"]) == ("websocket", "2", "ws")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/room 1", b"/room%201", b"x=y")
    assert scope["subprotocols"] == ["a", "b"]
    assert "method" not in scope
    assert scope["client"] == local and scope["server"] == ("127.0.0.1", server.port)
    names = [name for name, _ in scope["headers"]]
    assert not any(name.startswith(b":") for name in names)
    assert (b"x-test", b"1") in scope["headers"] and (b"host", b"example.com") in scope["headers"]
    assert sorted(scope["extensions"]) == ["websocket.http.response"]


def test_per_message_deflate_is_negotiated_as_over_http1():
    with h2_server(echo()) as server, peer(server) as client:
        ws = WsStream.open(client, extra=[(b"sec-websocket-extensions", b"permessage-deflate")])
        response = ws.accepted()
        answer = response.header(b"sec-websocket-extensions")
        assert answer is not None and answer.startswith(b"permessage-deflate")
        [(_name, params)] = parse_extension(answer.decode())
        ws.protocol.extensions = [ClientPerMessageDeflateFactory().process_response_params(params, [])]
        ws.send("squeeze " * 1000)
        assert ws.messages(1) == ["squeeze " * 1000]
        assert len(ws.response.body) < 200  # compressed on the way back too (frames above are decoded)


async def close_first(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.close"})


async def deny(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"no")]})
    await send({"type": "websocket.http.response.body", "body": b"go ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"away"})


def test_close_before_accept_is_403_and_a_denial_response_is_served():
    with h2_server(close_first) as server, peer(server) as client:
        refused = client.response(WsStream.open(client).stream_id)
    assert (refused.status, bytes(refused.body), refused.ended) == (403, b"Forbidden", True)
    with h2_server(deny) as server, peer(server) as client:
        denied = client.response(WsStream.open(client).stream_id)
    assert (denied.status, denied.header(b"x-why"), bytes(denied.body)) == (401, b"no", b"go away")


@pytest.mark.parametrize("version", [b"8", None, b"13, 8"], ids=["8", "missing", "two"])
def test_a_bad_or_missing_version_is_400_naming_13(version):
    seen: list[Any] = []

    async def app(scope, receive, send):
        seen.append(scope)

    with h2_server(app) as server, peer(server) as client:
        assert client.read(lambda: client.server_settings)
        stream = client.request(b"/ws", b"CONNECT", extended_connect(version=version), end_stream=False)
        response = client.response(stream)
    assert response.status == 400 and response.ended
    assert response.header(b"sec-websocket-version") == b"13"
    assert b"Sec-WebSocket-Version" in response.body
    assert not seen  # the app never ran


def test_another_protocol_or_a_closed_stream_is_refused():
    with h2_server(echo()) as server, peer(server) as client:
        assert client.read(lambda: client.server_settings)
        other = client.request(b"/x", b"CONNECT", [(b":protocol", b"connect-udp")], end_stream=False)
        ended = client.request(b"/ws", b"CONNECT", extended_connect(), end_stream=True)
        assert client.response(other).status == 501
        assert client.response(ended).status == 400


# Limits and ends


def test_a_message_over_ws_max_size_closes_with_1009():
    recorder = Recorder()
    with h2_server(echo(recorder), ws_max_size=1000) as server, peer(server) as client:
        ws = WsStream.open(client)
        ws.accepted()
        ws.send(b"x" * 1001)
        assert ws.close_frame().code == 1009
        assert recorder.disconnect()["code"] == 1009
        assert client.read(lambda: ws.response.done), client.summary()


def test_a_client_close_ends_the_stream_cleanly():
    recorder = Recorder()
    with h2_server(echo(recorder)) as server, peer(server) as client:
        ws = WsStream.open(client)
        ws.accepted()
        ws.protocol.send_close(1000, "bye")
        ws.send_data(b"".join(ws.protocol.data_to_send()))
        assert ws.close_frame().code == 1000
        assert client.read(lambda: ws.response.ended), client.summary()
        assert recorder.disconnect() == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}
        assert client.response(client.request(b"/still")).status == 200


@pytest.mark.parametrize("loop", LOOPS)
def test_a_reset_stream_disconnects_the_app(loop):
    recorder = Recorder()
    with h2_server(echo(recorder), loop) as server, peer(server) as client:
        ws = WsStream.open(client)
        ws.accepted()
        ws.send("one")
        assert ws.messages(1) == ["one"]
        client.send_frames([RstStreamFrame(ws.stream_id, error_code=ErrorCode.CANCEL)])
        assert recorder.disconnect()["code"] == 1005  # dropped without a close frame, as over TCP
        assert client.response(client.request(b"/after")).status == 200


def test_a_plain_request_is_served_while_a_websocket_is_open():
    with h2_server(echo()) as server, peer(server) as client:
        ws = WsStream.open(client)
        ws.accepted()
        ws.send("before")
        plain = client.response(client.request(b"/plain"))
        ws.send("after")
        assert ws.messages(2) == ["before", "after"]
        assert (plain.status, bytes(plain.body)) == (200, b"/plain")
        assert not ws.response.done


def test_pings_go_out_and_an_unanswered_one_closes_with_1011():
    recorder = Recorder()
    options = {"ws_ping_interval": 2 * TICK, "ws_ping_timeout": 2 * TICK}
    with h2_server(echo(recorder), **options) as server, peer(server) as client:
        ws = WsStream.open(client)
        ws.reply = False  # no pong
        ws.accepted()
        assert ws.close_frame(TIMEOUT).code == 1011
        assert any(frame.opcode is Opcode.PING for frame in ws.frames)
        assert recorder.disconnect()["code"] == 1011


def test_a_large_message_waits_for_the_window_and_the_app_for_the_tunnel():
    """Server -> client with the client's stream window held at 16 KiB: the first message is cut at
    the window, the app's next send waits (nothing piles up), and all arrive once it opens."""
    sent = Recorder()
    size = 256 * 1024

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        for index in range(4):
            await send({"type": "websocket.send", "bytes": bytes([index]) * size})
            sent.add(index)
        await receive()

    with h2_server(app) as server, peer(server, settings={SettingCodes.INITIAL_WINDOW_SIZE: 16384}) as client:
        ws = WsStream.open(client)
        client.hold.add(ws.stream_id)
        ws.accepted()
        assert sent.wait_len(1)
        client.read(timeout=3 * TICK)  # whatever the window lets through
        assert len(ws.response.body) <= 16384
        assert sent.items == [0]  # the second send waits while the first one waits for the window
        client.open_window(ws.stream_id, 4 * size + 1024)
        frames = ws.read_frames(4, TIMEOUT * 2)
        assert [frame.data for frame in frames] == [bytes([i]) * size for i in range(4)]
        assert sent.wait_len(4) == [0, 1, 2, 3]


def test_a_slow_app_holds_the_client_by_its_window():
    """Client -> server while the app does not read: the queue fills (``--ws-max-queue``), reading
    pauses, and the credit is withheld, so the client stops at its stream window (256 KiB) instead
    of the server buffering the rest; once the app reads, the window reopens and all arrives."""
    gate = threading.Event()
    got = Recorder()
    count, size = 40, 16000

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        while not gate.is_set():
            await asyncio.sleep(TICK / 10)
        while (message := await receive())["type"] == "websocket.receive":
            got.add(len(message["bytes"]))

    with h2_server(app, ws_max_queue=2) as server, peer(server) as client:
        ws = WsStream.open(client)
        ws.accepted()
        for _ in range(count):
            ws.protocol.send_binary(b"z" * size)
        data = b"".join(ws.protocol.data_to_send())
        sent = 0

        def push() -> bool:
            """Send what the windows the server gave allow (one stream sends: the two add up alike)."""
            nonlocal sent
            updates = client.of_type(WindowUpdateFrame)
            stream = client.server_settings[SettingCodes.INITIAL_WINDOW_SIZE]
            stream += sum(f.window_increment for f in updates if f.stream_id == ws.stream_id)
            connection = 65535 + sum(f.window_increment for f in updates if f.stream_id == 0)
            allowed = min(stream, connection, len(data)) - sent
            if allowed > 0:
                ws.send_data(data[sent : sent + allowed])
                sent += allowed
            return sent == len(data)

        for _ in range(5):
            push()
            client.read(timeout=TICK)
        assert sent <= 256 * 1024 < len(data), sent  # held at the window: nothing credited past the queue
        gate.set()
        assert client.read(push, TIMEOUT * 2), (sent, client.summary())
        assert got.wait_len(count) == [size] * count


def send_fragmented(protocol: Protocol, message: str | bytes, rng: random.Random) -> None:
    """``message`` as one to three frames (a text one may be cut inside a UTF-8 sequence)."""
    data = message.encode() if isinstance(message, str) else message
    cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(0, 2), len(data) - 1))) if data else []
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    if isinstance(message, str):
        protocol.send_text(parts[0], fin=len(parts) == 1)
    else:
        protocol.send_binary(parts[0], fin=len(parts) == 1)
    for index, part in enumerate(parts[1:], 2):
        protocol.send_continuation(part, fin=index == len(parts))


def test_client_data_cut_anywhere_yields_the_same_messages():
    """Seeded: messages in one to three frames, the whole of it cut into DATA frames at random."""
    rng = random.Random(8441)
    with h2_server(echo()) as server, peer(server) as client:
        for _ in range(8):
            messages: list[str | bytes] = [
                "short",
                b"",
                "é" * rng.randint(1, 200),
                rng.randbytes(rng.randint(1, 300)),
                "x" * rng.randint(60000, 70000),
                rng.randbytes(126),
            ]
            rng.shuffle(messages)
            ws = WsStream.open(client)
            ws.accepted()
            for message in messages:
                send_fragmented(ws.protocol, message, rng)
            data = b"".join(ws.protocol.data_to_send())
            ws.send_data(data, [rng.randint(1, 40) for _ in range(rng.randint(0, 80))])
            assert ws.messages(len(messages)) == messages


# Graceful stop


@pytest.mark.parametrize("loop", LOOPS)
def test_a_graceful_stop_closes_the_websocket_with_1012_then_goaway(loop):
    recorder = Recorder()
    with h2_server(echo(recorder), loop) as server, peer(server) as client:
        ws = WsStream.open(client)
        ws.accepted()
        ws.send("hi")
        assert ws.messages(1) == ["hi"]
        server.server.should_exit = True
        assert ws.close_frame().code == 1012  # our close reply leaves by itself (WsStream.reply)
        assert client.read_until_closed(), client.summary()
        assert ws.response.ended
        assert client.goaway_code() == ErrorCode.NO_ERROR
        assert recorder.disconnect()["code"] == 1012


def test_over_tls_the_scheme_is_wss(tls_files, monkeypatch):
    context = ssl.create_default_context(cafile=tls_files["ca"])
    context.set_alpn_protocols(["h2"])
    recorder = Recorder()
    options = {"ssl_certfile": tls_files["cert"], "ssl_keyfile": tls_files["key"]}
    with h2_server(echo(recorder), **options) as server:
        sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT), server_hostname="localhost"
        )
        assert sock.selected_alpn_protocol() == "h2"
        monkeypatch.setattr(peer_module.socket, "create_connection", lambda *args, **kwargs: sock)
        with peer(server) as client:
            ws = WsStream.open(client)
            ws.accepted()
            ws.send("tls")
            assert ws.messages(1) == ["tls"]
    scope = recorder.items[0]
    assert (scope["scheme"], scope["http_version"]) == ("wss", "2")
    assert sorted(scope["extensions"]) == ["tls", "websocket.http.response"]
