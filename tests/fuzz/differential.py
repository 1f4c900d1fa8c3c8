"""Feed one input to both parser adapters in three chunkings and name what differs.

An input passes when both parsers give the same answer (``tests/unit/corpus.py``: the status and
the requests before it, or the same requests and the same unfinished state), each gives it in every
chunking, nothing raises and the feed contract holds (``StreamChecker``). Otherwise it is a finding,
and its *kind* is a short sentence built from the answers' shapes ("httptools 400 after 0 / h11 1
request"): inputs of one kind are one divergence, so findings are counted and kept per kind.

The chunkings (whole, a coarse and a fine random split) are seeded by the input's own bytes, so a
finding replays from its bytes alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from asgi_worker.http.limits import RequestLimits
from tests.unit.corpus import PARSERS, random_split, replay

PARSER_NAMES = tuple(PARSERS)
SPLITS = ("whole", "coarse", "fine")

Result = dict[str, Any]  # an answer (corpus vocabulary), or {"exception": ...}; plus "problems" if any


def chunkings(data: bytes) -> dict[str, list[bytes]]:
    """Whole, up to 12 cuts, and cuts almost everywhere: seeded by the bytes themselves."""
    seed = hashlib.blake2b(data, digest_size=8).hexdigest()
    return {
        "whole": [data],
        "coarse": random_split(data, f"{seed}-coarse", max_cuts=12),
        "fine": random_split(data, f"{seed}-fine", max_cuts=max(len(data) - 1, 1)),
    }


def run(parser_name: str, chunks: list[bytes], limits: RequestLimits) -> Result:
    """The parser's answer to ``chunks``, with any contract problems; an exception is a result too."""
    try:
        outcome = replay(parser_name, chunks, limits)
    except Exception as exc:  # anything escaping feed is a finding, not a crash of the fuzzer
        return {"exception": f"{type(exc).__name__}: {exc}"}
    result = outcome.answer()
    if outcome.problems:
        result["problems"] = outcome.problems
    return result


def shape(result: Result) -> str:
    """An answer in a few words: "400 after 1", "2 requests + head", "raises KeyError"."""
    if "exception" in result:
        return "raises " + str(result["exception"]).split(":")[0]
    if "status" in result:
        return f"{result['status']} after {result['requests_before']}"
    count = len(result["requests"])
    text = f"{count} request{'s' if count != 1 else ''}"
    incomplete = result.get("incomplete")
    if incomplete is not None:
        text += " + head" if incomplete == "head" else " + body"
    return text


def _content_difference(a: Result, b: Result) -> str:
    """Where two answers of the same shape differ: "request 0 target, headers"."""
    requests_a = [*a.get("requests", ()), a.get("incomplete")]
    requests_b = [*b.get("requests", ()), b.get("incomplete")]
    for index, (one, other) in enumerate(zip(requests_a, requests_b, strict=False)):
        if one != other:
            if isinstance(one, dict) and isinstance(other, dict):
                keys = [key for key in one if one.get(key) != other.get(key)]
                return f"request {index} {', '.join(keys)}"
            return f"request {index}"
    return "problems" if a.get("problems") != b.get("problems") else "content"


def _problem_kind(problem: str) -> str:
    """A contract problem without its particulars (reprs, numbers), so repeats count as one kind."""
    return re.sub(r"\d+", "N", re.split(r"[(\[{:]", problem, maxsplit=1)[0]).strip()


def classify(results: dict[str, dict[str, Result]]) -> str | None:
    """The kind of finding ``results`` (parser -> chunking -> result) is, or None when all is well."""
    for name in PARSER_NAMES:
        for split in SPLITS:
            result = results[name][split]
            if "exception" in result:
                return f"{name} {shape(result)}"
            if result.get("problems"):
                return f"{name} breaks the feed contract: {_problem_kind(result['problems'][0])}"
    first, second = (results[name]["whole"] for name in PARSER_NAMES)
    if first != second:
        kind = f"{PARSER_NAMES[0]} {shape(first)} / {PARSER_NAMES[1]} {shape(second)}"
        return kind if shape(first) != shape(second) else f"{kind}: {_content_difference(first, second)}"
    deviations: dict[str, str] = {}
    for name in PARSER_NAMES:
        whole = results[name]["whole"]
        for split in SPLITS[1:]:
            other = results[name][split]
            if other != whole:
                kind = f"{shape(whole)} whole / {shape(other)} {split}"
                if shape(whole) == shape(other):
                    kind += f": {_content_difference(whole, other)}"
                deviations.setdefault(name, kind)
    if deviations:
        kinds = set(deviations.values())
        name, kind = next(iter(deviations.items()))
        return (
            f"both parsers {kind}"
            if len(deviations) == len(PARSER_NAMES) and len(kinds) == 1
            else f"{name} {kind}"
        )
    return None


@dataclass(frozen=True)
class Finding:
    """An input whose answers differ, with every answer and the kind of the difference."""

    data: bytes
    limits: RequestLimits
    origin: str
    results: dict[str, dict[str, Result]]
    kind: str

    def report(self, width: int = 700) -> str:
        """The input (repr) and both parsers' answers, ready to become a corpus case."""
        lines = [
            f"[{self.kind}]",
            f"  input ({len(self.data)} bytes; {self.origin}):",
            f"    {bytes_expr(self.data)}",
        ]
        if self.limits != RequestLimits():
            lines.append(f"  limits: {self.limits}")
        for name in PARSER_NAMES:
            whole = self.results[name]["whole"]
            lines.append(f"  {name}: {_clip(json.dumps(whole), width)}")
            for split in SPLITS[1:]:
                if self.results[name][split] != whole:
                    cuts = list(itertools.accumulate(len(piece) for piece in chunkings(self.data)[split]))[
                        :-1
                    ]
                    lines.append(f"    {split} split, cut at {_clip(repr(cuts), 160)}:")
                    lines.append(f"      {_clip(json.dumps(self.results[name][split]), width)}")
        return "\n".join(lines)


def bytes_expr(data: bytes, run: int = 16) -> str:
    """``data`` as a Python expression; byte runs as ``b'a' * 8190``, so long inputs stay readable."""
    parts, literal = [], b""
    for byte, group in itertools.groupby(data):
        count = len(list(group))
        if count < run:
            literal += bytes([byte]) * count
            continue
        if literal:
            parts.append(repr(literal))
            literal = b""
        parts.append(f"{bytes([byte])!r} * {count}")
    if literal:
        parts.append(repr(literal))
    return " + ".join(parts) or "b''"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width] + f"... ({len(text)} chars)"


def results_of(data: bytes, limits: RequestLimits) -> dict[str, dict[str, Result]]:
    """Every parser's result in every chunking."""
    splits = chunkings(data)
    return {name: {split: run(name, splits[split], limits) for split in SPLITS} for name in PARSER_NAMES}


def examine(data: bytes, limits: RequestLimits, origin: str = "") -> Finding | None:
    """The finding ``data`` makes, or None when both parsers agree everywhere."""
    results = results_of(data, limits)
    kind = classify(results)
    return None if kind is None else Finding(data, limits, origin, results, kind)


def minimize(finding: Finding, budget: int = 400, seconds: float = 2.0) -> Finding:
    """A shorter input of the same kind: drop ever smaller slices while the kind stays.

    Bounded by ``budget`` tries and ``seconds`` (a long input's fine chunking is slow to replay).
    """
    deadline = time.monotonic() + seconds
    best = finding
    size = max(len(best.data) // 2, 1)
    while budget > 0:
        start, shrunk = 0, False
        while start < len(best.data) and budget > 0:
            candidate = best.data[:start] + best.data[start + size :]
            budget = budget - 1 if time.monotonic() < deadline else 0
            found = examine(candidate, best.limits, best.origin) if candidate else None
            if found is not None and found.kind == best.kind:
                best, shrunk = found, True
            else:
                start += size
        if size == 1 and not shrunk:
            break
        size = max(size // 2, 1) if not shrunk else size
    if best is not finding:
        best = Finding(
            best.data,
            best.limits,
            f"minimized from {len(finding.data)} bytes, {finding.origin}",
            best.results,
            best.kind,
        )
    return best
