"""Seeded random frames at a session: ``feed`` never raises, whatever it writes parses as frames,
nothing is read after the connection ended, and no refusal is an internal error.

Inputs mix frames a client might send (valid HPACK blocks, some with bad fields) with random
types, flags, stream ids, lengths that lie and flipped bytes, fed in random pieces.
"""

from __future__ import annotations

import random

import hpack

from asgi_worker.http2 import events as ev
from asgi_worker.http2.settings import Http2Limits
from tests.http2.wire import PREFACE, Server, parse_frames, raw

SEED = 20240403
INPUTS = 3000

FIELDS = [
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":method", b"CONNECT"),
    (b":scheme", b"https"),
    (b":path", b"/"),
    (b":path", b""),
    (b":authority", b"example.com"),
    (b":protocol", b"websocket"),
    (b":status", b"200"),
    (b"content-length", b"3"),
    (b"content-length", b"x"),
    (b"host", b"other"),
    (b"te", b"trailers"),
    (b"connection", b"close"),
    (b"cookie", b"a=1"),
    (b"X-Upper", b"1"),
    (b"x", b" spaced "),
    (b"x-long", b"v" * 3000),
]


class Client:
    """A client that is mostly well-behaved: rising stream ids, real HPACK, plausible frames, and
    now and then a field, a frame or a length that is wrong."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.encoder = hpack.Encoder()
        self.next_id = 1
        self.streams: list[int] = []

    def frame(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            return self.request()
        if roll < 0.5 and self.streams:
            payload = rng.randbytes(rng.choice([0, 1, 3, 100, 3000]))
            flags = rng.choice([0, 0, 1, 8, 9])
            if flags & 8:
                payload = bytes([rng.randrange(4)]) + payload + bytes(4)
            return raw(0x0, flags, rng.choice(self.streams), payload)
        if roll < 0.6:
            return raw(0x8, 0, rng.choice([0, *self.streams]), rng.randrange(1, 2**20).to_bytes(4, "big"))
        if roll < 0.65:
            return raw(0x6, rng.choice([0, 1]), 0, rng.randbytes(8))
        if roll < 0.7 and self.streams:
            return raw(0x3, 0, rng.choice(self.streams), rng.randrange(14).to_bytes(4, "big"))
        if roll < 0.75:
            setting = rng.choice([1, 2, 3, 4, 5, 6, 8, 0x99]).to_bytes(2, "big")
            return raw(0x4, 0, 0, setting + rng.choice([0, 1, 16384, 65535, 2**31]).to_bytes(4, "big"))
        if roll < 0.8:
            return raw(0x2, 0, self.next_id + 2 * rng.randrange(3), rng.randbytes(5))
        if roll < 0.85 and self.streams:
            trailers = self.encoder.encode([rng.choice(FIELDS) for _ in range(rng.randint(0, 2))])
            return raw(0x1, 0x5, rng.choice(self.streams), trailers)
        if roll < 0.98:
            return raw(0xFA, rng.randrange(256), rng.randrange(8), rng.randbytes(rng.randint(0, 30)))
        return self.wild()

    def request(self) -> bytes:
        rng = self.rng
        stream_id = self.next_id
        self.next_id += 2 * rng.choice([1, 1, 1, 2])
        self.streams.append(stream_id)
        fields = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
        if rng.random() < 0.3:
            fields += [rng.choice(FIELDS) for _ in range(rng.randint(1, 3))]
        block = self.encoder.encode(fields)
        end_stream = rng.choice([0, 1])
        if rng.random() < 0.85:
            return raw(0x1, 0x4 | end_stream, stream_id, block)
        cut = rng.randint(0, len(block))  # CONTINUATION, sometimes never finished
        ending = raw(0x9, 0x4, stream_id, block[cut:]) if rng.random() < 0.8 else b""
        return raw(0x1, end_stream, stream_id, block[:cut]) + ending

    def wild(self) -> bytes:
        rng = self.rng
        kind = rng.choice([0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xA, 0xFA])
        stream_id = rng.choice([0, 1, 2, 2**31 - 1, rng.randrange(2**31)])
        size = rng.choice([0, 4, 5, 6, 8, rng.randint(0, 40)])
        length = size if rng.random() < 0.8 else rng.choice([size + 1, 2**14 + 1, 2**24 - 1])
        return raw(kind, rng.randrange(256), stream_id, rng.randbytes(size), length=length)


def random_input(rng: random.Random) -> bytes:
    client = Client(rng)
    start = PREFACE + raw(0x4, 0, 0) if rng.random() < 0.97 else rng.randbytes(30)
    data = bytearray(start + b"".join(client.frame() for _ in range(rng.randint(1, 30))))
    for _ in range(rng.choice([0] * 8 + [1, 3])):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def pieces(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.choice([0, 1, 3, 10]))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_random_frames_never_break_the_session():
    rng = random.Random(SEED)
    ended = opened = 0
    settings = Http2Limits(max_concurrent_streams=4)
    for _ in range(INPUTS):
        server = Server(settings=settings, preface=False)
        session = server.session
        for piece in pieces(rng, random_input(rng)):
            was_ended = session.ended
            events = session.feed(piece)
            assert not (was_ended and events)
            parse_frames(session.data_to_send())
            assert session.open_streams <= 4
            for event in events:
                if isinstance(event, ev.StreamOpened):
                    opened += 1
                    session.send_head(event.stream_id, 200, [(b"x", b"y")])
                    session.send_data(event.stream_id, b"body", end_stream=rng.random() < 0.5)
                elif isinstance(event, ev.StreamData):
                    session.consumed(event.stream_id, event.flow_length)
            parse_frames(session.data_to_send())
        assert session.counts["internal_error"] == 0
        ended += session.ended
    # The inputs reach both ends of the session: many streams served, many connections refused.
    assert INPUTS // 10 < ended < INPUTS - INPUTS // 10 and opened > INPUTS
