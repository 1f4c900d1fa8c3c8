"""The request corpus, replayed against both parser adapters in every chunking.

The corpus format and the *answer* vocabulary are described in ``tests/unit/corpus.py`` (adding a
fixture: CONTRIBUTING.md, "Parser fixtures"). Each fixture runs under both parsers in six
chunkings: whole, by line (cut after every LF), byte by byte, and three seeded random splits. In
each run the parser must give exactly the answer the fixture holds for it (its ``"known"``
deviation if it has one, else the RFC answer) and break no part of the feed contract. Bodies are
compared joined, since chunking decides how a body is cut.

Where both parsers have the same answer, they must also agree on everything observable (the
requests before an error, the half-parsed request); where the fixture records different answers,
``test_replay`` pins each one exactly.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from asgi_worker.errors import RequestError
from asgi_worker.http.limits import RequestLimits
from tests.unit.corpus import CASES, CHUNKINGS, FIXTURES, PARSERS, Case, chunk, decode_http, replay_case

_VALID_KEYS = {"requests", "incomplete", "limits", "comment", "known"}
_INVALID_KEYS = {"status", "requests_before", "limits", "comment", "known"}
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
_LIMIT_NAMES = {field.name for field in dataclasses.fields(RequestLimits)}
_FIXTURE_NAME = re.compile(r"\d{3}-[a-z0-9][a-z0-9.-]*")


def summary(case: Case, parser_name: str, chunking: str) -> dict[str, Any]:
    """Everything observable, for comparing the two parsers (error status, not its wording)."""
    outcome = replay_case(case, parser_name, chunking)
    return {
        "requests": outcome.requests,
        "partial": outcome.partial,
        "error": None if outcome.error is None else outcome.error.status,
        "problems": outcome.problems,
    }


def answer_problems(answer: Any) -> list[str]:
    """What is wrong with ``answer`` as an answer in the corpus vocabulary (``[]`` when nothing)."""
    if not isinstance(answer, dict):
        return [f"{answer!r} is not an object"]
    if "status" in answer:
        return [] if set(answer) == {"status", "requests_before"} else [f"keys {sorted(answer)}"]
    if set(answer) not in ({"requests"}, {"requests", "incomplete"}):
        return [f"keys {sorted(answer)}"]
    incomplete = answer.get("incomplete")
    requests = [*answer["requests"], *([incomplete] if isinstance(incomplete, dict) else [])]
    problems = [f"request keys {list(request)}" for request in requests if list(request) != _REQUEST_KEYS]
    if "incomplete" in answer and not isinstance(incomplete, dict) and incomplete != "head":
        problems.append(f"incomplete is {incomplete!r}")
    return problems


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
    else:
        assert keys <= _INVALID_KEYS and {"status", "requests_before"} <= keys
        assert case.expect["status"] in {400, 413, 414, 431, 501, 505}
    assert answer_problems(case.rfc_answer()) == []
    assert "RFC" in case.expect.get("comment", ""), "a fixture names the RFC section it rests on"
    assert set(case.expect.get("limits", {})) <= _LIMIT_NAMES
    if "known" in case.expect:
        known = dict(case.known)
        assert known.pop("reason", None), "a known deviation says why"
        assert known and set(known) <= set(PARSERS), f"known names no parser, or an unknown one: {known}"
        for parser_name, answer in known.items():
            assert answer_problems(answer) == [], parser_name
            assert answer != case.rfc_answer(), f"{parser_name} gives the RFC answer: drop its known entry"


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
    outcome = replay_case(case, parser_name, chunking)
    assert outcome.problems == []
    assert outcome.answer() == case.answer(parser_name)


AGREED_CASES = [case for case in CASES if case.answer("httptools") == case.answer("h11")]


@pytest.mark.parametrize("case", AGREED_CASES, ids=[case.id for case in AGREED_CASES])
def test_parsers_agree(case: Case) -> None:
    results = {parser: {c: summary(case, parser, c) for c in CHUNKINGS} for parser in PARSERS}
    assert results["httptools"] == results["h11"]


REJECTIONS = [(case, parser) for case in CASES for parser in PARSERS if "status" in case.answer(parser)]


@pytest.mark.parametrize(
    ("case", "parser_name"), REJECTIONS, ids=[f"{case.id}-{parser}" for case, parser in REJECTIONS]
)
def test_feed_after_error_returns_nothing(case: Case, parser_name: str) -> None:
    parser = PARSERS[parser_name](case.limits)
    events = parser.feed(case.data)
    assert events and isinstance(events[-1], RequestError), f"no RequestError at the end of {events!r}"
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n") == []
    assert parser.feed(case.data) == []
    assert parser.feed(b"\x00garbage\r\n\r\n") == []
    assert parser.feed(b"") == []
