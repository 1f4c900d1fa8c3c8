"""The self-check of the websockets internals ``wire.ServerFrames`` relies on, and the stock path
it falls back to: it finds nothing on the installed version, names what a changed library breaks,
and then logs one warning and serves the same messages, close codes and backpressure through the
library's own ``Protocol`` over real sockets on every backend.

A changed library is simulated by patching the real one: ``Frame.parse`` reading a payload in
pieces (a change that keeps the library working but defeats reads in place), or an attribute gone.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol
from websockets.version import version as websockets_version

from asgi_worker.ws.wire import (
    EAGER_PAYLOAD,
    LARGE_PAYLOAD,
    ServerFrames,
    StockFrames,
    frames_type,
    library_mismatch,
)
from tests.timing import TIMEOUT
from tests.ws import test_backpressure
from tests.ws.apps import Recorder, client, echo_app

WARNING = "changed what asgi_worker.ws.wire relies on"
PIECE = 4096


@pytest.fixture(autouse=True)
def fresh_choice():
    """Every test decides (and warns) anew, and leaves no decision behind for other tests."""
    frames_type.cache_clear()
    yield
    frames_type.cache_clear()


def parse_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Frame.parse`` as a library might change it: the payload read ``PIECE`` bytes at a time."""
    parse = Frame.parse.__func__  # type: ignore[attr-defined]

    def patched(cls: Any, read_exact: Any, **kwargs: Any) -> Any:
        def read(n: int) -> Any:
            if n <= PIECE:
                return (yield from read_exact(n))
            data = bytearray()
            while len(data) < n:
                data += yield from read_exact(min(PIECE, n - len(data)))
            return data

        return (yield from parse(cls, read, **kwargs))

    monkeypatch.setattr(Frame, "parse", classmethod(patched))


def reader_renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    init = Protocol.__init__

    def patched(self: Protocol, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._reader = self.__dict__.pop("reader")  # type: ignore[attr-defined]

    monkeypatch.setattr(Protocol, "__init__", patched)


def writes_as_deque(monkeypatch: pytest.MonkeyPatch) -> None:
    init = Protocol.__init__

    def patched(self: Protocol, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.writes = deque()  # type: ignore[assignment]

    monkeypatch.setattr(Protocol, "__init__", patched)


def discard_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Protocol, "discard")


def send_frame_bypassed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``send_binary`` serialising its frame itself instead of through ``send_frame``."""

    def send_binary(self: Protocol, data: bytes, fin: bool = True) -> None:
        frame = Frame(Opcode.BINARY, data, fin)
        self.writes.append(frame.serialize(mask=False, extensions=self.extensions))

    monkeypatch.setattr(Protocol, "send_binary", send_binary)


def serialize_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library frames small messages otherwise (here: always the 16-bit length form)."""
    serialize = Frame.serialize

    def patched(self: Frame, *, mask: bool, extensions: Any = None) -> bytes:
        data = serialize(self, mask=mask, extensions=extensions)
        if not mask and len(self.data) < 126:
            return data[:1] + bytes([126, 0, len(self.data)]) + data[2:]
        return data

    monkeypatch.setattr(Frame, "serialize", patched)


@pytest.fixture
def stock_path(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The library changed (payloads read in pieces); counts the bytes fed through ``StockFrames``."""
    parse_in_pieces(monkeypatch)
    fed = {"bytes": 0}
    received = StockFrames.received

    def counting(self: StockFrames, nbytes: int) -> None:
        fed["bytes"] += nbytes
        received(self, nbytes)

    monkeypatch.setattr(StockFrames, "received", counting)
    return fed


def wire_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asgi_worker.error" and WARNING in r.getMessage()]


# The check itself: pure, no sockets.


def test_the_check_finds_nothing_on_the_installed_websockets():
    """Fails when an upgrade changes what wire.py relies on: the fallback would hide the slowdown."""
    assert library_mismatch() is None
    assert frames_type() is ServerFrames


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (parse_in_pieces, "Frame.parse() reading a payload with one Protocol.reader.read_exact(length)"),
        (reader_renamed, "Protocol.reader, a StreamReader"),
        (writes_as_deque, "Protocol.writes, a list"),
        (discard_gone, "Protocol.discard(), a generator method: AttributeError"),
        (send_frame_bypassed, "Protocol.send_binary() through send_frame()"),
        (serialize_changed, "Frame.serialize() of a 0-byte message, as send_message() frames it"),
    ],
    ids=[
        "payload-in-pieces",
        "reader-renamed",
        "writes-deque",
        "discard-gone",
        "send-frame-bypassed",
        "serialize-changed",
    ],
)
def test_the_check_names_what_changed(monkeypatch, change, named):
    change(monkeypatch)
    mismatch = library_mismatch()
    assert mismatch is not None and mismatch.startswith(named), mismatch


def test_a_changed_library_logs_one_warning_naming_it(monkeypatch, caplog):
    parse_in_pieces(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="asgi_worker.error"):
        assert [frames_type() for _ in range(3)] == [StockFrames] * 3
    [warning] = wire_warnings(caplog)
    assert warning.levelno == logging.WARNING
    assert f"websockets {websockets_version} " in warning.getMessage()
    assert "Frame.parse() reading a payload" in warning.getMessage()


# Served through the stock path: real sockets, every backend.


def test_small_messages_on_the_stock_protocol_with_one_warning(serve, stock_path, caplog):
    recorder = Recorder()
    messages: list[str | bytes] = ["hello", "", "ünïcödé ✓ 🎉", b"\x00\x01\xff", b""]
    with caplog.at_level(logging.WARNING, logger="asgi_worker.error"), serve(echo_app(recorder)) as srv:
        for _ in range(3):  # three connections, one decision
            with client(srv) as ws:
                for message in messages:
                    ws.send(message)
                    assert ws.recv(timeout=TIMEOUT) == message
    assert len(wire_warnings(caplog)) == 1
    assert frames_type() is StockFrames
    assert stock_path["bytes"] > 0


@pytest.mark.parametrize("kind", [str, bytes])
def test_large_messages_on_the_stock_protocol(serve, stock_path, kind):
    sizes = [LARGE_PAYLOAD - 1, LARGE_PAYLOAD + 1, EAGER_PAYLOAD]
    payloads = [os.urandom(size // 2).hex() if kind is str else os.urandom(size) for size in sizes]
    with serve(echo_app()) as srv, client(srv, max_size=None, compression=None) as ws:
        for payload in payloads:
            ws.send(payload)
            assert ws.recv(timeout=TIMEOUT) == payload
    assert stock_path["bytes"] > sum(sizes)  # every byte came through the stock protocol (no deflate)


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_an_oversized_message_is_1009_on_the_stock_protocol(serve, stock_path, compression):
    """Refused from the frame's length (1 MiB + 1 on the wire), or while inflating (deflate)."""
    recorder = Recorder()
    limited = serve(echo_app(recorder), ws_max_size=EAGER_PAYLOAD)
    with limited as srv, client(srv, max_size=None, compression=compression) as ws:
        ws.send(b"b" * EAGER_PAYLOAD)
        assert ws.recv(timeout=TIMEOUT) == b"b" * EAGER_PAYLOAD
        try:
            ws.send(b"b" * (EAGER_PAYLOAD + 1))
            ws.recv(timeout=TIMEOUT)
        except ConnectionClosedError:
            # 1006: the reset below reached the client before the 1009 frame was read (the kernel
            # drops what the client had not read yet when the reset comes).
            assert ws.close_code in (1009, 1006)
        except ConnectionResetError:
            # The server refuses from the frame's length, sends 1009 and closes first (RFC 6455
            # 7.1.7, failing the connection); a client still writing the rest of a 1 MiB payload
            # can meet the reset instead.
            pass
        else:
            pytest.fail("the oversized message was delivered")
    assert recorder.disconnect()["code"] == 1009


def test_a_full_queue_stops_reading_on_the_stock_protocol(serve, stock_path):
    test_backpressure.test_a_full_queue_stops_reading_and_nothing_is_lost(serve)
    assert frames_type() is StockFrames


def test_send_waits_for_a_slow_client_on_the_stock_protocol(serve, stock_path):
    test_backpressure.test_send_waits_for_a_client_that_does_not_read(serve)
    assert frames_type() is StockFrames
