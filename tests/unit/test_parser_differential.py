"""Seeded differential fuzzing of the two parser adapters, bounded for the suite (issue 12).

``INPUTS`` inputs from ``tests/fuzz/inputs.py`` (corpus mutants and grammar-built requests that sit
on the edges of the strict reading), each fed to both parsers whole and in two seeded random
chunkings: both parsers must give the same answer, in every chunking, without raising and within
the feed contract (``tests/fuzz/differential.py`` says how a difference is named). A failure lists
up to ``SHOWN`` distinct kinds, each with its input shrunk, as bytes and both answers, ready to
become a corpus case (CONTRIBUTING.md, "Fuzzing"). The long, unbounded run is
``python -m tests.fuzz.campaign``.

The memory checks feed streams that never end (a head, a chunk-size line, trailers, 1 MiB of
random bytes) and require a refusal within the head budget and a tracemalloc peak of about the
budget plus one read, whichever parser reads them.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from asgi_worker.errors import RequestError
from asgi_worker.http.limits import RequestLimits
from tests.fuzz.differential import PARSER_NAMES, Finding, Result, chunkings, examine, minimize
from tests.fuzz.findings import FindingsDir, encode_http
from tests.fuzz.inputs import fuzz_inputs
from tests.unit.corpus import PARSERS, decode_http
from tests.unit.test_parsers import answer_problems

SEED = 20250112
INPUTS = 3000  # about 10 s on the development machine
SHOWN = 10
SHRINK_TRIES = 300  # per shown finding
SHRINK_SECONDS = 1.0


def test_inputs_and_chunkings_are_seeded() -> None:
    first = [(i.data, i.limits) for i in itertools.islice(fuzz_inputs(SEED), 50)]
    again = [(i.data, i.limits) for i in itertools.islice(fuzz_inputs(SEED), 50)]
    assert first == again
    assert len({data for data, _ in first}) > 45
    resumed = next(fuzz_inputs(SEED, start=30))
    assert resumed.data == first[30][0]
    data = first[0][0]
    assert chunkings(data) == chunkings(data)
    assert all(b"".join(pieces) == data for pieces in chunkings(data).values())


def test_parsers_agree_on_fuzzed_inputs() -> None:
    kinds: collections.Counter[str] = collections.Counter()
    shortest: dict[str, Finding] = {}
    for fuzz in itertools.islice(fuzz_inputs(SEED), INPUTS):
        finding = examine(fuzz.data, fuzz.limits, f"seed {SEED} input {fuzz.number}, {fuzz.origin}")
        if finding is None:
            continue
        kinds[finding.kind] += 1
        if finding.kind not in shortest or len(finding.data) < len(shortest[finding.kind].data):
            shortest[finding.kind] = finding
    if not kinds:
        return
    shown = [minimize(shortest[kind], SHRINK_TRIES, SHRINK_SECONDS) for kind, _ in kinds.most_common(SHOWN)]
    summary = "\n".join(f"  {count:5d} x {kind}" for kind, count in kinds.most_common())
    details = "\n\n".join(finding.report() for finding in shown)
    pytest.fail(
        f"{sum(kinds.values())} of {INPUTS} inputs diverge, {len(kinds)} kinds:\n{summary}\n\n"
        f"The first {len(shown)} kinds, shortest input shrunk:\n\n{details}",
        pytrace=False,
    )


def test_a_finding_becomes_a_fixture_pair(tmp_path: Path) -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n\\\x00\xff"
    results: dict[str, dict[str, Result]] = {
        "httptools": {split: {"status": 400, "requests_before": 0} for split in ("whole", "coarse", "fine")},
        "h11": {split: {"requests": [], "incomplete": "head"} for split in ("whole", "coarse", "fine")},
    }
    kind = "httptools 400 after 0 / h11 0 requests + head"
    folder = FindingsDir(tmp_path)
    assert folder.add(Finding(data, RequestLimits(head=300), "test", results, kind))
    assert not folder.add(Finding(data + b"x", RequestLimits(head=300), "test", results, kind))
    path = tmp_path / folder.index[kind]["fixture"]
    assert path.parent.name == "invalid"
    assert decode_http(path.with_suffix(".http").read_text("ascii")) == data
    expect = json.loads(path.with_suffix(".json").read_text("ascii"))
    assert set(expect) == {"status", "requests_before", "limits", "comment", "known"}
    assert (expect["status"], expect["requests_before"], expect["limits"]) == (400, 0, {"head": 300})
    assert expect["known"]["h11"] == {"requests": [], "incomplete": "head"}
    assert answer_problems(expect["known"]["h11"]) == []
    assert decode_http(encode_http(bytes(range(256)))) == bytes(range(256))


# ---------------------------------------------------------------------------------------------------
# Memory: streams that never end are refused within the head budget, holding about that much.

BUDGET = RequestLimits().head
READ = 4096  # the largest read fed at once
SLACK = 16384  # parser objects, event lists, allocator rounding
_HEAD = b"POST / HTTP/1.1\r\nHost: example.com\r\n"
_CHUNKED = _HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


@dataclass(frozen=True)
class Endless:
    """A stream: ``start`` then ``unit`` repeated up to 1 MiB; must it be refused (else only bounded)?"""

    start: bytes
    unit: bytes
    refused: bool = True


STREAMS = {
    "random-bytes": Endless(b"", b""),
    "request-line": Endless(b"GET /", b"a"),
    "field-value": Endless(_HEAD + b"X-Long: ", b"a"),
    "many-fields": Endless(_HEAD, b"X-Many: v\r\n"),
    "obs-text-value": Endless(_HEAD + b"X-Long: ", b"\x80\xff"),
    "chunk-size-zeros": Endless(_CHUNKED, b"0"),
    "chunk-extension": Endless(_CHUNKED + b"1;ext=", b"v"),
    "chunk-extension-bws": Endless(_CHUNKED + b"1", b" "),
    "trailer-fields": Endless(_CHUNKED + b"0\r\n", b"X-T: v\r\n"),
    "trailer-value": Endless(_CHUNKED + b"0\r\nX-T: ", b"v"),
    "empty-lines": Endless(b"", b"\r\n", refused=False),
}
MIB = 1 << 20


def stream_bytes(stream: Endless) -> bytes:
    if not stream.unit:
        return random.Random(SEED).randbytes(MIB)
    return stream.start + stream.unit * ((MIB - len(stream.start)) // len(stream.unit))


@pytest.mark.parametrize("parser_name", PARSER_NAMES)
@pytest.mark.parametrize("name", list(STREAMS))
def test_endless_input_is_refused_within_the_head_budget(parser_name: str, name: str) -> None:
    stream = STREAMS[name]
    data = stream_bytes(stream)
    reads = random.Random(f"{SEED}-{name}")
    parser = PARSERS[parser_name](RequestLimits())
    view = memoryview(data)
    fed, refused_at = 0, None
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        while fed < len(data) and refused_at is None:
            size = reads.randint(1, READ)
            events = parser.feed(bytes(view[fed : fed + size]))
            fed += size
            if events and isinstance(events[-1], RequestError):
                refused_at = fed
            del events
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    if stream.refused:
        assert refused_at is not None, f"{parser_name} took 1 MiB of {name} without refusing it"
        assert refused_at <= len(stream.start) + BUDGET + READ, f"refused only after {refused_at} bytes"
    assert peak <= BUDGET + READ + SLACK, f"{parser_name} held {peak} bytes for {name} (budget {BUDGET})"
