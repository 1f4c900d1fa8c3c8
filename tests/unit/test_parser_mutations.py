"""Seeded mutation test: untrusted bytes have a closed set of outcomes (ARCHITECTURE.md, "Untrusted input").

Every corpus fixture is mutated ``MUTANTS_PER_FIXTURE`` times (flip or replace a byte, truncate,
duplicate, delete or swap slices, insert CR, LF, NUL, SP, HTAB, ':' or CRLF), and each mutant is fed
to both parsers whole and in seeded random chunks. Whatever the bytes, ``feed`` must return a list
of ``RequestHead``, ``BodyChunk``, ``REQUEST_END`` and at most one ``RequestError`` (last, and
``[]`` ever after), events must follow ``(head body* end)*``, and nothing may raise. Which answer a
mutant gets is not checked here: the corpus replay pins answers. Nor is whether a head changes after
``feed`` returned it: only trailer fields do that, and ``valid/013-chunked-trailers`` pins it.

Everything is driven by stdlib ``random`` with fixed seeds, so a failure names its fixture, mutant
number and operations, and replays identically.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.unit.corpus import CASES, PARSERS, Case, StreamChecker, random_split

MUTANTS_PER_FIXTURE = 30
SEED = 20240917

_INSERTS = (b"\r", b"\n", b"\x00", b" ", b"\t", b":", b"\r\n")

Mutation = Callable[[bytes, random.Random], tuple[bytes, str]]


def _position(data: bytes, rng: random.Random) -> int:
    return rng.randint(0, len(data))


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i = rng.randrange(len(data))
    bit = 1 << rng.randrange(8)
    return data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :], f"flip bit {bit:#x} at {i}"


def _replace(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i = rng.randrange(len(data))
    byte = rng.randrange(256)
    return data[:i] + bytes([byte]) + data[i + 1 :], f"byte {byte:#04x} at {i}"


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i = rng.randrange(len(data))
    return data[:i], f"truncate at {i}"


def _duplicate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i, j = sorted((_position(data, rng), _position(data, rng)))
    return data[:j] + data[i:j] + data[j:], f"duplicate [{i}:{j}]"


def _delete(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i, j = sorted((_position(data, rng), _position(data, rng)))
    return data[:i] + data[j:], f"delete [{i}:{j}]"


def _insert(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i = _position(data, rng)
    extra = rng.choice(_INSERTS)
    return data[:i] + extra + data[i:], f"insert {extra!r} at {i}"


def _swap(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    a, b, c, d = sorted(_position(data, rng) for _ in range(4))
    return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:], f"swap [{a}:{b}] and [{c}:{d}]"


MUTATIONS: tuple[Mutation, ...] = (_flip, _replace, _truncate, _duplicate, _delete, _insert, _insert, _swap)


def mutants(case: Case) -> list[tuple[bytes, str]]:
    """The seeded mutants of one fixture: 1 to 3 mutations each, with a description of what changed."""
    rng = random.Random(f"{SEED}-{case.id}")
    result = []
    for _ in range(MUTANTS_PER_FIXTURE):
        data, steps = case.data, []
        for _ in range(rng.choice((1, 1, 2, 3))):
            if not data:
                break
            data, step = rng.choice(MUTATIONS)(data, rng)
            steps.append(step)
        result.append((data, "; ".join(steps)))
    return result


def check_stream(parser_name: str, chunks: list[bytes], case: Case) -> list[str]:
    """Feed ``chunks`` and return every contract breach, including an exception escaping ``feed``."""
    checker = StreamChecker(PARSERS[parser_name], case.limits)
    try:
        for piece in chunks:
            checker.feed(piece)
        outcome = checker.finish(check_heads=False)
    except Exception as exc:  # anything escaping feed is the bug this test exists to find
        return [f"feed raised {exc!r}"]
    return outcome.problems


def test_mutations_are_seeded() -> None:
    assert mutants(CASES[0]) == mutants(CASES[0])
    assert len({data for data, _ in mutants(CASES[0])}) > MUTANTS_PER_FIXTURE // 2


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_mutants_have_closed_outcomes(case: Case) -> None:
    failures = []
    for number, (data, steps) in enumerate(mutants(case)):
        splits = {"whole": [data], "random": random_split(data, f"{SEED}-{case.id}-{number}", max_cuts=12)}
        for parser_name in PARSERS:
            for split_name, chunks in splits.items():
                for problem in check_stream(parser_name, chunks, case):
                    failures.append(
                        f"mutant {number} ({steps}) {parser_name} {split_name}: {problem}; bytes {data!r}"
                    )
    assert not failures, "\n".join(failures[:10])
