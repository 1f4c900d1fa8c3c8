"""Close codes seen from both ends over real sockets on every backend: the client's close, the app's
close, TCP drops before and after accept, size limits (1009), bad UTF-8 (1007), protocol errors (1002)."""

from __future__ import annotations

import socket
import struct

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from tests.timing import TICK, TIMEOUT
from tests.ws.apps import Recorder, client, echo_app
from tests.ws.frames import (
    BINARY,
    CLOSE,
    CONT,
    TEXT,
    close_payload,
    encode_frame,
    handshake_request,
    open_raw,
    parse_close,
    read_head,
)


def address(srv):
    return ("127.0.0.1", srv.port)


def closing_app(recorder, code=None, reason=None):
    """Accepts, closes at once (with ``code``/``reason`` when given), then records what it receives."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        message = {"type": "websocket.close"}
        if code is not None:
            message["code"] = code
        if reason is not None:
            message["reason"] = reason
        await send(message)
        recorder.add(await receive())

    return app


def test_client_close_code_and_reason_reach_the_app(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        with client(srv) as ws:
            ws.close(4000, "bye")
            assert ws.protocol.close_rcvd.code == 4000  # the server echoes the client's close
        assert recorder.disconnect() == {"type": "websocket.disconnect", "code": 4000, "reason": "bye"}


def test_client_close_exact_frames(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.sendall(encode_frame(CLOSE, close_payload(4000, "bye")))
            frame = reader.frame()
            assert frame.opcode == CLOSE and parse_close(frame.payload) == (4000, "bye")
            assert reader.at_eof()
    assert recorder.disconnect()["code"] == 4000


def test_client_close_without_code_is_1005(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.sendall(encode_frame(CLOSE))
            assert reader.frame() == (True, CLOSE, b"", False)
    assert recorder.disconnect() == {"type": "websocket.disconnect", "code": 1005, "reason": ""}


def test_app_close_code_reaches_the_client(serve):
    recorder = Recorder()
    with serve(closing_app(recorder, 4001, "done here")) as srv, client(srv) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 4001
        assert ws.close_reason == "done here"
        # The client answered the close: the app's next receive has that code.
        assert recorder.disconnect()["code"] == 4001


def test_app_close_without_code_is_1000(serve):
    recorder = Recorder()
    with serve(closing_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            assert parse_close(reader.frame().payload) == (1000, "")
            sock.sendall(encode_frame(CLOSE, close_payload(1000)))
            assert reader.at_eof()
    assert recorder.disconnect()["code"] == 1000


def test_app_returning_while_open_closes_with_1000(serve):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})

    with serve(app) as srv, client(srv) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1000


def test_app_raising_while_open_closes_with_1011(serve, caplog):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom while open")

    with caplog.at_level("ERROR", logger="asgi_worker.error"), serve(app) as srv, client(srv) as ws:
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1011
    assert any(r.exc_info and "boom while open" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_tcp_drop_after_accept_is_1005(serve, reset):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, head, _ = open_raw(address(srv))
        assert head.startswith(b"HTTP/1.1 101 ")
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        assert recorder.disconnect() == {"type": "websocket.disconnect", "code": 1005, "reason": ""}


def test_tcp_drop_before_accept_is_1006(serve):
    recorder = Recorder()

    async def app(scope, receive, send):
        recorder.add(await receive())  # websocket.connect
        recorder.add(await receive())  # the drop, before we ever accepted
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            recorder.add(exc)

    with serve(app) as srv:
        with srv.connect() as sock:
            sock.sendall(handshake_request())
            recorder.wait_len(1)
        items = recorder.wait_len(3)
    assert items[0] == {"type": "websocket.connect"}
    assert items[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert isinstance(items[2], OSError)


def test_client_vanishing_mid_frame(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, _ = open_raw(address(srv))
        frame = encode_frame(BINARY, b"x" * 1000)
        sock.sendall(frame[: len(frame) // 2])
        sock.close()
        assert recorder.disconnect()["code"] in (1005, 1006)
        assert [item["type"] for item in recorder.items] == ["websocket.disconnect"]  # no partial message


def test_client_vanishing_mid_fragmented_message(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, _ = open_raw(address(srv))
        sock.sendall(encode_frame(TEXT, b"first half", fin=False))
        sock.close()
        assert recorder.disconnect()["code"] in (1005, 1006)
        assert len(recorder.items) == 1


LIMIT = 1000


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_max_size_exactly_at_the_limit_passes(serve, opcode):
    recorder = Recorder()
    with serve(echo_app(recorder), ws_max_size=LIMIT) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.sendall(encode_frame(opcode, b"a" * LIMIT))
            assert reader.frame() == (True, opcode, b"a" * LIMIT, False)
            sock.sendall(encode_frame(opcode, b"a" * (LIMIT // 2), fin=False))
            sock.sendall(encode_frame(CONT, b"a" * (LIMIT - LIMIT // 2)))  # fragments add up to the limit
            assert reader.frame().payload == b"a" * LIMIT


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragments"])
def test_one_byte_over_max_size_is_1009(serve, fragmented):
    recorder = Recorder()
    with serve(echo_app(recorder), ws_max_size=LIMIT) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            if fragmented:
                sock.sendall(encode_frame(BINARY, b"a" * LIMIT, fin=False) + encode_frame(CONT, b"a"))
            else:
                sock.sendall(encode_frame(BINARY, b"a" * (LIMIT + 1)))
            frames = reader.frames_until_close()
            assert [f.opcode for f in frames] == [CLOSE]  # nothing of the message was delivered
            assert parse_close(frames[0].payload)[0] == 1009
            sock.sendall(encode_frame(CLOSE, close_payload(1009)))
            assert reader.at_eof()
    assert recorder.disconnect()["code"] == 1009
    assert len(recorder.items) == 1


def test_a_client_still_sending_past_max_size_reads_1009_not_a_reset(serve):
    """The server fails the connection at the frame header of an 8 MiB message while the client is
    still writing it. The server sends its FIN and drops what keeps coming instead of closing with
    unread bytes (which makes the kernel answer with a reset): the client's whole write succeeds,
    then it reads the 1009 close frame and a clean end of stream."""
    recorder = Recorder()
    with serve(echo_app(recorder), ws_max_size=LIMIT) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.settimeout(TIMEOUT)
            sock.sendall(encode_frame(BINARY, b"x" * (8 * 1024 * 1024)))  # no ECONNRESET/EPIPE
            frames = reader.frames_until_close()
            assert [f.opcode for f in frames] == [CLOSE]
            assert parse_close(frames[0].payload)[0] == 1009
            assert reader.at_eof()
    assert recorder.disconnect()["code"] == 1009


def test_max_size_with_the_websockets_client(serve):
    recorder = Recorder()
    with serve(echo_app(recorder), ws_max_size=LIMIT) as srv, client(srv) as ws:
        ws.send(b"b" * LIMIT)
        assert ws.recv(timeout=TIMEOUT) == b"b" * LIMIT
        ws.send(b"b" * (LIMIT + 1))
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1009
    assert recorder.disconnect()["code"] == 1009


@pytest.mark.parametrize(
    "frames",
    [
        [encode_frame(TEXT, b"\xff\xfe")],
        [encode_frame(TEXT, b"ok \xc3", fin=False), encode_frame(CONT, b"(")],  # broken across fragments
        [encode_frame(TEXT, b"\xed\xa0\x80")],  # a UTF-16 surrogate, never valid UTF-8
        [encode_frame(TEXT, b"\xff"), encode_frame(TEXT, b"after the failure")],  # same segment
    ],
    ids=["bytes", "fragments", "surrogate", "followed"],
)
def test_invalid_utf8_text_is_1007(serve, frames):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.sendall(b"".join(frames))
            close = reader.frames_until_close()[-1]
            assert parse_close(close.payload)[0] == 1007
            sock.sendall(encode_frame(CLOSE, close_payload(1007)))
            assert reader.at_eof()
    assert recorder.disconnect()["code"] == 1007
    assert len(recorder.items) == 1


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(TEXT, b"unmasked", mask=False),
        encode_frame(CONT, b"no message to continue"),
        encode_frame(CLOSE, close_payload(999)),
        encode_frame(0x3, b"reserved opcode"),
    ],
    ids=["unmasked", "stray-continuation", "bad-close-code", "reserved-opcode"],
)
def test_protocol_errors_are_1002(serve, frame):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.sendall(frame)
            close = reader.frames_until_close(timeout=TICK * 20)[-1]
            assert parse_close(close.payload)[0] == 1002
    assert recorder.disconnect()["code"] == 1002


def test_nothing_is_read_after_the_close_frame(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        with srv.connect() as sock:
            sock.sendall(handshake_request())
            _, rest = read_head(sock)
            sock.sendall(encode_frame(CLOSE, close_payload(1000)) + encode_frame(TEXT, b"too late"))
            assert rest == b""
        assert recorder.disconnect()["code"] == 1000
        assert [item["type"] for item in recorder.items] == ["websocket.disconnect"]


def test_client_half_close_after_accept_is_1005(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.shutdown(socket.SHUT_WR)  # EOF without a close frame
            with pytest.raises(EOFError):
                reader.frame()  # the server closes its side too, without a close frame
    assert recorder.disconnect() == {"type": "websocket.disconnect", "code": 1005, "reason": ""}
