"""The head grammar on raw bytes (``asgi_worker/http/head_scan.py``): what the corpus cannot show.

The corpus and the differential fuzz test pin the answers; these pin two properties of the way the
scanner reads: a head sent a byte at a time costs about what it costs at once (each byte is looked at
a bounded number of times, so a slow client cannot make the work grow with the square of the head),
and the bytes after a WebSocket handshake head survive however the head was cut.
"""

from __future__ import annotations

import time

import pytest

from asgi_worker.http.limits import RequestLimits
from tests.unit.corpus import PARSERS

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
# Heads a client can make long: a request line that never ends, a target, a field value.
LONG_HEADS = {
    "method-garbage": lambda n: b"A" * n,
    "after-version": lambda n: b"GET / HTTP/1.1" + b"x" * n,
    "target": lambda n: b"GET /" + b"a" * n,
    "field-value": lambda n: b"GET / HTTP/1.1\r\nX: " + b"v" * n,
    "trailer-value": lambda n: CHUNKED_HEAD + b"0\r\nT: " + b"v" * n,
}


def _bytewise_seconds(parser_name: str, data: bytes) -> float:
    best = float("inf")
    for _ in range(3):
        parser = PARSERS[parser_name](RequestLimits(head=1 << 20, request_line=1 << 20))
        started = time.perf_counter()
        for i in range(len(data)):
            if parser.feed(data[i : i + 1]):
                pass
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("parser_name", list(PARSERS))
@pytest.mark.parametrize("shape", list(LONG_HEADS))
def test_a_head_sent_a_byte_at_a_time_costs_linear_work(parser_name, shape):
    # 4x the bytes must cost about 4x the time; work that grows with the square would cost 16x.
    small = _bytewise_seconds(parser_name, LONG_HEADS[shape](8_000))
    large = _bytewise_seconds(parser_name, LONG_HEADS[shape](32_000))
    assert large / small < 8, f"{shape}: {small:.3f} s for 8 kB, {large:.3f} s for 32 kB"


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
FRAME = b"\x81\x80abcd"


@pytest.mark.parametrize("parser_name", list(PARSERS))
@pytest.mark.parametrize("cut", [0, 10, len(HANDSHAKE) - 2, len(HANDSHAKE), len(HANDSHAKE) + 2])
@pytest.mark.parametrize("leading", [b"", b"\r\n"])
def test_the_bytes_after_a_websocket_head_are_handed_over_whole(parser_name, cut, leading):
    stream = leading + HANDSHAKE + FRAME
    cut += len(leading)
    parser = PARSERS[parser_name](RequestLimits(), True)
    for piece in (stream[:cut], stream[cut:]):
        if piece and parser.switched is None:
            parser.feed(piece)
        elif piece:
            parser.switched += piece  # what the connection does once the parser has stopped
    assert parser.switched == FRAME
