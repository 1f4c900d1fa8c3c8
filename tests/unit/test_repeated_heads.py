"""The two "same as last time" shortcuts of the HTTP/1.1 hot path, pure: no sockets.

``HttptoolsParser`` reuses its reading of the last plain head when the next head has the same bytes
(``parse_httptools._Repeat``), and ``plan_response`` reuses the last plan when an ordinary request
gets the same status, header list and body length (``response.LastHead``). A shortcut may only save
work: every test here checks its answer against the long way (a fresh parser or a fresh
``DefaultHeaderBlock``, which has no memo), and that it is not taken where it must not be.
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
from asgi_worker.http import parse_httptools
from asgi_worker.http.events import BodyChunk, Event, RequestEnd, RequestHead
from asgi_worker.http.headers import build_head
from asgi_worker.http.limits import RequestLimits
from asgi_worker.http.parse_h11 import H11Parser
from asgi_worker.http.parse_httptools import REPEAT_LIMIT, HttptoolsParser
from asgi_worker.http.response import DefaultHeaderBlock, ResponsePlan, plan_response

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


@pytest.fixture
def llhttp_reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The target of every head llhttp read (``build_head`` runs once per head it reads, never for a
    head served from the memo)."""
    targets: list[bytes] = []

    def spy(
        method: str, target: bytes, version: str, headers: list[tuple[bytes, bytes]], limits: RequestLimits
    ) -> RequestHead:
        targets.append(target)
        return build_head(method, target, version, headers, limits)

    monkeypatch.setattr(parse_httptools, "build_head", spy)
    return targets


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


def test_the_memo_keeps_bytes_of_its_own() -> None:
    """A caller's reusable buffer changed after the feed cannot change what the memo remembers."""
    buffer = bytearray(get(b"/a"))
    parser = HttptoolsParser(LIMITS)
    assert heads(parser.feed(buffer))[0].target == b"/a"  # type: ignore[arg-type]
    buffer[5] = ord("b")
    assert heads(parser.feed(buffer))[0].target == b"/b"  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(PLAIN_HEADS))
def test_a_repeated_head_reads_as_a_fresh_parser_reads_it(name: str, llhttp_reads: list[bytes]) -> None:
    data = PLAIN_HEADS[name]
    parser = HttptoolsParser(LIMITS)
    expected = fresh(data)
    del llhttp_reads[:]
    first = parser.feed(data)
    second = parser.feed(data)
    assert reading(first) == reading(second) == expected
    assert len(llhttp_reads) == 1, "the repeat was parsed again"
    # The app gets a list of its own: changing one request's headers leaves the next one alone.
    assert heads(first)[0].headers is not heads(second)[0].headers
    heads(first)[0].headers.append((b"x-added", b"to the first"))
    heads(second)[0].headers.append((b"x-added", b"by the app"))
    heads(second)[0].headers[0] = (b"host", b"changed")
    third = parser.feed(data)
    assert reading(third) == expected
    del heads(third)[0].headers[:]
    assert reading(parser.feed(data)) == expected
    assert len(llhttp_reads) == 1


def test_pipelined_repeats_in_one_read(llhttp_reads: list[bytes]) -> None:
    expected = fresh(PLAIN)
    del llhttp_reads[:]
    parser = HttptoolsParser(LIMITS)
    items = parser.feed(PLAIN * 6)
    assert reading(items) == expected * 6
    assert len(llhttp_reads) == 1
    lists = [head.headers for head in heads(items)]
    assert len({id(headers) for headers in lists}) == 6
    # And a memo made by one read serves the heads pipelined in the next, cut anywhere after them.
    items = parser.feed(PLAIN * 3 + PLAIN[:7])
    assert reading(items) == expected * 3
    assert parser.in_head
    assert reading(parser.feed(PLAIN[7:])) == expected
    assert len(llhttp_reads) == 2  # the head cut in two went the scanner's way, through llhttp


def test_a_head_that_arrived_in_pieces_is_remembered_too(llhttp_reads: list[bytes]) -> None:
    expected = fresh(PLAIN)
    del llhttp_reads[:]
    parser = HttptoolsParser(LIMITS)
    assert parser.feed(PLAIN[:10]) == []
    assert reading(parser.feed(PLAIN[10:])) == expected
    assert reading(parser.feed(PLAIN + PLAIN)) == expected * 2
    assert len(llhttp_reads) == 1
    # Empty lines before a head are not part of it: the head after them is the same head.
    assert reading(parser.feed(b"\r\n\r\n" + PLAIN)) == expected
    assert reading(parser.feed(PLAIN)) == expected
    assert len(llhttp_reads) == 2


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
    parser = HttptoolsParser(LIMITS)
    parser.feed(PLAIN)
    del llhttp_reads[:]
    assert reading(parser.feed(variant)) == expected
    assert len(llhttp_reads) == 1
    if expected[0][5]:  # the variant keeps the connection: the original is read afresh after it
        assert reading(parser.feed(PLAIN + variant + PLAIN)) == fresh(PLAIN + variant + PLAIN)


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
    expected = fresh(data)
    parser = HttptoolsParser(LIMITS)
    assert reading(parser.feed(data)) == expected
    assert parser._repeat is None
    if closes:
        assert parser.feed(data) == [] and parser.feed(PLAIN) == []
        return
    del llhttp_reads[:]
    assert reading(parser.feed(data + data)) == expected * 2
    assert len(llhttp_reads) == 2
    # A plain memo survives it, and serves the next plain head although llhttp was left waiting
    # for a body or an upgrade; the head after that one still gets a fresh llhttp.
    stream = data + PLAIN + PLAIN + get(b"/other")
    expected = fresh(stream)
    parser.feed(PLAIN)
    del llhttp_reads[:]
    assert reading(parser.feed(stream)) == expected
    assert llhttp_reads == [b"/a", b"/other"]
    assert parser._repeat is not None and parser._repeat.raw == get(b"/other")


def test_the_limit_is_inclusive(llhttp_reads: list[bytes]) -> None:
    pad = REPEAT_LIMIT - len(get(extra=b"X-Pad: \r\n"))
    at_limit = get(extra=b"X-Pad: %b\r\n" % (b"p" * pad))
    over = get(extra=b"X-Pad: %b\r\n" % (b"p" * (pad + 1)))
    assert (len(at_limit), len(over)) == (REPEAT_LIMIT, REPEAT_LIMIT + 1)
    for data, reads in ((at_limit, 1), (over, 3)):
        expected = fresh(data)
        del llhttp_reads[:]
        assert reading(HttptoolsParser(LIMITS).feed(data * 3)) == expected * 3
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
    parser = HttptoolsParser(LIMITS)
    parser.feed(PLAIN)
    assert reading(parser.feed(bad)) == expected
    # Nothing is served after a refusal, the memo's head least of all.
    assert parser.feed(PLAIN) == []
    parser = HttptoolsParser(LIMITS)
    parser.feed(PLAIN)
    assert reading(parser.feed(PLAIN + bad + PLAIN)) == fresh(PLAIN + bad)
    assert parser.feed(PLAIN) == []


def test_after_a_refused_body_the_memo_is_never_served() -> None:
    parser = HttptoolsParser(RequestLimits(body=3))
    parser.feed(PLAIN)
    too_big = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
    assert reading(parser.feed(too_big + PLAIN))[-1][:3] == ("error", "BodyTooLarge", 413)
    assert parser.feed(PLAIN) == []
    parser = HttptoolsParser(LIMITS)
    parser.feed(PLAIN)
    bad_chunk = CHUNKED + b"zz\r\n"
    assert reading(parser.feed(bad_chunk + PLAIN))[-1][0] == "error"
    assert parser.feed(PLAIN) == []


# ---------------------------------------------------------------------------------------------------
# Differential fuzz: one long-lived parser with the memo against the long way and against h11

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
    """Whole; cut between some requests (a client's writes) and now and then inside one; cut
    anywhere; or (now and then) byte by byte."""
    data = b"".join(parts)
    style = rng.random()
    if style < 0.3 or len(data) < 2:
        return [data]
    if style < 0.7:
        ends = list(itertools.accumulate(len(part) for part in parts))[:-1]
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
        del llhttp_reads[:]
        with_memo = per_feed(HttptoolsParser(LIMITS), pieces)
        reads = len(llhttp_reads)
        with monkeypatch.context() as patch:
            patch.setattr(parse_httptools, "REPEAT_LIMIT", 0)  # the long way: nothing is ever kept
            long_way = per_feed(HttptoolsParser(LIMITS), pieces)
        by_h11 = per_feed(H11Parser(LIMITS), pieces)
        where = f"sequence {done} (seed {SEED}): {names}, cut at {[len(piece) for piece in pieces]}"
        assert with_memo == long_way, where
        assert joined(with_memo) == joined(by_h11), where
        served += sum(item[0] == "head" for feed in with_memo for item in feed) - reads
        if done >= SEQUENCES or time.monotonic() > deadline:
            break
    assert done >= 200, f"only {done} sequences in {SECONDS} s"
    assert served >= done // 2, f"the memo served only {served} heads in {done} sequences"


# ---------------------------------------------------------------------------------------------------
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


def test_the_same_headers_get_the_same_plan() -> None:
    defaults = block()
    first = plan(defaults, A)
    assert defaults.last is not None and defaults.last.headers is not A
    assert plan(defaults, A) is first
    assert plan(defaults, list(A)) is first  # an equal list, not the same object: as good
    assert same_plan(first, long_way(A))
    assert first.head == (
        b"HTTP/1.1 200 OK\r\nserver: asgi-worker\r\nx-default: d\r\n"
        b"content-type: text/plain\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
    )


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
    for change in [lambda: None, *changes]:
        change()
        for _ in range(3):  # a miss, a second miss that replaces the memo, a hit
            got = plan(defaults, headers)
            assert same_plan(got, long_way(list(headers))), headers
    assert defaults.last is not None and defaults.last.headers == headers


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
        with pytest.raises(ValueError):  # as without the memo: not a pair
            plan(defaults, headers)
        assert defaults.last is None
        return
    expected = long_way(headers)
    assert b"x: v\r\n" in expected.head
    for _ in range(3):
        assert same_plan(plan(defaults, headers), expected)
        assert defaults.last is None
    # Behind a kept plan: at most it stops being kept (two misses), it is never replaced by these.
    plan(defaults, A)
    kept = defaults.last
    for _ in range(3):
        assert same_plan(plan(defaults, headers), expected)
        assert defaults.last in (kept, None)
    assert same_plan(plan(defaults, A), long_way(A))


def test_an_app_mutating_a_bytearray_value_is_seen() -> None:
    defaults = block()
    value = bytearray(b"one")
    headers = [(b"x-v", value)]
    assert b"x-v: one\r\n" in plan(defaults, headers).head
    value[:] = b"two"
    assert b"x-v: two\r\n" in plan(defaults, headers).head
    # Equal to a kept plan's bytes, a bytearray gets the kept plan: the same head, byte for byte.
    plan(defaults, [(b"x-v", b"three")])
    assert defaults.last is not None
    value[:] = b"three"
    assert same_plan(plan(defaults, headers), long_way([(b"x-v", b"three")]))
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
        assert defaults.last is kept


@pytest.mark.parametrize("status", [200.0, HTTPStatus.OK, "200", True])
def test_a_status_equal_to_the_kept_one_but_no_int_is_refused(status: Any) -> None:
    defaults = block()
    plan(defaults, A, status=200)
    plan(defaults, A, status=200)
    with pytest.raises(AppProtocolError):
        plan(defaults, A, status=status)
    assert same_plan(plan(defaults, A), long_way(A))


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
    for _ in range(3):
        with pytest.raises(AppProtocolError):
            plan(defaults, bad)
    assert same_plan(plan(defaults, A), long_way(A))


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
        assert defaults.last is kept and not kept.missed
        # ... and the ordinary response after it has none of its marks (connection: close, keep-alive).
        assert plan(defaults, A, body_length=body_length) is ordinary
    assert b"connection:" not in ordinary.head


def test_an_unusual_request_first_leaves_nothing_behind() -> None:
    for facts in UNUSUAL.values():
        defaults = block()
        plan(defaults, A, **facts)
        assert defaults.last is None
        assert same_plan(plan(defaults, A), long_way(A))


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


def test_a_new_date_clears_the_memo() -> None:
    defaults = block()
    defaults.refresh(b"Mon, 01 Jan 2024 00:00:00 GMT")
    first = plan(defaults, A)
    assert plan(defaults, A) is first and b"date: Mon, 01 Jan 2024" in first.head
    defaults.refresh(b"Mon, 01 Jan 2024 00:00:01 GMT")
    assert defaults.last is None
    second = plan(defaults, A)
    assert b"date: Mon, 01 Jan 2024 00:00:01 GMT\r\n" in second.head
    assert b"00:00:00" not in second.head
    defaults.refresh(None)
    assert b"date:" not in plan(defaults, A).head


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
    assert all(got is served_a[0] for got in served_a), "A, B, A, B: the kept plan (A's) was replaced"
    # Two misses in a row replace it.
    plan(defaults, B)
    assert defaults.last is not None and defaults.last.headers == B
    assert same_plan(plan(defaults, A), expected[id(A)])


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
