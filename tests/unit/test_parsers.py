"""The request corpus, replayed against both parser adapters in every chunking (STYLE.md principle 14).

Corpus: ``tests/fixtures/http/{valid,invalid}/NNN-name.http`` with an ``NNN-name.json`` expectation.
The ``.http`` file is ASCII text with visible escapes: real newlines are ignored (lay a request out
one line per header), ``\\r`` ``\\n`` ``\\t`` are CR, LF and HTAB, ``\\xNN`` is one raw byte and
``\\\\`` a backslash. Any other backslash, and any real control or non-ASCII character, is an error.

Expectations:
- valid: ``{"requests": [...]}``, each request as its head fields plus the de-chunked ``body``
  (latin-1 text). Every request must end and nothing may be left half-parsed.
- invalid: ``{"status": 400, "requests_before": 0}``: the error that ends the stream, after that
  many complete requests (pipelining).
- optional ``"limits"`` (HeadLimits fields for this fixture), ``"comment"`` (why; RFC section) and
  ``"xfail"`` (a known parser disagreement or RFC deviation). An xfail fixture is expected to fail
  somewhere: each of its runs xfails when it fails and passes when it passes, and
  ``test_xfail_is_still_needed`` fails once it passes everywhere, so a fixed bug cannot hide.

Each fixture runs under both parsers in six chunkings: whole, by line (cut after every LF), byte
by byte, and three seeded random splits. Bodies are compared joined, since chunking decides how a
body is cut.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asgi_worker.errors import RequestError
from asgi_worker.http.events import BodyChunk, RequestEnd, RequestHead
from asgi_worker.http.limits import HeadLimits
from asgi_worker.http.parse_h11 import H11Parser
from asgi_worker.http.parse_httptools import HttptoolsParser

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "http"

PARSERS: dict[str, type[HttptoolsParser] | type[H11Parser]] = {
    "httptools": HttptoolsParser,
    "h11": H11Parser,
}

CHUNKINGS = ("whole", "bylines", "bybyte", "random1", "random2", "random3")

_VALID_KEYS = {"requests", "limits", "comment", "xfail"}
_INVALID_KEYS = {"status", "requests_before", "limits", "comment", "xfail"}
_REQUEST_KEYS = [
    "method",
    "target",
    "http_version",
    "headers",
    "body",
    "keep_alive",
    "expect_continue",
    "upgrade",
]
_LIMIT_NAMES = {field.name for field in dataclasses.fields(HeadLimits)}

# ---------------------------------------------------------------------------------------------------
# Corpus loading

_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.?)", re.DOTALL)
_SIMPLE_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}
_FIXTURE_NAME = re.compile(r"\d{3}-[a-z0-9][a-z0-9.-]*")


def decode_http(text: str) -> bytes:
    """Decode the visible-escape ``.http`` format to the bytes a client would send."""
    text = text.replace("\n", "")
    for char in text:
        if not " " <= char <= "~":
            raise ValueError(f"raw character {char!r} in a .http file: write it as an escape")

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) == 3:
            return chr(int(code[1:], 16))
        try:
            return _SIMPLE_ESCAPES[code]
        except KeyError:
            raise ValueError(f"unknown escape \\{code} in a .http file") from None

    return _ESCAPE.sub(replace, text).encode("latin-1")


@dataclass(frozen=True)
class Case:
    """One fixture: its bytes and what both parsers must make of them."""

    id: str  # "valid/012-chunked-extensions"
    valid: bool
    data: bytes
    expect: dict[str, Any]
    limits: HeadLimits
    xfail: str | None

    def expected(self) -> dict[str, Any]:
        """The comparable outcome (see ``Outcome.comparable``) this fixture must produce."""
        if self.valid:
            return {"requests": self.expect["requests"], "partial": None, "error": None, "problems": []}
        return {
            "error": self.expect["status"],
            "requests_before": self.expect["requests_before"],
            "problems": [],
        }


def load_cases() -> list[Case]:
    cases = []
    for kind in ("valid", "invalid"):
        for path in sorted((FIXTURES / kind).glob("*.http")):
            expect = json.loads(path.with_suffix(".json").read_text("ascii"))
            cases.append(
                Case(
                    id=f"{kind}/{path.stem}",
                    valid=kind == "valid",
                    data=decode_http(path.read_text("ascii")),
                    expect=expect,
                    limits=HeadLimits(**expect.get("limits", {})),
                    xfail=expect.get("xfail"),
                )
            )
    return cases


CASES = load_cases()
XFAIL_CASES = [case for case in CASES if case.xfail]

# ---------------------------------------------------------------------------------------------------
# Chunkings


def random_split(data: bytes, seed: str, max_cuts: int = 8) -> list[bytes]:
    """Cut ``data`` at up to ``max_cuts`` positions chosen by a generator seeded with ``seed``."""
    if len(data) < 2:
        return [data]
    rng = random.Random(seed)
    count = rng.randint(1, min(max_cuts, len(data) - 1))
    cuts = sorted(rng.sample(range(1, len(data)), count))
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def chunk(data: bytes, chunking: str, seed: str) -> list[bytes]:
    """Split ``data`` the way ``chunking`` names; random splits are seeded by ``seed``."""
    if chunking == "whole":
        return [data]
    if chunking == "bylines":
        return re.findall(rb"[^\n]*\n|[^\n]+", data)
    if chunking == "bybyte":
        return [data[i : i + 1] for i in range(len(data))]
    return random_split(data, f"{seed}-{chunking}")


# ---------------------------------------------------------------------------------------------------
# Replay


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _request(head: RequestHead, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "method": head.method,
        "target": _text(head.target),
        "http_version": head.http_version,
        "headers": [[_text(name), _text(value)] for name, value in headers],
        "body": "",
        "keep_alive": head.keep_alive,
        "expect_continue": head.expect_continue,
        "upgrade": None if head.upgrade is None else _text(head.upgrade),
    }


@dataclass
class Outcome:
    """What a parser made of a byte stream, plus every breach of the feed contract it committed."""

    requests: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    partial: dict[str, Any] | None = None
    error: RequestError | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    in_head: bool = False

    def comparable(self, valid: bool) -> dict[str, Any]:
        """The outcome in the shape ``Case.expected`` returns for a valid or an invalid fixture."""
        status = None if self.error is None else self.error.status
        if valid:
            problems = [*self.problems, *(["in_head is still True at the end"] if self.in_head else [])]
            return {"requests": self.requests, "partial": self.partial, "error": status, "problems": problems}
        return {"error": status, "requests_before": len(self.requests), "problems": self.problems}


class StreamChecker:
    """Feeds chunks to one parser and checks the contract of every ``feed`` call.

    The contract (parse_httptools.py, parse_h11.py, events.py): ``feed`` returns a list of
    ``RequestHead``, ``BodyChunk``, ``REQUEST_END`` and at most one ``RequestError``, which comes
    last; after it every ``feed`` returns ``[]``. Events follow ``(head body* end)*``, body chunks
    are non-empty bytes, and a head does not change once returned.
    """

    def __init__(self, parser_cls: type[HttptoolsParser] | type[H11Parser], limits: HeadLimits) -> None:
        self.parser = parser_cls(limits)
        self.outcome = Outcome()
        self._current: dict[str, Any] | None = None
        self._heads: list[tuple[RequestHead, list[tuple[bytes, bytes]]]] = []

    def feed(self, data: bytes) -> None:
        outcome = self.outcome
        events = self.parser.feed(data)
        if not isinstance(events, list):
            outcome.problems.append(f"feed returned {type(events).__name__}, not a list")
            return
        if outcome.error is not None and events:
            outcome.problems.append(f"feed returned {events!r} after {outcome.error!r}")
            return
        for index, event in enumerate(events):
            if isinstance(event, RequestError):
                if index != len(events) - 1:
                    outcome.problems.append(f"{event!r} is not the last item of {events!r}")
                outcome.error = event
            else:
                self._event(event)

    def _event(self, event: object) -> None:
        outcome = self.outcome
        current = self._current
        if isinstance(event, RequestHead):
            if current is not None:
                outcome.problems.append("RequestHead before the previous request ended")
            self._heads.append((event, list(event.headers)))
            self._current = _request(event, event.headers)
        elif isinstance(event, BodyChunk):
            if current is None:
                outcome.problems.append("BodyChunk outside a request")
            elif not isinstance(event.data, bytes) or not event.data:
                outcome.problems.append(f"BodyChunk with data {event.data!r}")
            else:
                current["body"] += _text(event.data)
        elif isinstance(event, RequestEnd):
            if current is None:
                outcome.problems.append("RequestEnd outside a request")
            else:
                outcome.requests.append(current)
                self._current = None
        else:
            outcome.problems.append(f"unexpected item {event!r}")

    def finish(self, check_heads: bool = True) -> Outcome:
        """Close the books: record a half-parsed request and (``check_heads``) heads changed after return."""
        outcome = self.outcome
        outcome.partial = self._current
        outcome.in_head = self.parser.in_head
        for head, headers in self._heads if check_heads else ():
            if head.headers != headers:
                outcome.problems.append(
                    f"RequestHead.headers changed after feed() returned it: {headers!r} -> {head.headers!r}"
                )
        return outcome


def replay(parser_name: str, chunks: list[bytes], limits: HeadLimits) -> Outcome:
    """Feed ``chunks`` in order to a fresh parser and return what came out."""
    checker = StreamChecker(PARSERS[parser_name], limits)
    for piece in chunks:
        checker.feed(piece)
    return checker.finish()


def run_case(case: Case, parser_name: str, chunking: str) -> dict[str, Any]:
    """The comparable outcome of one fixture under one parser and one chunking."""
    outcome = replay(parser_name, chunk(case.data, chunking, case.id), case.limits)
    return outcome.comparable(case.valid)


def summary(case: Case, parser_name: str, chunking: str) -> dict[str, Any]:
    """Everything observable, for comparing the two parsers (error status, not its wording)."""
    outcome = replay(parser_name, chunk(case.data, chunking, case.id), case.limits)
    return {
        "requests": outcome.requests,
        "partial": outcome.partial,
        "error": None if outcome.error is None else outcome.error.status,
        "problems": outcome.problems,
    }


# ---------------------------------------------------------------------------------------------------
# The corpus itself


def test_corpus_is_complete() -> None:
    for kind in ("valid", "invalid"):
        folder = FIXTURES / kind
        http = {path.stem for path in folder.glob("*.http")}
        expectations = {path.stem for path in folder.glob("*.json")}
        assert http == expectations, f"{kind}: unpaired fixture files"
        assert all(_FIXTURE_NAME.fullmatch(stem) for stem in http), f"{kind}: names must be NNN-name"
        numbers = sorted(int(stem[:3]) for stem in http)
        assert numbers == list(range(1, len(numbers) + 1)), f"{kind}: numbering has gaps or duplicates"
    assert sum(case.valid for case in CASES) >= 45
    assert sum(not case.valid for case in CASES) >= 45


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_expectation_is_well_formed(case: Case) -> None:
    keys = set(case.expect)
    if case.valid:
        assert keys <= _VALID_KEYS and "requests" in keys
        assert case.expect["requests"], "a valid fixture has at least one request"
        for request in case.expect["requests"]:
            assert list(request) == _REQUEST_KEYS
    else:
        assert keys <= _INVALID_KEYS and {"status", "requests_before"} <= keys
        assert case.expect["status"] in {400, 413, 414, 431, 501, 505}
    assert set(case.expect.get("limits", {})) <= _LIMIT_NAMES


def test_decode_http_escapes() -> None:
    text = "GET /\\x41 HTTP/1.1\\r\\n\nX: a\\tb\\\\c\\n\n\\xff\\x00\n"
    assert decode_http(text) == b"GET /A HTTP/1.1\r\nX: a\tb\\c\n\xff\x00"


@pytest.mark.parametrize("text", ["\\q", "\\x4", "\\xg0", "trailing\\", "raw\ttab", "caf\xe9"])
def test_decode_http_rejects_what_is_not_visible(text: str) -> None:
    with pytest.raises(ValueError):
        decode_http(text)


def test_chunkings_rejoin_to_the_input() -> None:
    data = CASES[0].data
    for chunking in CHUNKINGS:
        pieces = chunk(data, chunking, "seed")
        assert b"".join(pieces) == data
        assert all(pieces)
    assert chunk(data, "random1", "seed") == chunk(data, "random1", "seed")
    assert chunk(data, "random1", "seed") != chunk(data, "random2", "seed")


# ---------------------------------------------------------------------------------------------------
# Replays


@pytest.mark.parametrize(
    ("case", "parser_name", "chunking"),
    [(case, parser, chunking) for case in CASES for parser in PARSERS for chunking in CHUNKINGS],
    ids=[f"{case.id}-{parser}-{chunking}" for case in CASES for parser in PARSERS for chunking in CHUNKINGS],
)
def test_replay(case: Case, parser_name: str, chunking: str) -> None:
    actual = run_case(case, parser_name, chunking)
    expected = case.expected()
    if case.xfail and actual != expected:
        pytest.xfail(f"{case.xfail}; got {actual!r}")
    assert actual == expected


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_parsers_agree(case: Case) -> None:
    results = {parser: {c: summary(case, parser, c) for c in CHUNKINGS} for parser in PARSERS}
    if case.xfail and results["httptools"] != results["h11"]:
        pytest.xfail(case.xfail)
    assert results["httptools"] == results["h11"]


@pytest.mark.parametrize("case", XFAIL_CASES, ids=[case.id for case in XFAIL_CASES])
def test_xfail_is_still_needed(case: Case) -> None:
    """An xfail fixture that passes under every parser and chunking must lose its xfail."""
    expected = case.expected()
    failing = [
        f"{parser}-{chunking}"
        for parser in PARSERS
        for chunking in CHUNKINGS
        if run_case(case, parser, chunking) != expected
    ]
    disagree = any(summary(case, "httptools", c) != summary(case, "h11", c) for c in CHUNKINGS)
    assert failing or disagree, f"{case.id} now passes everywhere: remove its xfail"


INVALID_CASES = [case for case in CASES if not case.valid]


@pytest.mark.parametrize(
    ("case", "parser_name"),
    [(case, parser) for case in INVALID_CASES for parser in PARSERS],
    ids=[f"{case.id}-{parser}" for case in INVALID_CASES for parser in PARSERS],
)
def test_feed_after_error_returns_nothing(case: Case, parser_name: str) -> None:
    parser = PARSERS[parser_name](case.limits)
    events = parser.feed(case.data)
    if not (events and isinstance(events[-1], RequestError)):
        if case.xfail:
            pytest.xfail(f"{case.xfail}; no error from one whole feed")
        pytest.fail(f"no RequestError at the end of {events!r}")
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n") == []
    assert parser.feed(case.data) == []
    assert parser.feed(b"\x00garbage\r\n\r\n") == []
    assert parser.feed(b"") == []
