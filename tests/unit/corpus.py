"""The HTTP request corpus and its replay machinery, shared by the corpus replay and the mutation test.

Corpus: ``tests/fixtures/http/{valid,invalid}/NNN-name.http`` with an ``NNN-name.json`` expectation.
The ``.http`` file is ASCII text with visible escapes: real newlines are ignored (lay a request out
one line per header), ``\\r`` ``\\n`` ``\\t`` are CR, LF and HTAB, ``\\xNN`` is one raw byte and
``\\\\`` a backslash. Any other backslash, and any real control or non-ASCII character, is an error.

An *answer* is what a parser makes of a whole byte stream, in one of three shapes:

- ``{"status": 400, "requests_before": 0}``: the error that ends the stream, after that many
  complete requests (pipelining);
- ``{"requests": [...]}``: exactly these complete requests, each as its head fields plus the
  de-chunked ``body`` (latin-1 text), and nothing left half-parsed;
- ``{"requests": [...], "incomplete": ...}``: these complete requests, then the parser waits for
  more bytes; ``incomplete`` is the request as far as it got (its body so far), or ``"head"`` when
  the next head is not complete yet.

The ``.json`` file holds the RFC answer: ``{"requests": [...]}`` under ``valid/`` (plus
``"incomplete"`` for a stream that stops inside a request, e.g. a cut-off body),
``{"status": ..., "requests_before": ...}`` under ``invalid/``. Optional keys: ``"limits"``
(RequestLimits fields for this fixture), ``"comment"`` (why; RFC section) and ``"known"``, which
records, exactly, a parser that answers otherwise today (the parsers disagree, or both deviate
from the RFC):

    "known": {"reason": "why", "h11": {"status": 501, "requests_before": 0}}

Only the deviating parsers are named, each with the answer it gives in every chunking, and that
answer must differ from the RFC one. Fixing the deviation changes the answer, so the replay fails
until the entry is deleted: a divergence can neither hide nor outlive its fix.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgi_worker.errors import RequestError
from asgi_worker.http.events import BodyChunk, RequestEnd, RequestHead
from asgi_worker.http.limits import RequestLimits
from asgi_worker.http.parse_h11 import H11Parser
from asgi_worker.http.parse_httptools import HttptoolsParser

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "http"

PARSERS: dict[str, type[HttptoolsParser] | type[H11Parser]] = {
    "httptools": HttptoolsParser,
    "h11": H11Parser,
}

CHUNKINGS = ("whole", "bylines", "bybyte", "random1", "random2", "random3")

# ---------------------------------------------------------------------------------------------------
# Corpus loading

_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.?)", re.DOTALL)
_SIMPLE_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}


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
    """One fixture: its bytes, its RFC answer and the answers some parsers give instead today."""

    id: str  # "valid/012-chunked-extensions"
    valid: bool
    data: bytes
    expect: dict[str, Any]
    limits: RequestLimits

    @property
    def known(self) -> dict[str, Any]:
        """The recorded deviations: parser name -> answer, plus ``"reason"``; ``{}`` when none."""
        return self.expect.get("known", {})  # type: ignore[no-any-return]

    def rfc_answer(self) -> dict[str, Any]:
        """The answer the RFC asks for (the fixture's ``requests``, or its ``status``)."""
        if self.valid:
            if "incomplete" in self.expect:
                return {"requests": self.expect["requests"], "incomplete": self.expect["incomplete"]}
            return {"requests": self.expect["requests"]}
        return {"status": self.expect["status"], "requests_before": self.expect["requests_before"]}

    def answer(self, parser_name: str) -> dict[str, Any]:
        """The exact answer ``parser_name`` must give: its recorded deviation, else the RFC answer."""
        recorded = self.known.get(parser_name)
        return self.rfc_answer() if recorded is None else recorded  # type: ignore[no-any-return]


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
                    limits=RequestLimits(**expect.get("limits", {})),
                )
            )
    return cases


CASES = load_cases()

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

    def answer(self) -> dict[str, Any]:
        """The outcome as an answer (module docstring): comparable with ``Case.answer``."""
        if self.error is not None:
            return {"status": self.error.status, "requests_before": len(self.requests)}
        if self.partial is not None:
            return {"requests": self.requests, "incomplete": self.partial}
        if self.in_head:
            return {"requests": self.requests, "incomplete": "head"}
        return {"requests": self.requests}


class StreamChecker:
    """Feeds chunks to one parser and checks the contract of every ``feed`` call.

    The contract (parse_httptools.py, parse_h11.py, events.py): ``feed`` returns a list of
    ``RequestHead``, ``BodyChunk``, ``REQUEST_END`` and at most one ``RequestError``, which comes
    last; after it every ``feed`` returns ``[]``. Events follow ``(head body* end)*``, body chunks
    are non-empty bytes, and a head does not change once returned.
    """

    def __init__(self, parser_cls: type[HttptoolsParser] | type[H11Parser], limits: RequestLimits) -> None:
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


def replay(parser_name: str, chunks: list[bytes], limits: RequestLimits) -> Outcome:
    """Feed ``chunks`` in order to a fresh parser and return what came out."""
    checker = StreamChecker(PARSERS[parser_name], limits)
    for piece in chunks:
        checker.feed(piece)
    return checker.finish()


def replay_case(case: Case, parser_name: str, chunking: str) -> Outcome:
    """One fixture under one parser and one chunking."""
    return replay(parser_name, chunk(case.data, chunking, case.id), case.limits)
