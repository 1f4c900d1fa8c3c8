"""The differential fuzz over real sockets, bounded for the suite: both parsers' servers, same answers.

The campaign (``python -m tests.fuzz.campaign --target server``, CONTRIBUTING.md "Fuzzing") runs this
for as long as you like; here a fixed, seeded slice of its inputs goes to two real server processes
(httptools and h11) over raw sockets. For every input: the same statuses and the same ending on both,
never a 500 from the server itself, never a connection left open past the servers' own timeouts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools

from tests.fuzz.campaign import _wire_case, wire_kinds
from tests.fuzz.inputs import fuzz_inputs
from tests.fuzz.wire import running

SEED = 20251205
INPUTS = 160
WORKERS = 8


def test_both_parsers_servers_answer_fuzzed_bytes_alike():
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(running("ours", http)) for http in ("httptools", "h11")]
        inputs = list(itertools.islice(fuzz_inputs(SEED), INPUTS))
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(lambda fuzz: _wire_case(servers, fuzz, SEED), inputs))
        for server in servers:
            assert server.alive(), server.output.text("stderr")[-2000:]
    problems = []
    for fuzz, exchanges in zip(inputs, results, strict=True):
        for kind in wire_kinds(exchanges, [("ours-httptools", "ours-h11")]):
            problems.append(f"{kind}: input {fuzz.number} {fuzz.data[:300]!r}")
    assert not problems, "\n".join(problems[:10])
