"""Findings written as corpus fixture pairs (``tests/unit/corpus.py``), one per kind, shortest input kept.

A finding's folder (``valid/`` or ``invalid/``) and RFC answer are a guess (``guess_rfc_answer``): a
refusal over acceptance, the answer given byte by byte over the one given to a whole read. Any
parser that answers otherwise goes under ``"known"``, so the pair replays as it is today (unless
the answers differ between chunkings). Whoever adopts it checks the guess against the rules,
renumbers and renames it (CONTRIBUTING.md, "Fuzzing").
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from asgi_worker.http.limits import RequestLimits
from tests.fuzz.differential import PARSER_NAMES, Finding, Result

_VISIBLE = {0x5C: "\\\\", 0x0D: "\\r", 0x0A: "\\n\n", 0x09: "\\t"}


def encode_http(data: bytes) -> str:
    """``data`` in the corpus's visible-escape format; a real newline after each LF, for reading."""
    text = "".join(
        _VISIBLE.get(byte, chr(byte) if 0x20 <= byte <= 0x7E else f"\\x{byte:02x}") for byte in data
    )
    return text if text.endswith("\n") else text + "\n"


def _as_answer(result: Result) -> dict[str, Any] | None:
    """A result as a corpus answer (contract problems dropped), or None for an exception."""
    if "exception" in result:
        return None
    return {key: value for key, value in result.items() if key != "problems"}


def guess_rfc_answer(finding: Finding) -> dict[str, Any] | None:
    """The likeliest RFC answer: a refusal before a complete answer, the fine chunking's before the whole's.

    Byte by byte, a parser has to decide at the first offending byte, which is what the rules ask;
    a whole read lets it see a later problem first. Refusals come first because most divergences
    are one parser letting through what the rules refuse.
    """
    answers = [
        answer
        for split in ("fine", "whole")
        for name in PARSER_NAMES
        if (answer := _as_answer(finding.results[name][split]))
    ]
    for wanted in ("status", "requests"):
        for answer in answers:
            if wanted in answer and "incomplete" not in answer:
                return answer
    return answers[0] if answers else None


def expectation(finding: Finding, note: str = "") -> tuple[str, dict[str, Any]]:
    """The folder and ``.json`` content for ``finding``, in the corpus format."""
    rfc = guess_rfc_answer(finding)
    doubts = []
    if rfc is None:
        rfc, doubts = {"status": 400, "requests_before": 0}, ["No parser gave an answer."]
    folder = "invalid" if "status" in rfc else "valid"
    if folder == "valid" and ("incomplete" in rfc or not rfc["requests"]):
        doubts.append("No parser read a complete request: a valid fixture needs one.")
        rfc = {"requests": rfc["requests"]}
    expect: dict[str, Any] = dict(rfc)
    limits = {
        field.name: getattr(finding.limits, field.name)
        for field in dataclasses.fields(RequestLimits)
        if getattr(finding.limits, field.name) != getattr(RequestLimits(), field.name)
    }
    if limits:
        expect["limits"] = limits
    if any(
        finding.results[name][split] != finding.results[name]["whole"]
        for name in PARSER_NAMES
        for split in finding.results[name]
    ):
        doubts.append("The answers differ across chunkings, which 'known' cannot record.")
    expect["comment"] = " ".join(
        [
            f"fuzz finding [{finding.kind}] ({finding.origin}).",
            note,
            "RFC answer guessed (a refusal first, byte-by-byte first): check it against the rules.",
            *doubts,
        ]
    ).replace("  ", " ")
    known: dict[str, Any] = {}
    for name in PARSER_NAMES:
        answer = _as_answer(finding.results[name]["whole"])
        if answer is not None and answer != rfc:
            known[name] = answer
    if known:
        expect["known"] = {"reason": f"fuzz finding: {finding.kind}", **known}
    return folder, expect


def slug(kind: str, width: int = 60) -> str:
    """A fixture name from a kind: "h11 1 request / ..." -> "h11-1-request-..."."""
    name = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
    if len(name) > width:  # cut at a word
        name = name[:width].rsplit("-", 1)[0]
    return name or "finding"


class FindingsDir:
    """A folder of findings, one fixture pair per kind, with ``index.json`` saying which is which.

    Layout: ``valid/`` and ``invalid/`` hold the pairs, ``reports/`` the same finding as text (input
    and every answer), ``index.json`` maps each kind to its fixture, input size and hit count. A kind
    seen again keeps its pair unless the new input is shorter. The index survives between
    campaigns, so a second run into the same folder adds only kinds it has not seen.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index_path = root / "index.json"
        self.index: dict[str, dict[str, Any]] = (
            json.loads(self.index_path.read_text()) if self.index_path.exists() else {}
        )
        self.new_kinds: list[str] = []
        self.hits = 0

    def add(self, finding: Finding, note: str = "") -> bool:
        """Record ``finding``; True if its kind is new to this folder."""
        self.hits += 1
        entry = self.index.get(finding.kind)
        is_new = entry is None
        if entry is None:
            entry = self.index[finding.kind] = {
                "name": f"{len(self.index) + 1:03d}-{slug(finding.kind)}",
                "hits": 0,
            }
            self.new_kinds.append(finding.kind)
        entry["hits"] += 1
        if not is_new and len(finding.data) >= entry["bytes"]:
            return False
        if not is_new:  # a shorter input of a known kind: rewrite its pair, maybe in the other folder
            (self.root / (entry["fixture"] + ".http")).unlink(missing_ok=True)
            (self.root / (entry["fixture"] + ".json")).unlink(missing_ok=True)
        folder, expect = expectation(finding, note)
        entry["fixture"] = f"{folder}/{entry['name']}"
        entry["bytes"] = len(finding.data)
        for sub in (folder, "reports"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        path = self.root / entry["fixture"]
        path.with_suffix(".http").write_text(encode_http(finding.data), "ascii")
        path.with_suffix(".json").write_text(json.dumps(expect, indent=2) + "\n", "ascii")
        report = finding.report() + (f"\n  {note}" if note else "") + "\n"
        (self.root / "reports" / f"{entry['name']}.txt").write_text(report, "utf-8")
        self.save()
        return is_new

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_path.write_text(json.dumps(self.index, indent=2, sort_keys=True) + "\n")
