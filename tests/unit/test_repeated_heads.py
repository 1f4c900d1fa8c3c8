"""The two "same as last time" shortcuts of the HTTP/1.1 hot path, pure: no sockets.

``HttptoolsParser`` remembers the last read that was exactly one head (a ``bytes`` read of at
most ``REPEAT_LIMIT`` bytes, nothing before or after it); when the next such read is equal and its
head is plain, its reading is kept (``parse_httptools._Repeat``) and serves every later head with
those bytes, pipelined ones too. Heads that share a read with other bytes are served from the memo
but never make one.
``plan_response`` reuses its last plan when an ordinary request gets the same status, header list and
body length (``response.LastHead``); it drops the memo after ``PATIENCE_MIN`` misses in a row, and
after one that was never reused it rests (makes no memo) for ``patience`` responses, a patience that
doubles each time and halves on a memo's first hit. A shortcut may only save work: every test here
checks its answer against the long way (a fresh parser or a fresh ``DefaultHeaderBlock``, which has
no memo), when the shortcut is taken, and that it is not taken where it must not be.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import pytest

from asgi_worker.errors import AppProtocolError, RequestError
from asgi_worker.http import parse_httptools, response
from asgi_worker.http.events import BodyChunk, Event, RequestEnd, RequestHead
from asgi_worker.http.limits import RequestLimits
from asgi_worker.http.parse_h11 import H11Parser
from asgi_worker.http.parse_httptools import REPEAT_LIMIT, HttptoolsParser
from asgi_worker.http.response import (
    PATIENCE_LIMIT,
    PATIENCE_MIN,
    DefaultHeaderBlock,
    ResponsePlan,
    plan_response,
)

LIMITS = RequestLimits()
Item = Event | RequestError

# ---------------------------------------------------------------------------------------------------
# The parser's memo


def reading(items: list[Item]) -> list[Any]:
    """Everything a feed's items say, as plain values: every RequestHead field, body bytes, errors."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, RequestHead):
            out.append(
                (
                    "head",
                    item.method,
                    item.target,
                    item.http_version,
                    list(item.headers),
                    item.keep_alive,
                    item.expect_continue,
                    item.upgrade,
                    item.websocket,
                    item.body_length,
                )
            )
        elif isinstance(item, BodyChunk):
            out.append(("body", item.data))
        elif isinstance(item, RequestEnd):
            out.append("end")
        else:
            out.append(("error", type(item).__name__, item.status, str(item)))
    return out


def heads(items: list[Item]) -> list[RequestHead]:
    return [item for item in items if isinstance(item, RequestHead)]


def fresh(data: bytes) -> list[Any]:
    """What a parser that has seen nothing before makes of ``data``."""
    return reading(HttptoolsParser(LIMITS).feed(data))


def kept(parser: HttptoolsParser) -> bytes | None:
    """The bytes of the head the parser serves from memory, if any (a call: each look is a new one)."""
    repeat = parser._repeat
    return None if repeat is None else repeat.raw


def get(path: bytes = b"/a", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"GET %b HTTP/%b\r\nHost: x\r\n%b\r\n" % (path, version, extra)


PLAIN = get()
# Heads the memo keeps: bodiless, keep-alive, no upgrade, no Expect, at most REPEAT_LIMIT bytes.
PLAIN_HEADS = {
    "get": PLAIN,
    "query-and-fields": get(b"/p?q=1&r=2", b"Accept: */*\r\nX-Pad:  v  \t\r\nUser-Agent: t/1\r\n"),
    "http10-keep-alive": get(extra=b"Connection: keep-alive\r\n", version=b"1.0"),
    "asterisk": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute-form": b"GET http://x/abs?q HTTP/1.1\r\nHost: x\r\n\r\n",
    "content-length-0": get(extra=b"Content-Length: 0\r\n"),
    "connection-upgrade-without-upgrade": get(extra=b"Connection: upgrade\r\n"),
    "head-method": b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n",
    "obs-text": get(extra=b"X-Latin: caf\xe9\r\n"),
}


def whole_read(parser: HttptoolsParser, data: bytes) -> list[Any]:
    """Feed ``data`` alone: a read that is exactly what it holds."""
    return reading(parser.feed(data))


NOTHING_SEEN = b""


def fingerprint(data: bytes) -> bytes:
    """What the parser keeps of a read that was exactly one head (of at most REPEAT_LIMIT bytes): the read."""
    return data


def seen(parser: HttptoolsParser) -> bytes:
    return parser._seen


def memo_of(*reads: bytes) -> HttptoolsParser:
    """A parser fed these reads, one feed each (``PLAIN, PLAIN``: a parser whose memo is PLAIN)."""
    parser = HttptoolsParser(LIMITS)
    for data in reads:
        parser.feed(data)
    return parser


def test_a_bytearray_read_never_takes_part(llhttp_reads: list[bytes]) -> None:
    """A caller's reusable buffer is never remembered nor kept (its bytes could change under the memo),
    yet a memo made from ``bytes`` serves it; changed after a feed, it is another head."""
    buffer = bytearray(get(b"/a"))
    parser = HttptoolsParser(LIMITS)
    for _ in range(3):
        assert heads(parser.feed(buffer))[0].target == b"/a"  # type: ignore[arg-type]
        assert kept(parser) is None and seen(parser) == NOTHING_SEEN
    assert len(llhttp_reads) == 3
    for _ in range(2):
        parser.feed(get(b"/a"))
    assert kept(parser) == get(b"/a") and type(kept(parser)) is bytes
    assert len(llhttp_reads) == 5
    assert heads(parser.feed(buffer))[0].target == b"/a"  # type: ignore[arg-type]
    assert len(llhttp_reads) == 5  # served from the memo
    buffer[5] = ord("b")
    assert heads(parser.feed(buffer))[0].target == b"/b"  # type: ignore[arg-type]
    assert heads(parser.feed(buffer))[0].target == b"/b"  # type: ignore[arg-type]
    assert llhttp_reads[5:] == [b"/b", b"/b"]
    assert kept(parser) == get(b"/a") and seen(parser) == fingerprint(get(b"/a"))
    # The memo is the bytes read, not a copy, so nothing a caller holds can change it.
    data = get(b"/c")
    parser.feed(data)
    parser.feed(data)
    assert kept(parser) is data


@pytest.mark.parametrize("name", list(PLAIN_HEADS))
def test_a_repeated_head_reads_as_a_fresh_parser_reads_it(name: str, llhttp_reads: list[bytes]) -> None:
    """A read each: llhttp reads the first two; the third and later come from memory, each with a list
    of its own."""
    data = PLAIN_HEADS[name]
    expected = fresh(data)
    del llhttp_reads[:]
    parser = HttptoolsParser(LIMITS)
    feeds: list[list[Item]] = []
    for count in range(1, 6):
        feeds.append(parser.feed(data))
        assert reading(feeds[-1]) == expected, count
        assert len(llhttp_reads) == min(count, 2), count
        assert kept(parser) == (data if count >= 2 else None), count
        assert seen(parser) == fingerprint(data)
    lists = [heads(items)[0].headers for items in feeds]
    assert len({id(headers) for headers in lists}) == 5
    # The app changing its list (the one the memo was made from, or one served from it) leaves the
    # next request's alone.
    lists[1].append((b"x-added", b"to the one read twice"))
    lists[2].append((b"x-added", b"by the app"))
    lists[3][0] = (b"host", b"changed")
    del lists[4][:]
    assert reading(parser.feed(data)) == expected
    assert len(llhttp_reads) == 2


def test_pipelined_repeats_never_make_a_memo(llhttp_reads: list[bytes]) -> None:
    """Heads sharing a read with other bytes are not remembered: all in one read, llhttp reads each."""
    for count in range(1, 8):
        expected = fresh(PLAIN)
        del llhttp_reads[:]
        parser = HttptoolsParser(LIMITS)
        assert reading(parser.feed(PLAIN * count)) == expected * count
        assert len(llhttp_reads) == count
        assert kept(parser) is None
        assert seen(parser) == (fingerprint(PLAIN) if count == 1 else NOTHING_SEEN)


# One request as a client sends it when it waits for each answer: its reads. "H" is P with its body
# sent after the head, so that the head is a read of its own.
POST_HEAD = b"POST /P HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"
LETTERS: dict[str, list[bytes]] = {
    "A": [get(b"/A")],
    "B": [get(b"/B")],
    "P": [POST_HEAD + b"hi"],  # a body: never kept, and its read is more than a head
    "H": [POST_HEAD.replace(b"/P", b"/H"), b"hi"],  # a head alone, never kept
    "E": [get(b"/E", b"Expect: 100-continue\r\n")],  # never kept
    "U": [get(b"/U", b"Connection: Upgrade\r\nUpgrade: websocket\r\n")],  # never kept; llhttp left waiting
}
# A stream of requests -> the heads llhttp reads when each read is sent alone (the others come from
# memory) and the memo after it; and the memo after it when each read comes in two pieces (every head
# then goes the scanner's way: llhttp reads each, as a whole read).
POLICY: dict[str, tuple[str, str | None, str | None]] = {
    "A": ("A", None, None),
    "AA": ("AA", "A", "A"),
    "AAAA": ("AA", "A", "A"),
    "AB": ("AB", None, None),
    "ABAB": ("ABAB", None, None),  # never twice in a row: nothing kept
    "ABBA": ("ABBA", "B", "B"),
    "AABA": ("AAB", "A", "A"),  # another head in between does not drop the memo
    "AABBB": ("AABB", "B", "B"),  # B twice in a row replaces it
    "AABBA": ("AABBA", "B", "B"),
    "AABBAA": ("AABBAA", "A", "A"),
    # A head served from the memo leaves the remembered read alone: B, (A), B is B twice in a row.
    # In pieces the A is read, and parts them.
    "AABAB": ("AABB", "B", "A"),
    "AABABA": ("AABBA", "B", "A"),
    "APA": ("APA", "A", None),  # P's read holds its body: not a read of one head. In pieces it is.
    "APAA": ("APA", "A", "A"),
    "AAPA": ("AAP", "A", "A"),  # served after a body, llhttp left waiting for more
    "AHA": ("AHA", None, None),  # a head that is not plain, alone in its read, parts the two A
    "HHA": ("HHA", None, None),
    "AAHA": ("AAH", "A", "A"),
    "AHHAA": ("AHHAA", "A", "A"),
    "AEA": ("AEA", None, None),
    "AUA": ("AUA", None, None),
    "AAUAUA": ("AAUU", "A", "A"),
    "PPPP": ("PPPP", None, None),
    "EEEA": ("EEEA", None, None),
}


def in_two(data: bytes) -> list[bytes]:
    return [data[:10], data[10:]] if len(data) > 10 else [data]


@pytest.mark.parametrize("shape", ["a-read-each", "in-pieces", "one-read"])
@pytest.mark.parametrize("stream", list(POLICY))
def test_what_llhttp_reads_and_what_is_kept(stream: str, shape: str, llhttp_reads: list[bytes]) -> None:
    each, memo, memo_in_pieces = POLICY[stream]
    reads = [data for letter in stream for data in LETTERS[letter]]
    if shape == "in-pieces":
        reads = [piece for data in reads for piece in in_two(data)]
        each, memo = stream, memo_in_pieces
    elif shape == "one-read":
        reads = [b"".join(reads)]
        each, memo = stream, None  # heads in a read with more bytes never make a memo
    expected = fresh(b"".join(reads))
    del llhttp_reads[:]
    parser = HttptoolsParser(LIMITS)
    got = [item for data in reads for item in reading(parser.feed(data))]
    assert got == expected
    assert llhttp_reads == [b"/" + letter.encode() for letter in each]
    assert kept(parser) == (None if memo is None else LETTERS[memo][0])


def test_a_whole_head_not_kept_still_leaves_its_sign(llhttp_reads: list[bytes]) -> None:
    """A head the memo must not keep, alone in its read, parts two plain heads; with its body it does not."""
    expect = LETTERS["E"][0]
    parser = memo_of(PLAIN, expect)
    assert kept(parser) is None and seen(parser) == fingerprint(expect)
    parser.feed(expect)
    assert kept(parser) is None and seen(parser) == fingerprint(expect)  # twice in a row, but not plain
    parser.feed(PLAIN)
    assert kept(parser) is None and seen(parser) == fingerprint(PLAIN)
    parser.feed(POST_HEAD + b"hi")
    assert seen(parser) == fingerprint(PLAIN)
    parser.feed(PLAIN)
    assert kept(parser) == PLAIN
    assert len(llhttp_reads) == 6


def test_a_head_like_the_last_but_not_equal_makes_no_memo(llhttp_reads: list[bytes]) -> None:
    """Only equal bytes make a memo: heads alike in size and target but not in a header (a request
    id, a trace header) are each read afresh and never replace the memo."""
    others = [PLAIN.replace(b"Host: x", b"Host: " + host) for host in (b"y", b"z", b"w")]
    assert all(len(other) == len(PLAIN) and other != PLAIN for other in others)
    expected, expected_others = fresh(PLAIN), [fresh(other) for other in others]
    parser = memo_of(PLAIN, PLAIN)
    del llhttp_reads[:]
    for other, expected_other in zip(others, expected_others, strict=True):
        assert reading(parser.feed(other)) == expected_other
        assert kept(parser) == PLAIN
        assert reading(parser.feed(PLAIN)) == expected
    assert llhttp_reads == [b"/a"] * 3


def test_pipelined_repeats_are_served_from_an_existing_memo(llhttp_reads: list[bytes]) -> None:
    expected = fresh(PLAIN)
    del llhttp_reads[:]
    parser = HttptoolsParser(LIMITS)
    assert reading(parser.feed(PLAIN * 6)) == expected * 6
    assert len(llhttp_reads) == 6 and kept(parser) is None
    for _ in range(2):
        assert reading(parser.feed(PLAIN)) == expected
    assert len(llhttp_reads) == 8 and kept(parser) == PLAIN
    items = parser.feed(PLAIN * 6)
    assert reading(items) == expected * 6
    assert len(llhttp_reads) == 8
    lists = [head.headers for head in heads(items)]
    assert len({id(headers) for headers in lists}) == 6
    # The memo serves the heads pipelined in the next read, cut anywhere after them.
    items = parser.feed(PLAIN * 3 + PLAIN[:7])
    assert reading(items) == expected * 3
    assert parser.in_head
    assert len(llhttp_reads) == 8
    assert reading(parser.feed(PLAIN[7:])) == expected
    assert len(llhttp_reads) == 9  # the head cut in two went the scanner's way, through llhttp
    assert reading(parser.feed(PLAIN)) == expected
    assert len(llhttp_reads) == 9


def test_heads_that_arrived_in_pieces_count_as_whole_reads(llhttp_reads: list[bytes]) -> None:
    expected = fresh(PLAIN)
    del llhttp_reads[:]
    parser = HttptoolsParser(LIMITS)
    assert parser.feed(PLAIN[:10]) == []
    assert reading(parser.feed(PLAIN[10:])) == expected
    assert kept(parser) is None and seen(parser) == fingerprint(PLAIN)
    assert parser.feed(PLAIN[:20]) == []
    assert reading(parser.feed(PLAIN[20:] + PLAIN)) == expected * 2
    assert len(llhttp_reads) == 2  # the second in pieces made the memo, the whole one after it is served
    assert kept(parser) == PLAIN
    # Empty lines before a head are not part of it: the head after them is the same head.
    assert reading(parser.feed(b"\r\n\r\n" + PLAIN)) == expected
    assert len(llhttp_reads) == 3
    assert reading(parser.feed(PLAIN)) == expected
    assert len(llhttp_reads) == 3


# Heads of PLAIN's length that differ from it in one byte: each is read afresh.
ONE_BYTE_OFF = {
    "path": get(b"/b"),
    "header-value": PLAIN.replace(b"Host: x", b"Host: y"),
    "header-value-case": PLAIN.replace(b"Host: x", b"Host: X"),
    "header-name-case": PLAIN.replace(b"Host", b"host"),
    "version": get(version=b"1.0"),
    "method": b"PUT" + PLAIN[3:],
    "ows": PLAIN.replace(b"Host: x", b"Host:\tx"),
}


@pytest.mark.parametrize("name", list(ONE_BYTE_OFF))
def test_a_head_one_byte_off_is_read_afresh(name: str, llhttp_reads: list[bytes]) -> None:
    variant = ONE_BYTE_OFF[name]
    assert len(variant) == len(PLAIN) and variant != PLAIN
    expected = fresh(variant)
    parser = memo_of(PLAIN, PLAIN)
    repeat = parser._repeat
    assert repeat is not None and repeat.raw == PLAIN
    del llhttp_reads[:]
    assert reading(parser.feed(variant)) == expected
    assert len(llhttp_reads) == 1
    if not expected[0][5]:  # the variant closes the connection: nothing is read after it
        assert parser.feed(PLAIN) == []
        return
    assert parser._repeat is repeat and seen(parser) == fingerprint(variant)  # a head in between leaves it
    stream = PLAIN + variant + PLAIN + variant
    expected = fresh(stream)
    del llhttp_reads[:]
    assert reading(parser.feed(stream)) == expected
    # PLAIN from memory, the variant read by llhttp: twice, but in a read with more bytes, so neither
    # remembered nor kept.
    assert len(llhttp_reads) == 2
    assert parser._repeat is repeat and seen(parser) == fingerprint(variant)
    # Alone again, it equals the last whole read: kept now, and served.
    expected = fresh(variant)
    del llhttp_reads[:]
    assert reading(parser.feed(variant)) == expected
    assert kept(parser) == variant
    assert reading(parser.feed(variant)) == expected
    assert len(llhttp_reads) == 1


CHUNKED = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
# Heads the memo must not keep, with what follows them; ``closes``: the connection ends after it.
NOT_KEPT: dict[str, tuple[bytes, bool]] = {
    "content-length-body": (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", False),
    "chunked-body": (CHUNKED + b"5\r\nhello\r\n0\r\n\r\n", False),
    "connection-close": (get(extra=b"Connection: close\r\n"), True),
    "expect-continue": (get(extra=b"Expect: 100-continue\r\n"), False),
    "expect-continue-with-body": (
        b"PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
        False,
    ),
    "upgrade": (get(extra=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"), False),
    "upgrade-h2c": (get(extra=b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"), False),
    "http10": (get(version=b"1.0"), True),
    "http10-close": (get(extra=b"Connection: keep-alive, close\r\n", version=b"1.0"), True),
    "over-the-limit": (get(extra=b"X-Pad: %b\r\n" % (b"p" * REPEAT_LIMIT)), False),
}


@pytest.mark.parametrize("name", list(NOT_KEPT))
def test_heads_the_memo_must_not_keep(name: str, llhttp_reads: list[bytes]) -> None:
    data, closes = NOT_KEPT[name]
    # A read that is only its head, of at most REPEAT_LIMIT bytes, is remembered (and so parts two
    # plain heads); one with a body after the head, or a longer one, is not.
    remembered = data.index(b"\r\n\r\n") + 4 == len(data) and len(data) <= REPEAT_LIMIT
    sign = fingerprint(data) if remembered else NOTHING_SEEN
    expected = fresh(data)
    parser = HttptoolsParser(LIMITS)
    assert reading(parser.feed(data)) == expected
    assert kept(parser) is None and seen(parser) == sign
    if closes:
        assert parser.feed(data) == [] and parser.feed(PLAIN) == []
        return
    del llhttp_reads[:]
    for _ in range(3):
        assert reading(parser.feed(data)) == expected
    assert reading(parser.feed(data * 3)) == expected * 3
    assert len(llhttp_reads) == 6
    assert kept(parser) is None and seen(parser) == sign
    plain = get(b"/k")
    memo_of_plain = plain if not remembered else None
    parser = memo_of(plain, data, plain)
    assert kept(parser) == memo_of_plain
    # Behind a memo, it comes between two plain heads in one read, and the memo serves the plain head
    # after it although llhttp was left waiting for a body or an upgrade; the head after that one
    # still gets a fresh llhttp.
    parser = memo_of(plain, plain)
    stream = plain + data + plain + data + plain + get(b"/other")
    expected = fresh(stream)
    del llhttp_reads[:]
    assert reading(parser.feed(stream)) == expected
    assert llhttp_reads == [b"/a", b"/a", b"/other"]
    assert kept(parser) == plain and seen(parser) == fingerprint(plain)


def test_the_limit_is_inclusive(llhttp_reads: list[bytes]) -> None:
    pad = REPEAT_LIMIT - len(get(extra=b"X-Pad: \r\n"))
    at_limit = get(extra=b"X-Pad: %b\r\n" % (b"p" * pad))
    over = get(extra=b"X-Pad: %b\r\n" % (b"p" * (pad + 1)))
    assert (len(at_limit), len(over)) == (REPEAT_LIMIT, REPEAT_LIMIT + 1)
    for data, reads in ((at_limit, 2), (over, 4)):
        expected = fresh(data)
        del llhttp_reads[:]
        parser = HttptoolsParser(LIMITS)
        for _ in range(4):
            assert reading(parser.feed(data)) == expected
        assert len(llhttp_reads) == reads


# Heads of PLAIN's length that must be refused: the memo's length test passes, its bytes do not.
BAD_OF_THE_SAME_LENGTH = {
    "fragment": get(b"/#"),
    "unknown-method": b"GEX" + PLAIN[3:],
    "space-in-name": PLAIN.replace(b"Host: x", b"Host x:"),
    "control-byte": PLAIN.replace(b"Host: x", b"Host: \x01"),
    "version": get(version=b"2.1"),
    "lf-only": PLAIN.replace(b"Host: x\r", b"Host: xx"),
}


@pytest.mark.parametrize("name", list(BAD_OF_THE_SAME_LENGTH))
def test_a_bad_head_of_the_memo_s_length_gets_its_error(name: str) -> None:
    bad = BAD_OF_THE_SAME_LENGTH[name]
    assert len(bad) == len(PLAIN)
    expected = fresh(bad)
    assert expected[-1][0] == "error"
    parser = memo_of(PLAIN, PLAIN)
    assert kept(parser) == PLAIN
    assert reading(parser.feed(bad)) == expected
    # Nothing is served after a refusal, the memo's head least of all.
    assert parser.feed(PLAIN) == []
    parser = memo_of(PLAIN, PLAIN)
    assert reading(parser.feed(PLAIN + bad + PLAIN)) == fresh(PLAIN + bad)
    assert parser.feed(PLAIN) == []
    # Twice alone: a refused head is never remembered, let alone kept.
    parser = memo_of(bad)
    assert seen(parser) == NOTHING_SEEN and parser.feed(bad) == []


def test_after_a_refused_body_the_memo_is_never_served() -> None:
    parser = HttptoolsParser(RequestLimits(body=3))
    for _ in range(2):
        parser.feed(PLAIN)
    assert kept(parser) == PLAIN
    too_big = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
    assert reading(parser.feed(too_big + PLAIN))[-1][:3] == ("error", "BodyTooLarge", 413)
    assert parser.feed(PLAIN) == []
    parser = memo_of(PLAIN, PLAIN)
    bad_chunk = CHUNKED + b"zz\r\n"
    assert reading(parser.feed(bad_chunk + PLAIN))[-1][0] == "error"
    assert parser.feed(PLAIN) == []


# ---------------------------------------------------------------------------------------------------
# Differential fuzz: a parser with the memo against the long way and against h11

SEED = 20250611
SEQUENCES = 4000
SECONDS = 2.0

# name -> (bytes, weight). Plain heads dominate, so the memo is hit, missed and replaced often.
POOL: dict[str, tuple[bytes, int]] = {
    "get": (PLAIN, 30),
    "get-b": (get(b"/b"), 8),
    "get-host-case": (PLAIN.replace(b"Host: x", b"Host: X"), 2),
    "get-name-case": (PLAIN.replace(b"Host", b"host"), 2),
    "get-query": (get(b"/a?q=1", b"Accept: */*\r\n"), 3),
    "http10-keep-alive": (get(extra=b"Connection: keep-alive\r\n", version=b"1.0"), 2),
    "content-length-0": (get(extra=b"Content-Length: 0\r\n"), 2),
    "leading-empty-line": (b"\r\n" + PLAIN, 1),
    "post": (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 3),
    "chunked": (CHUNKED + b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n", 2),
    "expect": (b"PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 1),
    "upgrade": (get(extra=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"), 1),
    "big": (get(extra=b"X-Pad: %b\r\n" % (b"p" * REPEAT_LIMIT)), 1),
    "close": (get(extra=b"Connection: close\r\n"), 1),
    "http10": (get(version=b"1.0"), 1),
    "bad-fragment": (get(b"/#"), 1),
    "bad-name": (PLAIN.replace(b"Host: x", b"Host x:"), 1),
    "bad-method": (b"GEX" + PLAIN[3:], 1),
    "bad-control": (PLAIN.replace(b"Host: x", b"Host: \x01"), 1),
    "no-host": (b"GET /a HTTP/1.1\r\nX-Host: x\r\n\r\n", 1),
}
NAMES = list(POOL)
WEIGHTS = [POOL[name][1] for name in NAMES]


def cuts(rng: random.Random, parts: list[bytes]) -> list[bytes]:
    """Whole; a read per request (a client that waits for each answer), now and then with a body
    sent after its head; cut between some requests and now and then inside one; cut anywhere; or
    (now and then) byte by byte."""
    data = b"".join(parts)
    style = rng.random()
    if style < 0.15 or len(data) < 2:
        return [data]
    ends = list(itertools.accumulate(len(part) for part in parts))[:-1]
    if style < 0.55:
        points = set(ends)
        for start, part in zip([0, *ends], parts, strict=True):
            head_end = part.find(b"\r\n\r\n") + 4
            if 4 <= head_end < len(part) and rng.random() < 0.5:
                points.add(start + head_end)
    elif style < 0.8:
        points = {end for end in ends if rng.random() < 0.5}
        points.update(rng.randrange(1, len(data)) for _ in range(rng.choice((0, 0, 1, 2))))
    elif style < 0.97:
        points = set(rng.sample(range(1, len(data)), rng.randint(1, min(6, len(data) - 1))))
    else:
        points = set(range(1, len(data)))
    ordered = sorted(points)
    return [data[a:b] for a, b in zip([0, *ordered], [*ordered, len(data)], strict=True)]


def per_feed(parser: HttptoolsParser | H11Parser, pieces: list[bytes]) -> list[list[Any]]:
    return [reading(parser.feed(piece)) for piece in pieces] + [[("in_head", parser.in_head)]]


def as_buffers(pieces: list[bytes], which: set[int]) -> list[bytes]:
    """The pieces at these indexes as a ``bytearray`` (a caller's buffer), for the httptools parsers."""
    return [bytearray(piece) if index in which else piece for index, piece in enumerate(pieces)]  # type: ignore[misc]


def joined(feeds: list[list[Any]]) -> list[Any]:
    """The stream regardless of how it was cut: bodies joined, errors as their status."""
    out: list[Any] = []
    for feed in feeds:
        for item in feed:
            if isinstance(item, tuple) and item[0] == "body" and out and out[-1][0] == "body":
                out[-1] = ("body", out[-1][1] + item[1])
            elif isinstance(item, tuple) and item[0] == "error":
                out.append(("error", item[2]))
            else:
                out.append(item)
    return out


def sequences(rng: random.Random) -> Iterator[tuple[list[str], list[bytes]]]:
    while True:
        names = rng.choices(NAMES, WEIGHTS, k=rng.randint(1, 12))
        yield names, cuts(rng, [POOL[name][0] for name in names])


def test_the_memo_changes_nothing_a_client_can_see(
    monkeypatch: pytest.MonkeyPatch, llhttp_reads: list[bytes]
) -> None:
    rng = random.Random(SEED)
    deadline = time.monotonic() + SECONDS
    served = done = 0
    for done, (names, pieces) in enumerate(sequences(rng), 1):
        buffers = as_buffers(pieces, {index for index in range(len(pieces)) if rng.random() < 0.1})
        del llhttp_reads[:]
        with_memo = per_feed(HttptoolsParser(LIMITS), buffers)
        reads = len(llhttp_reads)
        with monkeypatch.context() as patch:
            patch.setattr(parse_httptools, "REPEAT_LIMIT", 0)  # the long way: nothing is ever kept
            long_way = per_feed(HttptoolsParser(LIMITS), buffers)
        by_h11 = per_feed(H11Parser(LIMITS), pieces)
        where = f"sequence {done} (seed {SEED}): {names}, cut at {[len(piece) for piece in pieces]}"
        assert with_memo == long_way, where
        assert joined(with_memo) == joined(by_h11), where
        served += sum(item[0] == "head" for feed in with_memo for item in feed) - reads
        if done >= SEQUENCES or time.monotonic() > deadline:
            break
    assert done >= 200, f"only {done} sequences in {SECONDS} s"
    # 862 heads in 4000 sequences with this seed: a memo needs two whole reads in a row of one head.
    assert served >= done // 6, f"the memo served only {served} heads in {done} sequences"


# The response plan's memo

Pairs = list[tuple[bytes, bytes]]


def block() -> DefaultHeaderBlock:
    return DefaultHeaderBlock(b"asgi-worker", [(b"x-default", b"d")])


def plan(
    defaults: DefaultHeaderBlock,
    headers: Any,
    status: Any = 200,
    body_length: int | None = 5,
    **facts: bool,
) -> ResponsePlan:
    """``plan_response`` for an ordinary request unless ``facts`` say otherwise."""
    return plan_response(
        status,
        headers,
        defaults,
        body_length,
        facts.get("head_only", False),
        facts.get("http10", False),
        facts.get("request_keeps", True),
        facts.get("draining", False),
        facts.get("body_complete", True),
    )


def hit(defaults: DefaultHeaderBlock, headers: Any, **kwargs: Any) -> bool:
    """Plan a response (checked against the long way) and say whether the memo served it: a miss is
    always a plan of its own, never the memo's."""
    before = defaults.last
    got = plan(defaults, headers, **kwargs)
    assert same_plan(got, long_way(headers, **kwargs))
    return before is not None and got is before.plan


def long_way(headers: Any, **kwargs: Any) -> ResponsePlan:
    """The plan a block without a memo makes: what every plan must equal."""
    return plan(block(), headers, **kwargs)


def same_plan(one: ResponsePlan, other: ResponsePlan) -> bool:
    return (one.head, one.framing, one.content_length, one.keep_alive) == (
        other.head,
        other.framing,
        other.content_length,
        other.keep_alive,
    )


A: Pairs = [(b"content-type", b"text/plain"), (b"x-a", b"1")]
B: Pairs = [(b"content-type", b"application/json")]
_COUNTER = itertools.count()


def varied() -> Pairs:
    """Headers no response had before: an app whose every answer differs."""
    return [(b"x-n", b"%d" % next(_COUNTER))]


def test_the_same_headers_get_the_same_plan() -> None:
    defaults = block()
    assert defaults.patience == PATIENCE_MIN == 2
    first = plan(defaults, A)
    last = defaults.last
    assert last is not None and last.headers == A and last.headers is not A
    assert (last.misses, last.reused, last.plan) == (0, False, first)
    assert plan(defaults, A) is first
    assert plan(defaults, list(A)) is first  # an equal list, not the same object: as good
    assert defaults.last is last and last.reused and defaults.patience == PATIENCE_MIN
    assert same_plan(first, long_way(A))
    assert first.head == (
        b"HTTP/1.1 200 OK\r\nserver: asgi-worker\r\nx-default: d\r\n"
        b"content-type: text/plain\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
    )


def test_an_app_answering_otherwise_each_time_is_compared_ever_less_often() -> None:
    """Each memo, never reused, is dropped after two misses and the block then rests for ``patience``
    responses, a patience that doubles up to its limit: at the limit, one response in 259 is kept and
    two are compared with it."""
    defaults = block()
    made: list[tuple[int, int]] = []  # (response, patience) for each memo made
    compared = 0
    for index in range(1100):
        before, resting, patience = defaults.last, defaults.resting, defaults.patience
        assert not hit(defaults, varied())
        last = defaults.last
        if before is not None:  # compared, a miss
            compared += 1
            if before.misses == 1:
                assert last is before and defaults.resting == 0
            else:  # the second miss drops it, and the block rests
                assert before.misses == PATIENCE_MIN and last is None
                assert defaults.resting == patience
                assert defaults.patience == min(2 * patience, PATIENCE_LIMIT)
        elif resting:  # a count down, nothing else
            assert last is None and defaults.resting == resting - 1 and defaults.patience == patience
        else:
            assert last is not None and last.misses == 0 and not last.reused
            made.append((index, defaults.patience))
    starts = [0, 5, 12, 23, 42, 77, 144, 275, 534, 793, 1052]
    assert made == list(zip(starts, [2, 4, 8, 16, 32, 64, 128, 256, 256, 256, 256], strict=True))
    assert compared == 2 * len(starts)
    assert PATIENCE_LIMIT == 256


def state(defaults: DefaultHeaderBlock) -> tuple[response.LastHead | None, int, int]:
    """The memo, the responses left to rest, and patience."""
    return defaults.last, defaults.resting, defaults.patience


def patient(patience: int) -> DefaultHeaderBlock:
    """A block whose memo (``varied`` headers, never reused) was just made with this patience."""
    defaults = block()
    plan(defaults, varied())
    while defaults.patience < patience or defaults.last is None:
        plan(defaults, varied())
    assert defaults.patience == patience and defaults.last is not None and defaults.last.misses == 0
    assert defaults.resting == 0
    return defaults


def test_a_rest_counts_every_response_and_makes_no_memo() -> None:
    """While the block rests, no response is compared or kept, not even the one the memo dropped
    last was of; unusual requests count too."""
    defaults = block()
    plan(defaults, A)
    for _ in range(2):
        plan(defaults, varied())
    assert state(defaults) == (None, 2, 4)
    assert not hit(defaults, A) and defaults.last is None and defaults.resting == 1
    assert not hit(defaults, A, head_only=True) and defaults.last is None and defaults.resting == 0
    assert not hit(defaults, A) and defaults.last is not None  # the rest over: kept at once
    assert hit(defaults, A) and defaults.patience == PATIENCE_MIN
    # Dropped once reused: no rest, patience stays.
    for _ in range(2):
        plan(defaults, B)
    assert state(defaults) == (None, 0, PATIENCE_MIN)
    assert not hit(defaults, B) and hit(defaults, B)


def test_the_first_hit_of_a_memo_halves_patience() -> None:
    defaults = patient(16)
    kept = defaults.last
    assert kept is not None
    assert hit(defaults, list(kept.headers))
    assert defaults.patience == 8 and kept.reused
    assert hit(defaults, list(kept.headers))
    assert defaults.patience == 8  # once per memo
    # A reused memo dropped: no rest, patience stays, and the next ordinary response is kept at once.
    assert not hit(defaults, varied()) and kept.misses == 1
    assert not hit(defaults, varied())
    assert state(defaults) == (None, 0, 8)
    assert not hit(defaults, B)
    assert defaults.last is not None and defaults.last.headers == B
    assert hit(defaults, B) and defaults.patience == 4
    for _ in range(2):
        plan(defaults, A)  # the second drops B
    assert defaults.last is None
    assert not hit(defaults, A) and hit(defaults, A) and defaults.patience == PATIENCE_MIN
    for _ in range(2):
        plan(defaults, B)
    assert not hit(defaults, B) and hit(defaults, B) and defaults.patience == PATIENCE_MIN  # never below


def test_one_miss_between_hits_keeps_the_memo() -> None:
    """A, B, A, B, ...: every A is a hit, every B a single miss the next hit forgets; B twice drops it."""
    defaults = patient(8)
    kept = defaults.last
    assert kept is not None
    answer = list(kept.headers)
    assert [hit(defaults, B if index % 2 else answer) for index in range(40)] == [True, False] * 20
    assert defaults.last is kept and kept.misses == 1 and defaults.patience == 4
    assert not hit(defaults, B)
    assert state(defaults) == (None, 0, 4)
    assert not hit(defaults, B) and hit(defaults, B)


def test_a_chance_hit_among_varied_answers_changes_little() -> None:
    """A hit on a memo made at the limit halves patience: one more memo is made and dropped, and the
    rest after it is half as long; the one after that is at the limit again."""
    defaults = patient(PATIENCE_LIMIT)
    kept = defaults.last
    assert kept is not None
    assert hit(defaults, list(kept.headers))
    assert defaults.patience == PATIENCE_LIMIT // 2
    for _ in range(2):
        plan(defaults, varied())
    assert state(defaults)[:2] == (None, 0)  # it had been reused: no rest
    plan(defaults, varied())
    newer = defaults.last
    assert newer is not None and newer is not kept and not newer.reused
    for _ in range(2):
        plan(defaults, varied())
    assert state(defaults) == (None, 128, PATIENCE_LIMIT)
    for _ in range(128):
        plan(defaults, varied())
        assert defaults.last is None
    plan(defaults, varied())
    assert defaults.last is not None
    for _ in range(2):
        plan(defaults, varied())
    assert state(defaults) == (None, PATIENCE_LIMIT, PATIENCE_LIMIT)


def test_an_app_changing_its_own_list_sees_the_change() -> None:
    defaults = block()
    headers: Pairs = [(b"content-type", b"text/plain")]
    changes: list[Callable[[], None]] = [
        lambda: headers.append((b"x-new", b"1")),
        lambda: headers.__setitem__(1, (b"x-new", b"2")),  # a pair of the same size
        lambda: headers.__setitem__(0, (b"content-type", b"text/plaiN")),
        lambda: headers.insert(0, (b"connection", b"close")),
        lambda: headers.__delitem__(0),
        lambda: headers.append((b"content-length", b"5")),
        headers.clear,
    ]
    assert not hit(defaults, headers) and hit(defaults, headers)
    for change in changes:
        change()
        # Two misses drop the memo (reused: no rest, patience stays), the next is kept, then hits.
        assert [hit(defaults, headers) for _ in range(5)] == [False, False, False, True, True], headers
        assert defaults.last is not None and defaults.last.headers == headers
        assert defaults.last.headers is not headers and defaults.patience == PATIENCE_MIN


@pytest.mark.parametrize(
    "headers",
    [
        [[b"x", b"v"]],
        [(b"x", bytearray(b"v"))],
        [(bytearray(b"x"), b"v")],
        [(b"content-type", b"text/plain"), [b"x", b"v"]],
        [(b"x", b"v", b"")],
    ],
    ids=["list-pair", "bytearray-value", "bytearray-name", "one-list-pair", "triple"],
)
def test_pairs_that_could_change_are_never_kept(headers: Any) -> None:
    defaults = block()
    if len(headers[-1]) == 3:
        with pytest.raises(ValueError):  # as without the memo: not a pair, and no response either
            plan(defaults, headers)
        assert defaults.last is None
        plan(defaults, A)
        kept = defaults.last
        with pytest.raises(ValueError):
            plan(defaults, headers)
        assert defaults.last is kept and kept is not None and kept.misses == 0
        return
    expected = long_way(headers)
    assert b"x: v\r\n" in expected.head
    for _ in range(3):
        assert same_plan(plan(defaults, headers), expected)
        assert defaults.last is None and defaults.resting == 0
    # Behind a kept plan: they are misses like any other, and the second drops it (never reused: the
    # block rests, patience doubles); they never become the memo themselves.
    plan(defaults, A)
    kept = defaults.last
    assert kept is not None
    assert same_plan(plan(defaults, headers), expected)
    assert defaults.last is kept and kept.misses == 1
    assert same_plan(plan(defaults, headers), expected)
    assert state(defaults) == (None, 2, 4)
    assert same_plan(plan(defaults, headers), expected)
    assert defaults.last is None and defaults.resting == 1
    assert not hit(defaults, A) and defaults.last is None  # the rest's last response
    assert not hit(defaults, A) and hit(defaults, A)  # the next exact list is kept at once


def test_an_app_mutating_a_bytearray_value_is_seen() -> None:
    defaults = block()
    value = bytearray(b"one")
    headers = [(b"x-v", value)]
    assert b"x-v: one\r\n" in plan(defaults, headers).head
    value[:] = b"two"
    assert b"x-v: two\r\n" in plan(defaults, headers).head
    assert defaults.last is None
    # Equal to a kept plan's bytes, a bytearray gets the kept plan: the same head, byte for byte.
    plan(defaults, [(b"x-v", b"three")])
    assert defaults.last is not None
    value[:] = b"three"
    assert hit(defaults, headers)
    value[:] = b"four!"
    assert b"x-v: four!\r\n" in plan(defaults, headers).head


def test_str_names_and_values_are_refused_as_without_the_memo() -> None:
    for headers in ([("x", "v")], [(b"x", "v")], [("x", b"v")]):
        defaults = block()
        plan(defaults, [(b"x", b"v")])
        kept = defaults.last
        with pytest.raises(Exception) as without:
            long_way(headers)
        with pytest.raises(type(without.value)):
            plan(defaults, headers)
        assert defaults.last is kept and kept is not None and kept.misses == 0  # no response, no miss


@pytest.mark.parametrize("status", [200.0, HTTPStatus.OK, "200", True])
def test_a_status_equal_to_the_kept_one_but_no_int_is_refused(status: Any) -> None:
    defaults = block()
    plan(defaults, A, status=200)
    assert hit(defaults, A, status=200)
    for _ in range(3):
        with pytest.raises(AppProtocolError):
            plan(defaults, A, status=status)
    assert hit(defaults, A)


@pytest.mark.parametrize(
    "bad",
    [
        [(b"content-type", b"text/plain\r\nx-a: 1")],
        [(b"content-type", b"text/plain"), (b"x a", b"1")],
        [(b"content-type", b"text/plain"), (b"x-a", b"1\x00")],
        [(b"content-type", b"text/plain"), (b"content-length", b"five")],
    ],
)
def test_an_invalid_header_is_never_served_from_the_memo(bad: Pairs) -> None:
    defaults = block()
    plan(defaults, A)
    kept = defaults.last
    for _ in range(3):
        with pytest.raises(AppProtocolError):
            plan(defaults, bad)
    assert defaults.last is kept and kept is not None and kept.misses == 0
    assert hit(defaults, A)


UNUSUAL: dict[str, dict[str, bool]] = {
    "head": {"head_only": True},
    "http10": {"http10": True},
    "draining": {"draining": True},
    "request-closes": {"request_keeps": False},
    "body-unread": {"body_complete": False},
    "http10-closing": {"http10": True, "request_keeps": False},
}


@pytest.mark.parametrize("name", list(UNUSUAL))
@pytest.mark.parametrize("body_length", [5, None])
def test_unusual_requests_take_the_long_way(name: str, body_length: int | None) -> None:
    facts = UNUSUAL[name]
    defaults = block()
    ordinary = plan(defaults, A, body_length=body_length)
    kept = defaults.last
    assert kept is not None
    expected = long_way(A, body_length=body_length, **facts)
    assert not same_plan(expected, ordinary)  # else this case would show nothing
    for _ in range(3):
        unusual = plan(defaults, A, body_length=body_length, **facts)
        assert unusual is not ordinary and same_plan(unusual, expected)
        assert defaults.last is kept and kept.misses == 1  # a miss, though its headers are the same
        # ... and the ordinary response after it has none of its marks (connection: close, keep-alive).
        assert plan(defaults, A, body_length=body_length) is ordinary
        assert kept.misses == 0
    assert b"connection:" not in ordinary.head


@pytest.mark.parametrize("name", list(UNUSUAL))
def test_unusual_requests_count_as_misses_and_never_become_the_memo(name: str) -> None:
    facts = UNUSUAL[name]
    defaults = block()
    plan(defaults, A)
    kept = defaults.last
    assert kept is not None and hit(defaults, A)
    assert not hit(defaults, A, **facts) and kept.misses == 1  # the same headers: a miss all the same
    assert hit(defaults, A) and kept.misses == 0
    assert not hit(defaults, B, **facts)
    assert not hit(defaults, A, **facts)
    assert state(defaults) == (None, 0, PATIENCE_MIN)
    for _ in range(3):
        assert not hit(defaults, A, **facts)
        assert defaults.last is None  # never the memo, even with none to compare
    assert not hit(defaults, A) and hit(defaults, A)  # the next ordinary one is
    # They drop an unused memo as ordinary misses do, and count the rest down.
    for _ in range(2):
        plan(defaults, B)
    plan(defaults, B)
    newer = defaults.last
    assert newer is not None and newer.headers == B
    for _ in range(2):
        assert not hit(defaults, B, **facts)
    assert state(defaults) == (None, 2, 4)
    for resting in (1, 0):
        plan(defaults, B, **facts)
        assert defaults.last is None and defaults.resting == resting
    assert not hit(defaults, B) and hit(defaults, B)


@pytest.mark.parametrize("kind", [tuple, iter])
def test_headers_not_in_a_list_count_as_misses_and_are_never_kept(kind: Callable[[Pairs], Any]) -> None:
    defaults = block()
    assert same_plan(plan(defaults, kind(A)), long_way(A))
    assert defaults.last is None
    plan(defaults, A)
    kept = defaults.last
    assert kept is not None and hit(defaults, A)
    assert same_plan(plan(defaults, kind(A)), long_way(A))
    assert defaults.last is kept and kept.misses == 1
    assert hit(defaults, A) and kept.misses == 0
    for _ in range(2):
        assert same_plan(plan(defaults, kind(A)), long_way(A))
    assert defaults.last is None
    assert same_plan(plan(defaults, kind(A)), long_way(A))
    assert defaults.last is None


def test_an_unusual_request_first_leaves_nothing_behind() -> None:
    for facts in UNUSUAL.values():
        defaults = block()
        for _ in range(3):
            plan(defaults, A, **facts)
        assert defaults.last is None and defaults.patience == PATIENCE_MIN
        assert not hit(defaults, A) and hit(defaults, A)


def test_body_length_is_part_of_the_key() -> None:
    defaults = block()
    for body_length in [13, None, 13, None, None, 13, 0, 0, 4096, 5000, 13]:
        got = plan(defaults, A, body_length=body_length)
        assert same_plan(got, long_way(A, body_length=body_length)), body_length


def test_status_is_part_of_the_key() -> None:
    defaults = block()
    for status in [200, 404, 200, 204, 204, 304, 599, 599, 200]:
        got = plan(defaults, A, status=status)
        assert same_plan(got, long_way(A, status=status)), status


def test_a_new_date_clears_the_memo_and_keeps_patience() -> None:
    defaults = patient(8)
    defaults.refresh(b"Mon, 01 Jan 2024 00:00:00 GMT")
    assert defaults.last is None and defaults.patience == 8
    first = plan(defaults, A)  # no memo: the first ordinary response makes one at once
    assert defaults.last is not None and defaults.last.plan is first
    assert plan(defaults, A) is first and b"date: Mon, 01 Jan 2024" in first.head
    assert defaults.patience == 4
    defaults.refresh(b"Mon, 01 Jan 2024 00:00:01 GMT")
    assert defaults.last is None and defaults.patience == 4
    second = plan(defaults, A)
    assert b"date: Mon, 01 Jan 2024 00:00:01 GMT\r\n" in second.head
    assert b"00:00:00" not in second.head
    defaults.refresh(None)
    assert b"date:" not in plan(defaults, A).head


def test_a_new_date_leaves_a_rest_alone() -> None:
    defaults = block()
    for _ in range(3):
        plan(defaults, varied())
    assert state(defaults) == (None, 2, 4)
    defaults.refresh(b"Mon, 01 Jan 2024 00:00:00 GMT")
    assert state(defaults) == (None, 2, 4)
    for _ in range(2):
        assert b"date: Mon, 01 Jan 2024 00:00:00 GMT\r\n" in plan(defaults, A).head
        assert defaults.last is None
    kept = plan(defaults, A)
    assert defaults.last is not None and defaults.last.plan is kept and plan(defaults, A) is kept


def test_alternating_heads_stay_right() -> None:
    defaults = block()
    expected = {id(A): long_way(A), id(B): long_way(B)}
    served_a: list[ResponsePlan] = []
    for index in range(12):
        headers = A if index % 2 == 0 else B
        got = plan(defaults, headers)
        assert same_plan(got, expected[id(headers)]), index
        if headers is A:
            served_a.append(got)
    assert all(got is served_a[0] for got in served_a), "A, B, A, B: the kept plan (A's) was dropped"
    # Two misses in a row drop it; it had been reused, so the next response is kept at once.
    assert same_plan(plan(defaults, B), expected[id(B)])
    assert defaults.last is None
    assert same_plan(plan(defaults, B), expected[id(B)])
    assert defaults.last is not None and defaults.last.headers == B
    assert same_plan(plan(defaults, A), expected[id(A)])
    assert plan(defaults, B) is defaults.last.plan


def test_a_response_with_its_own_framing_headers() -> None:
    defaults = block()
    cases: list[tuple[Pairs, int | None]] = [
        ([(b"content-length", b"5")], None),
        ([(b"transfer-encoding", b"chunked")], None),
        ([(b"transfer-encoding", b"gzip")], None),
        ([(b"connection", b"close")], 5),
        ([(b"server", b"app"), (b"date", b"today")], 5),
    ]
    for headers, body_length in cases * 3:
        got = plan(defaults, headers, body_length=body_length)
        assert same_plan(got, long_way(headers, body_length=body_length)), headers
    for headers, body_length in cases:  # each kept, and served, by a block of its own
        defaults = block()
        assert not hit(defaults, headers, body_length=body_length) and defaults.last is not None
        assert hit(defaults, headers, body_length=body_length), headers
        assert hit(defaults, headers, body_length=body_length), headers


# The answers of a random app, besides ones that never repeat: some repeat, some can never be kept.
ANSWERS: list[tuple[Any, int, int | None]] = [
    (A, 200, 5),
    (A, 200, 5),
    (A, 200, 5),
    (B, 200, None),
    (B, 404, 9),
    ([(b"x-v", bytearray(b"v"))], 200, 5),
    (tuple(A), 200, 5),
    ([(b"content-length", b"5")], 200, None),
]


def test_random_answers_are_planned_as_without_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every plan equals the long way's, the memo holds only exact pairs of its own, patience stays a
    power of two within its bounds, a rest has no memo, and the memo serves often."""
    # The process-wide cache of checked pairs is bounded; random pairs would fill it for later tests.
    monkeypatch.setattr(response, "_KINDS", {})
    rng = random.Random(SEED)
    deadline = time.monotonic() + SECONDS
    defaults = block()
    date: bytes | None = None
    headers: Any
    status: int
    body_length: int | None
    hits = done = rested = 0
    patiences: set[int] = set()
    answer: tuple[Any, int, int | None] = ANSWERS[0]
    for done in range(1, 20001):
        # In streaks, as an app answers a client polling one URL; and among them, answers at random.
        choice = rng.random()
        if choice < 0.15:
            answer = (varied(), 200, 5)
        elif choice < 0.4:
            answer = rng.choice(ANSWERS)
        headers, status, body_length = answer
        headers = list(headers) if isinstance(headers, list) else headers
        facts = rng.choice(list(UNUSUAL.values())) if rng.random() < 0.15 else {}
        if rng.random() < 0.002:
            date = b"Mon, 01 Jan 2024 00:00:%02d GMT" % rng.randrange(60)
            defaults.refresh(date)
        reference = block()
        reference.refresh(date)
        expected = plan(reference, headers, status=status, body_length=body_length, **facts)
        before = defaults.last
        got = plan(defaults, headers, status=status, body_length=body_length, **facts)
        assert same_plan(got, expected), done
        if before is not None and got is before.plan:
            hits += 1
            assert not facts and before.misses == 0 and before.reused, done
        assert PATIENCE_MIN <= defaults.patience <= PATIENCE_LIMIT
        assert defaults.patience & (defaults.patience - 1) == 0
        patiences.add(defaults.patience)
        assert 0 <= defaults.resting <= defaults.patience
        rested += defaults.resting > 0
        last = defaults.last
        if last is not None:
            assert defaults.resting == 0 and last.misses < PATIENCE_MIN
            assert last.headers is not headers
            assert all(
                type(pair) is tuple and type(pair[0]) is type(pair[1]) is bytes for pair in last.headers
            )
        if time.monotonic() > deadline:
            break
    assert done >= 1000, f"only {done} plans in {SECONDS} s"
    assert hits >= done // 16, f"the memo served only {hits} of {done} plans"  # 2363 of 20000 here
    assert rested, "the block never rested"
    assert len(patiences) >= 3, patiences  # it went up and came down


def test_an_idle_connection_holds_its_repeated_head_once() -> None:
    """Once the memo is made, the last read remembered and the memo's bytes are one object."""
    parser = memo_of(get(b"/a"), get(b"/a"))
    repeat = parser._repeat
    assert repeat is not None and parser._seen is repeat.raw
