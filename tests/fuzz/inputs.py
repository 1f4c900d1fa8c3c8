"""The stream of fuzz inputs: corpus mutants, grammar-built requests, and mutants of those.

Everything comes from one ``random.Random`` seeded by the caller, so input number N of seed S is
the same bytes on every run and every machine (``FuzzInput.origin`` says how it was made).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from asgi_worker.http.limits import RequestLimits
from tests.fuzz.grammar import grammar_request
from tests.unit.corpus import CASES
from tests.unit.test_parser_mutations import MUTATIONS


@dataclass(frozen=True)
class FuzzInput:
    """One input: the bytes a client sends, the limits the parsers get, and how it was made."""

    number: int
    data: bytes
    limits: RequestLimits
    origin: str


def mutate(data: bytes, rng: random.Random, most: int = 3) -> tuple[bytes, list[str]]:
    """1 to ``most`` of the mutation test's operations applied in turn, with their descriptions."""
    steps = []
    for _ in range(rng.randint(1, most)):
        if not data:
            break
        data, step = rng.choice(MUTATIONS)(data, rng)
        steps.append(step)
    return data, steps


def fuzz_inputs(seed: int, start: int = 0) -> Iterator[FuzzInput]:
    """Endless inputs for ``seed``: 40% corpus mutants, 50% grammar requests, 10% mutated grammar ones.

    Input ``number`` depends only on ``seed`` and ``number`` (each has its own generator), so a run
    can resume at ``start`` and a finding replays from its number alone.
    """
    number = start
    while True:
        rng = random.Random(f"{seed}-{number}")
        roll = rng.random()
        if roll < 0.4:
            case = rng.choice(CASES)
            data, steps = mutate(case.data, rng)
            yield FuzzInput(number, data, case.limits, f"{case.id} mutated: {'; '.join(steps)}")
        else:
            data, limits, origin = grammar_request(rng)
            if roll > 0.9:
                data, steps = mutate(data, rng, most=1)
                origin += f"; mutated: {'; '.join(steps)}"
            yield FuzzInput(number, data, limits, origin)
        number += 1
