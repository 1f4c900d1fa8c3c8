"""Messages both ways over real sockets on every backend: text and bytes, fragments reassembled
from hand-built frames, a large message, and permessage-deflate negotiated or not."""

from __future__ import annotations

import os

import pytest
from websockets.exceptions import ConnectionClosedError

from tests.timing import TIMEOUT
from tests.ws.apps import Recorder, client, echo_app
from tests.ws.frames import BINARY, CLOSE, CONT, PING, PONG, TEXT, close_payload, encode_frame, open_raw


def address(srv):
    return ("127.0.0.1", srv.port)


@pytest.mark.parametrize("message", ["hello", "", "ünïcödé ✓ 🎉", b"\x00\x01\xff", b""])
def test_echo_text_and_bytes(serve, message):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv, client(srv) as ws:
        ws.send(message)
        assert ws.recv(timeout=TIMEOUT) == message
    received = recorder.wait_len(1)[0]
    key = "text" if isinstance(message, str) else "bytes"
    assert received == {"type": "websocket.receive", key: message}


def test_app_sends_first_text_and_bytes(serve):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "welcome"})
        await send({"type": "websocket.send", "bytes": b"\x01\x02"})
        await send({"type": "websocket.send", "bytes": bytearray(b"ba")})
        await receive()

    with serve(app) as srv, client(srv) as ws:
        assert [ws.recv(timeout=TIMEOUT) for _ in range(3)] == ["welcome", b"\x01\x02", b"ba"]


def test_many_messages_keep_their_order(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv, client(srv) as ws:
        for index in range(200):
            ws.send(f"m{index}" if index % 2 else f"m{index}".encode())
        replies = [ws.recv(timeout=TIMEOUT) for _ in range(200)]
    assert replies == [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(200)]


def test_fragmented_text_is_reassembled(serve):
    recorder = Recorder()
    text = "Hello, wörld ✓".encode()
    split = text.index("ö".encode()) + 1  # a fragment boundary inside a UTF-8 sequence
    with serve(echo_app(recorder)) as srv:
        sock, head, reader = open_raw(address(srv))
        with sock:
            assert head.startswith(b"HTTP/1.1 101 ")
            sock.sendall(
                encode_frame(TEXT, text[:5], fin=False)
                + encode_frame(CONT, text[5:split], fin=False)
                + encode_frame(PING, b"between")  # control frames may come between fragments
                + encode_frame(CONT, text[split:])
            )
            assert reader.frame() == (True, PONG, b"between", False)
            assert reader.frame() == (True, TEXT, text, False)
            sock.sendall(encode_frame(CLOSE, close_payload(1000)))
            assert reader.frame().opcode == CLOSE
    assert recorder.wait_len(1)[0] == {"type": "websocket.receive", "text": "Hello, wörld ✓"}


def test_fragmented_binary_is_reassembled(serve):
    recorder = Recorder()
    parts = [os.urandom(10), os.urandom(300), os.urandom(70000), b""]
    with serve(echo_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            frames = [encode_frame(BINARY, parts[0], fin=False)]
            frames += [encode_frame(CONT, part, fin=index == 2) for index, part in enumerate(parts[1:])]
            sock.sendall(b"".join(frames))
            echoed = reader.frame()
            sock.sendall(encode_frame(CLOSE, close_payload(1000)))
            reader.frames_until_close()
    assert echoed.opcode == BINARY and echoed.payload == b"".join(parts)
    assert recorder.items[0] == {"type": "websocket.receive", "bytes": b"".join(parts)}


def test_server_frames_for_lengths_at_the_length_encoding_edges(serve):
    with serve(echo_app()) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            for size in (0, 125, 126, 65535, 65536):
                payload = os.urandom(size)
                sock.sendall(encode_frame(BINARY, payload))
                assert reader.frame() == (True, BINARY, payload, False)


def test_big_message(serve):
    payload = os.urandom(4 * 1024 * 1024)
    with serve(echo_app()) as srv, client(srv, max_size=None, compression=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=TIMEOUT) == payload


def test_deflate_negotiated(serve):
    recorder = Recorder()
    text = "compress me " * 20000
    with serve(echo_app(recorder)) as srv, client(srv, compression="deflate") as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert extensions is not None and extensions.startswith("permessage-deflate")
        assert [type(ext).__name__ for ext in ws.protocol.extensions] == ["PerMessageDeflate"]
        ws.send(text)
        assert ws.recv(timeout=TIMEOUT) == text
        ws.send(b"\x00" * 50000)
        assert ws.recv(timeout=TIMEOUT) == b"\x00" * 50000
    assert recorder.wait_len(2)[0] == {"type": "websocket.receive", "text": text}


def test_deflate_switched_off(serve):
    text = "not compressed " * 1000
    with serve(echo_app(), ws_per_message_deflate=False) as srv, client(srv, compression="deflate") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
        ws.send(text)
        assert ws.recv(timeout=TIMEOUT) == text
        ws.send(b"raw")
        assert ws.recv(timeout=TIMEOUT) == b"raw"


def test_deflate_not_offered_by_the_client(serve):
    with serve(echo_app()) as srv, client(srv, compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv(timeout=TIMEOUT) == "plain"


def test_compressed_frame_without_deflate_is_a_protocol_error(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.sendall(encode_frame(TEXT, b"\xf2H\xcd\xc9\xc9\x07\x00", rsv1=True))
            frames = reader.frames_until_close()
            assert reader.at_eof()
    assert frames[-1].payload[:2] == (1002).to_bytes(2, "big")
    assert recorder.disconnect()["code"] == 1002


def test_max_size_counts_the_decompressed_message(serve):
    recorder = Recorder()
    with serve(echo_app(recorder), ws_max_size=1000) as srv, client(srv, compression="deflate") as ws:
        ws.send(b"\x00" * 1000)  # compresses to a few bytes either way
        assert ws.recv(timeout=TIMEOUT) == b"\x00" * 1000
        ws.send(b"\x00" * 1001)
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1009
    assert recorder.disconnect()["code"] == 1009
