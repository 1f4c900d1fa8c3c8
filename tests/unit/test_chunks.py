"""Decoding a chunked body (``asgi_worker/http/chunks.py``): its end, its data, its grammar, its cost."""

from __future__ import annotations

import random
import time

import pytest

from asgi_worker.errors import BodyTooLarge, HeadersTooLarge, MalformedRequest
from asgi_worker.http.chunks import MAX_CHUNK_LINE, ChunkedBody, chunk_size
from asgi_worker.http.events import BodyChunk, RequestHead
from asgi_worker.http.limits import RequestLimits
from asgi_worker.http.parse_httptools import HttptoolsParser

# (body, its data)
BODIES = [
    (b"0\r\n\r\n", b""),
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5;name=value\r\nhello\r\n000\r\n\r\n", b"hello"),
    (b'6 ; a = "q;\\"x"\r\n' + b"\r\n\r\n\r\n" + b"\r\n0\r\n\r\n", b"\r\n\r\n\r\n"),  # data of blank lines
    (b"A\r\n0123456789\r\nf\r\n" + b"x" * 15 + b"\r\n0\r\nT: v\r\nU: w\r\n\r\n", b"0123456789" + b"x" * 15),
    (b"".join(b"1\r\n%c\r\n" % c for c in b"abcdef") + b"0\r\n\r\n", b"abcdef"),
]


def splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize(("body", "expected"), BODIES)
@pytest.mark.parametrize("chunking", ["whole", "bytes", "random"])
def test_the_end_and_the_data_are_exact_in_every_chunking(body, expected, chunking):
    after = b"GET /next HTTP/1.1\r\n\r\n"  # the next request must not be taken as body
    stream = body + after
    pieces = (
        [stream]
        if chunking == "whole"
        else [stream[i : i + 1] for i in range(len(stream))]
        if chunking == "bytes"
        else splits(stream, len(body))
    )
    framing = ChunkedBody(65536)
    offset = 0
    out: list[object] = []
    for piece in pieces:
        end = framing.read(piece, 0, out)
        if framing.done:
            assert offset + end == len(body)
            assert b"".join(chunk.data for chunk in out) == expected  # type: ignore[attr-defined]
            return
        assert end == len(piece)
        offset += len(piece)
    pytest.fail("the end of the body was not found")


@pytest.mark.parametrize(
    ("line", "size"),
    [
        (b"0\r\n", 0),
        (b"ff\r\n", 255),
        (b"Ff;x\r\n", 255),
        (b"1 \t;x\r\n", 1),
        (b"1 ; x = y ;z\r\n", 1),
        (b'1;x="a b"\r\n', 1),
        (b'1;x="a\\"b"\r\n', 1),
        (b"f" * 16 + b"\r\n", 2**64 - 1),
    ],
)
def test_chunk_size_reads_the_grammar(line, size):
    assert chunk_size(line) == size


@pytest.mark.parametrize(
    "line",
    [
        *(b"\r\n", b"x\r\n", b"1x\r\n", b"-1\r\n", b"+1\r\n", b"0x1\r\n", b" 1\r\n", b"1 \r\n"),
        *(b"1\n", b"1\r\r\n", b"1" * 17 + b"\r\n"),
        *(b"1;\r\n", b"1;=x\r\n", b"1;x=\r\n", b"1;x\x01\r\n", b'1;x="a\r\n', b"1;x y\r\n", b"1\r;x\r\n"),
    ],
)
def test_chunk_size_refuses_what_the_grammar_does_not_allow(line):
    with pytest.raises(MalformedRequest):
        chunk_size(line)


def test_data_not_followed_by_crlf_is_refused():
    with pytest.raises(MalformedRequest):
        ChunkedBody(0).read(b"3\r\nabcXX0\r\n\r\n", 0, [])


def test_a_size_line_cannot_grow_without_bound():
    framing = ChunkedBody(0)
    framing.read(b"1;" + b"e" * (MAX_CHUNK_LINE - 2), 0, [])
    with pytest.raises(MalformedRequest):
        framing.read(b"e", 0, [])


def test_trailers_count_against_the_budget():
    framing = ChunkedBody(100)
    framing.read(b"0\r\n" + b"T: " + b"v" * 90, 0, [])
    with pytest.raises(HeadersTooLarge):
        framing.read(b"v" * 20 + b"\r\n\r\n", 0, [])


@pytest.mark.parametrize(
    "trailers",
    [
        *(b"T : v\r\n\r\n", b"T: v\r\n w\r\n\r\n", b"T: v\n\r\n"),
        *(b": v\r\n\r\n", b"T: \x00\r\n\r\n", b"T: v\rx\r\n\r\n"),
    ],
)
def test_trailer_lines_follow_the_field_grammar(trailers):
    with pytest.raises(MalformedRequest):
        ChunkedBody(0).read(b"0\r\n" + trailers, 0, [])


def test_a_body_past_the_limit_is_413_at_the_size_line_that_crosses_it():
    out: list[object] = []
    body = ChunkedBody(0, body_limit=8)
    with pytest.raises(BodyTooLarge):
        body.read(b"5\r\nhello\r\n4\r\nmore\r\n0\r\n\r\n", 0, out)
    assert [chunk.data for chunk in out] == [b"hello"]  # type: ignore[attr-defined]


def _chunked_post(data: bytes) -> bytes:
    head = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data)


def test_a_body_of_blank_lines_costs_the_parser_no_more_than_any_other():
    # The review's finding: cutting at every blank line made 64 KiB of "\r\n" 32,768 parser calls.
    for data in (b"\r\n" * 32768, b"x" * 65536):
        parser = HttptoolsParser(RequestLimits())
        started = time.perf_counter()
        events = parser.feed(_chunked_post(data))
        elapsed = time.perf_counter() - started
        chunks = [event for event in events if isinstance(event, BodyChunk)]
        assert isinstance(events[0], RequestHead) and len(chunks) <= 2
        assert b"".join(chunk.data for chunk in chunks) == data
        assert elapsed < 0.05  # ~0.1 ms here; the quadratic-in-calls version took ~25 ms


def test_trailers_past_the_budget_get_431_from_httptools():
    parser = HttptoolsParser(RequestLimits(head=1000))
    head = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: "
    events = parser.feed(head + b"v" * 2000)
    assert isinstance(events[-1], HeadersTooLarge)
