"""``wire.ServerFrames`` against the stock websockets ``Protocol``: the same events and the same
bytes out for the same bytes in, in every chunking and both ways of receiving, with large payloads
read in place, memory that follows the bytes that arrived, and large frames sent without a copy.

Pure: no sockets (the server-level tests are in test_large_messages.py)."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.protocol import Protocol, Side, State

from asgi_worker.ws.wire import (
    AHEAD_BUDGET,
    EAGER_PAYLOAD,
    LARGE_PAYLOAD,
    MIN_PAYLOAD_BUFFER,
    PayloadReader,
    ReadMemory,
    ServerFrames,
)
from tests.ws.frames import BINARY, CLOSE, CONT, PING, TEXT, close_payload, encode_frame

LOGGER = logging.getLogger("tests.ws.wire")
SIZES = [
    0,
    1,
    125,
    126,
    LARGE_PAYLOAD - 1,
    LARGE_PAYLOAD,
    LARGE_PAYLOAD + 1,
    EAGER_PAYLOAD - 1,
    EAGER_PAYLOAD,
    EAGER_PAYLOAD + 1,
    2 * EAGER_PAYLOAD + 7,  # regrown twice while it arrives
]
# Chunk sizes a network read may deliver, from single bytes to more than a whole large frame.
CHUNKS = [1, 3, 14, 1000, 65536, 256 * 1024, 3 * EAGER_PAYLOAD]


def stock(max_size: int | None = None) -> Protocol:
    return Protocol(Side.SERVER, state=State.OPEN, max_size=max_size, logger=LOGGER)


def ours(max_size: int | None = None, memory: ReadMemory | None = None) -> ServerFrames:
    return ServerFrames(max_size, LOGGER, memory or ReadMemory())


def observed(protocol: Protocol, events: list[Any], out: list[bytes]) -> None:
    events += [(e.opcode, e.fin, e.rsv1, bytes(e.data)) for e in protocol.events_received()]
    out.append(b"".join(bytes(chunk) for chunk in protocol.data_to_send()))


Outcome = tuple[list[Any], bytes, Any]  # (events, bytes written back, the close we sent)


def feed_stock(protocol: Protocol, chunks: list[bytes]) -> Outcome:
    events: list[Any] = []
    out: list[bytes] = []
    for chunk in chunks:
        protocol.receive_data(chunk)
        observed(protocol, events, out)
    return events, b"".join(out), protocol.close_sent


def feed_ours(protocol: ServerFrames, chunks: list[bytes], rng: random.Random) -> Outcome:
    """Each chunk either through ``receive_data`` or written into ``receive_buffer`` (in pieces
    when the buffer offered is smaller, as a read would be), at random."""
    events: list[Any] = []
    out: list[bytes] = []
    for chunk in chunks:
        if rng.random() < 0.3:
            protocol.receive_data(chunk)
            observed(protocol, events, out)
            continue
        view = memoryview(chunk)
        while view:
            buffer = protocol.receive_buffer()
            assert len(buffer) > 0
            taken = min(len(buffer), len(view), rng.choice(CHUNKS))
            buffer[:taken] = view[:taken]
            del buffer
            protocol.received(taken)
            observed(protocol, events, out)
            view = view[taken:]
            assert protocol.reader._memory.ahead >= 0
    return events, b"".join(out), protocol.close_sent


def split(data: bytes, rng: random.Random) -> list[bytes]:
    chunks, at = [], 0
    while at < len(data):
        size = rng.choice(CHUNKS)
        chunks.append(data[at : at + size])
        at += size
    return chunks


def random_stream(rng: random.Random) -> bytes:
    """Client frames: whole and fragmented messages of every size class, pings between them."""
    frames = []
    for _ in range(rng.randint(1, 5)):
        size = rng.choice(SIZES)
        if rng.random() < 0.3:
            first = rng.randint(0, size)
            frames.append(encode_frame(rng.choice([TEXT, BINARY]), os.urandom(first), fin=False))
            frames.append(encode_frame(PING, b"p"))
            frames.append(encode_frame(CONT, os.urandom(size - first)))
        else:
            frames.append(encode_frame(rng.choice([TEXT, BINARY]), os.urandom(size)))
    if rng.random() < 0.5:
        frames.append(encode_frame(CLOSE, close_payload(1000, "bye")))
    return b"".join(frames)


@pytest.mark.parametrize("seed", range(24))
def test_same_events_and_replies_as_the_library_in_any_chunking(seed):
    rng = random.Random(seed)
    data = random_stream(rng)
    chunks = split(data, rng)
    memory = ReadMemory()
    assert feed_ours(ours(memory=memory), chunks, rng) == feed_stock(stock(), chunks)
    assert memory.ahead == 0  # every frame was whole: nothing held for bytes still to come


@pytest.mark.parametrize("seed", range(8))
def test_same_events_with_the_budget_spent(seed):
    """Other connections hold the whole budget: buffers grow from what arrived, same results."""
    rng = random.Random(seed)
    chunks = split(random_stream(rng), rng)
    memory = ReadMemory()
    memory.ahead = AHEAD_BUDGET
    assert feed_ours(ours(memory=memory), chunks, rng) == feed_stock(stock(), chunks)
    assert memory.ahead == AHEAD_BUDGET


@pytest.mark.parametrize("size", SIZES)
def test_one_chunk_holding_a_frame_and_the_next_header(size):
    data = encode_frame(BINARY, os.urandom(size)) + encode_frame(TEXT, b"next")
    chunks = [data[:-3], data[-3:]]
    assert feed_ours(ours(), chunks, random.Random(0)) == feed_stock(stock(), chunks)


@pytest.mark.parametrize("cut", [3, 14, LARGE_PAYLOAD + 100, EAGER_PAYLOAD + 100])
def test_eof_inside_a_large_payload_fails_like_the_library(cut):
    data = encode_frame(BINARY, os.urandom(2 * EAGER_PAYLOAD))[:cut]
    mine, theirs = ours(), stock()
    got = feed_ours(mine, [data], random.Random(1))
    want = feed_stock(theirs, [data])
    mine.receive_eof()
    theirs.receive_eof()
    assert got == want
    assert mine.state is theirs.state is State.CLOSED
    assert mine.close_code == theirs.close_code == 1006
    assert mine.data_to_send() == theirs.data_to_send()
    assert mine.reader._payload is None  # released
    assert mine.reader._memory.ahead == 0


@pytest.mark.parametrize("size", [LARGE_PAYLOAD * 2, LARGE_PAYLOAD * 2 + 1])
def test_max_size_at_and_over_the_limit_like_the_library(size):
    chunks = split(encode_frame(BINARY, os.urandom(size)), random.Random(size))
    got = feed_ours(ours(LARGE_PAYLOAD * 2), chunks, random.Random(2))
    assert got == feed_stock(stock(LARGE_PAYLOAD * 2), chunks)
    assert (got[2] is None) == (size == LARGE_PAYLOAD * 2)
    if got[2] is not None:
        assert got[2].code == 1009


def announcement(size: int) -> bytes:
    """A client's binary frame header announcing ``size`` bytes, and its mask: no payload."""
    return bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big") + os.urandom(4)


def fill(protocol: ServerFrames) -> int:
    """Write into the whole buffer the protocol offers, as a read would; the bytes written."""
    buffer = protocol.receive_buffer()
    count = len(buffer)
    buffer[:] = bytes(count)
    del buffer
    protocol.received(count)
    return count


def test_a_large_announcement_holds_memory_for_what_arrived_only():
    protocol = ours(max_size=64 * EAGER_PAYLOAD)
    protocol.receive_data(announcement(64 * EAGER_PAYLOAD))
    assert len(protocol.receive_buffer()) == EAGER_PAYLOAD
    received = 0
    for _ in range(4):
        capacity = received + len(protocol.receive_buffer())
        assert capacity <= max(EAGER_PAYLOAD, 2 * received)
        received += fill(protocol)
    assert received == 8 * EAGER_PAYLOAD and protocol.events_received() == []


def test_stalled_headers_cost_the_budget_once_then_a_little_each():
    memory = ReadMemory()
    stalled = [ours(max_size=16 * EAGER_PAYLOAD, memory=memory) for _ in range(100)]
    for protocol in stalled:
        protocol.receive_data(announcement(16 * EAGER_PAYLOAD))
    held = sum(len(protocol.reader._payload) for protocol in stalled)
    assert held == memory.ahead <= AHEAD_BUDGET + 100 * MIN_PAYLOAD_BUFFER
    # a connection that sends its bytes still gets its message, growing with what arrives
    late = ours(max_size=16 * EAGER_PAYLOAD, memory=memory)
    payload = os.urandom(3 * EAGER_PAYLOAD)
    late.receive_data(encode_frame(BINARY, payload))
    assert [bytes(e.data) for e in late.events_received()] == [payload]
    for protocol in stalled:  # they leave: the budget is free again
        protocol.receive_eof()
    assert memory.ahead == 0


def test_a_failed_connection_drops_the_payload_in_progress():
    protocol = ours()
    data = encode_frame(BINARY, os.urandom(EAGER_PAYLOAD))
    protocol.receive_data(data[:LARGE_PAYLOAD])
    assert protocol.reader._payload is not None
    old_parser = protocol.parser  # even while something still holds the parser that was reading
    protocol.fail(1011, "keepalive ping timeout")
    assert protocol.reader._payload is None and protocol.reader._memory.ahead == 0
    assert len(protocol.receive_buffer()) > 0
    del old_parser
    protocol.receive_data(data[LARGE_PAYLOAD:])  # discarded, as the library does after failing
    assert protocol.events_received() == []
    assert protocol.state is not State.OPEN


def test_small_bytes_go_through_the_one_scratch_buffer():
    memory = ReadMemory(64)
    protocol = ours(memory=memory)
    data = encode_frame(TEXT, b"hello")
    buffer = protocol.receive_buffer()
    assert buffer.obj is memory.scratch.obj
    buffer[: len(data)] = data
    protocol.received(len(data))
    assert [bytes(e.data) for e in protocol.events_received()] == [b"hello"]


@pytest.mark.parametrize("size", [LARGE_PAYLOAD - 1, LARGE_PAYLOAD, 3 * EAGER_PAYLOAD])
@pytest.mark.parametrize("fin", [True, False])
@pytest.mark.parametrize("text", [True, False])
def test_sent_frames_are_the_library_bytes(size, fin, text):
    payload = os.urandom(size)
    mine, theirs = ours(), stock()
    for protocol in (mine, theirs):
        (protocol.send_text if text else protocol.send_binary)(payload, fin=fin)
    chunks = mine.data_to_send()
    assert b"".join(chunks) == b"".join(theirs.data_to_send())
    if size >= LARGE_PAYLOAD:
        assert chunks[-1] is payload  # the app's object itself, not a copy


def test_frames_with_an_extension_are_the_library_bytes():
    protocol = ours()
    protocol.extensions = [PerMessageDeflate(False, False, 15, 15)]
    protocol.send_binary(b"a" * (2 * LARGE_PAYLOAD))
    chunks = protocol.data_to_send()
    assert len(chunks) == 1 and len(chunks[0]) < LARGE_PAYLOAD  # compressed by the library


def test_the_reader_is_the_one_the_parser_uses():
    """Guards the one assumption on the library's internals: the parser reads from ``reader``."""
    protocol = ours()
    assert isinstance(protocol.reader, PayloadReader)
    data = encode_frame(BINARY, os.urandom(EAGER_PAYLOAD))
    protocol.receive_data(data[: LARGE_PAYLOAD + 14])
    assert protocol.reader._payload is not None  # the large payload is being read in place


# Small whole messages: cut and framed by ServerFrames itself, identical to the library's.


def _masked(opcode: int, payload: bytes, length_bytes: bytes, key: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A masked final frame with its length field given raw (for non-minimal encodings)."""
    from tests.ws.frames import apply_mask

    return bytes([0x80 | opcode]) + length_bytes + key + apply_mask(payload, key)


TRICKY_STREAMS = {
    "unmasked": encode_frame(TEXT, b"hi", mask=False),
    "rsv1-without-extension": encode_frame(BINARY, b"x" * 10, rsv1=True),
    "over-max-size": encode_frame(BINARY, b"x" * 11),
    "at-max-size": encode_frame(BINARY, b"x" * 10) + encode_frame(TEXT, b"ok"),
    "non-minimal-length": _masked(BINARY, b"five!", bytes([0x80 | 126, 0, 5])),
    "final-frame-inside-a-fragmented-message": encode_frame(TEXT, b"a", fin=False) + encode_frame(TEXT, b"b"),
    "fragments-then-a-whole-message": (
        encode_frame(TEXT, b"a", fin=False) + encode_frame(CONT, b"b") + encode_frame(BINARY, b"c" * 300)
    ),
    "ping-between-messages": encode_frame(TEXT, b"a") + encode_frame(PING, b"p") + encode_frame(TEXT, b"b"),
    "close-then-more": encode_frame(TEXT, b"a")
    + encode_frame(CLOSE, close_payload(1000, ""))
    + encode_frame(TEXT, b"late"),
    "reserved-opcode": _masked(0x3, b"x", bytes([0x80 | 1])),
    "invalid-utf8-text": encode_frame(TEXT, b"\xff\xfe"),
    "medium": encode_frame(TEXT, b"t" * 126) + encode_frame(BINARY, b"b" * (LARGE_PAYLOAD - 1)),
}


@pytest.mark.parametrize("name", sorted(TRICKY_STREAMS))
@pytest.mark.parametrize("chunk", [1, 5, 64 * 1024])
def test_tricky_streams_give_the_library_outcome(name, chunk):
    max_size = 10 if "max-size" in name else None
    data = TRICKY_STREAMS[name]
    chunks = [data[at : at + chunk] for at in range(0, len(data), chunk)]
    rng = random.Random(chunk)
    assert feed_ours(ours(max_size), chunks, rng) == feed_stock(stock(max_size), chunks)


def test_whole_small_messages_are_cut_without_running_the_parser():
    protocol = ours()
    steps = []
    parser = protocol.parser

    def counting_parser():
        while True:
            steps.append(1)
            next(parser)
            yield

    protocol.parser = counting_parser()
    data = encode_frame(TEXT, b"hello") + encode_frame(BINARY, b"x" * 300) + encode_frame(BINARY, b"")
    buffer = protocol.receive_buffer()
    buffer[: len(data)] = data
    del buffer
    protocol.received(len(data))
    assert [(e.opcode, bytes(e.data)) for e in protocol.events_received()] == [
        (TEXT, b"hello"),
        (BINARY, b"x" * 300),
        (BINARY, b""),
    ]
    assert steps == []
    ping = encode_frame(PING, b"p")  # anything else goes to the library, which answers it
    buffer = protocol.receive_buffer()
    buffer[: len(ping)] = ping
    del buffer
    protocol.received(len(ping))
    assert steps == [1]
    assert protocol.data_to_send() == [b"\x8a\x01p"]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 300, LARGE_PAYLOAD - 1, LARGE_PAYLOAD])
@pytest.mark.parametrize("text", [True, False])
def test_send_message_is_the_library_bytes(size, text):
    payload = os.urandom(size)
    mine, theirs = ours(), stock()
    mine.send_message(text, payload)
    (theirs.send_text if text else theirs.send_binary)(payload)
    assert b"".join(mine.data_to_send()) == b"".join(theirs.data_to_send())


def test_send_message_with_an_extension_is_the_library_s():
    protocol = ours()
    protocol.extensions = [PerMessageDeflate(False, False, 15, 15)]
    protocol.send_message(False, b"a" * 1000)
    [chunk] = protocol.data_to_send()
    assert chunk[0] == 0x80 | 0x40 | BINARY and len(chunk) < 100  # compressed: RSV1 set by the library
