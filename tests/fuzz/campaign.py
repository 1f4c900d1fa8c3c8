"""The fuzz campaign: ``python -m tests.fuzz.campaign --minutes N --seed S [--target ...] [--http ...]``.

Targets (CONTRIBUTING.md, "Fuzzing"):

- ``parsers``: the differential of ``tests/unit/test_parser_differential.py`` in process, unbounded:
  every input to both parser adapters in three chunkings; each new kind of finding is shrunk.
- ``server``: ``python -m asgi_worker`` serving ``tests/fuzz/echo_app.py``, once per ``--http``
  choice; each input goes over a raw socket to every server, and the httptools and h11 servers
  must answer alike (statuses, echoes, how the connection ended).
- ``gunicorn``: the same under ``gunicorn -k asgi_worker.Worker`` / ``H11Worker``, each compared with
  our own server on the same parser.

On the wire, any 500, any hang (no close within the server's timeouts plus a margin after our EOF)
and a server's resident memory growing more than ``RSS_GROWTH`` are findings too. Findings go to
``--findings`` (one fixture pair per kind, see ``findings.py``); the summary at the end, also after
Ctrl-C, says how many cases ran, what was found and where it was written. Servers are killed with
their children on every way out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from asgi_worker.http.limits import RequestLimits
from tests.fuzz.differential import Finding, examine, minimize, results_of
from tests.fuzz.findings import FindingsDir
from tests.fuzz.inputs import FuzzInput, fuzz_inputs
from tests.fuzz.wire import Exchange, Server, exchange, running

PARSERS = ("httptools", "h11")
PROGRESS_EVERY = 10.0  # seconds between progress lines
RSS_EVERY = 5.0  # seconds between memory samples of the servers
RSS_GROWTH = 64 << 20  # more growth than this from the first sample to the last is a finding
HALF_CLOSE_SHARE = 0.8  # of wire cases that send EOF at once (the rest wait for the server's timeouts)
WARMUP = 20  # wire cases before the first memory sample


class Campaign:
    """Counts and findings of one run, printed as progress lines and a summary."""

    def __init__(self, target: str, seed: int, findings: FindingsDir) -> None:
        self.target = target
        self.seed = seed
        self.findings = findings
        self.started = time.monotonic()
        self.cases = 0
        self.per_server: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.rss: dict[str, list[int]] = {}
        self.interrupted = False
        self._last_progress = self.started

    def record(self, finding: Finding, note: str = "") -> None:
        self.kinds[finding.kind] += 1
        if self.findings.add(finding, note):
            print(f"  new finding: {finding.kind}", flush=True)

    def progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            elapsed = now - self.started
            print(
                f"{elapsed:6.0f} s  {self.cases} cases ({self.cases / elapsed:.1f}/s)  "
                f"{sum(self.kinds.values())} findings, {len(self.kinds)} kinds",
                flush=True,
            )

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        lines = [
            f"campaign {self.target}, seed {self.seed}: {elapsed:.0f} s"
            + (" (interrupted)" if self.interrupted else ""),
            f"cases run: {self.cases} ({self.cases / max(elapsed, 1e-9):.1f}/s)",
        ]
        if self.per_server:
            lines.append(
                "per server: " + ", ".join(f"{name} {n}" for name, n in sorted(self.per_server.items()))
            )
        for name, samples in sorted(self.rss.items()):
            if samples:
                mib = [s / (1 << 20) for s in samples]
                lines.append(f"rss {name}: {mib[0]:.1f} -> {mib[-1]:.1f} MiB (peak {max(mib):.1f})")
        new = len(self.findings.new_kinds)
        lines.append(
            f"findings: {sum(self.kinds.values())} hits, {len(self.kinds)} kinds ({new} new to the folder), "
            f"written to {self.findings.root}"
        )
        lines += [f"  {count:6d} x {kind}" for kind, count in self.kinds.most_common()]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# parsers


def parsers_campaign(campaign: Campaign, deadline: float) -> None:
    for fuzz in fuzz_inputs(campaign.seed):
        if time.monotonic() >= deadline:
            return
        campaign.cases += 1
        finding = examine(fuzz.data, fuzz.limits, f"seed {campaign.seed} input {fuzz.number}, {fuzz.origin}")
        if finding is not None:
            known = campaign.findings.index.get(finding.kind)
            if known is None or len(finding.data) < known["bytes"]:
                finding = minimize(finding)
            campaign.record(finding)
        campaign.progress()


# ---------------------------------------------------------------------------------------------------
# server, gunicorn


def _wire_case(servers: list[Server], fuzz: FuzzInput, seed: int) -> dict[str, Exchange]:
    half_close = random.Random(f"{seed}-{fuzz.number}-wire").random() < HALF_CLOSE_SHARE
    return {server.name: exchange(server.port, fuzz.data, half_close) for server in servers}


def wire_kinds(exchanges: dict[str, Exchange], pairs: list[tuple[str, str]]) -> list[str]:
    """What is wrong with one case's exchanges: 500s, hangs, and pairs of servers that disagree."""
    kinds = []
    for name, seen in exchanges.items():
        if any(response.startswith("500") for response in seen.responses):
            kinds.append(f"{name} answers 500")
        if seen.ending in ("hung", "refused"):
            kinds.append(f"{name} {seen.ending}")
    for one, other in pairs:
        a, b = exchanges[one], exchanges[other]
        if a.shape() != b.shape():
            kinds.append(f"{one} {a.shape()} / {other} {b.shape()}")
        elif a.responses != b.responses:
            kinds.append(f"{one} / {other}: same statuses, different echoes ({a.shape()})")
    return kinds


def _sample_rss(campaign: Campaign, servers: list[Server]) -> None:
    for server in servers:
        campaign.rss.setdefault(server.name, []).append(server.rss())


def wire_campaign(campaign: Campaign, deadline: float, https: list[str], workers: int) -> None:
    kinds_of_servers = ["ours"] if campaign.target == "server" else ["gunicorn", "ours"]
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(running(kind, http)) for kind in kinds_of_servers for http in https]
        print(
            "servers: " + ", ".join(f"{s.name} (pid {s.proc.pid}, port {s.port})" for s in servers),
            flush=True,
        )
        deadline += time.monotonic() - campaign.started  # the minutes are for fuzzing, not for starting
        campaign.started = time.monotonic()
        if campaign.target == "server":
            pairs = [("ours-httptools", "ours-h11")] if len(https) == 2 else []
        else:
            pairs = [(f"gunicorn-{http}", f"ours-{http}") for http in https]
        inputs = fuzz_inputs(campaign.seed)
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fuzz-wire")
        pending: dict[concurrent.futures.Future[dict[str, Exchange]], FuzzInput] = {}
        last_rss = 0.0
        try:
            while True:
                while len(pending) < 2 * workers and time.monotonic() < deadline:
                    fuzz = next(inputs)
                    pending[pool.submit(_wire_case, servers, fuzz, campaign.seed)] = fuzz
                if not pending:
                    break
                done, _ = concurrent.futures.wait(pending, timeout=1, return_when="FIRST_COMPLETED")
                for future in done:
                    fuzz = pending.pop(future)
                    _wire_result(campaign, fuzz, future.result(), pairs)
                if campaign.cases >= WARMUP and time.monotonic() - last_rss >= RSS_EVERY:
                    last_rss = time.monotonic()
                    _sample_rss(campaign, servers)
                for server in servers:
                    if not server.alive():
                        raise RuntimeError(f"{server.name} died:\n{server.output.text('stderr')[-2000:]}")
                campaign.progress()
            _sample_rss(campaign, servers)
            for name, samples in campaign.rss.items():
                if samples and samples[-1] - samples[0] > RSS_GROWTH:
                    campaign.kinds[f"{name} rss grew {(samples[-1] - samples[0]) >> 20} MiB"] += 1
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _wire_result(
    campaign: Campaign, fuzz: FuzzInput, exchanges: dict[str, Exchange], pairs: list[tuple[str, str]]
) -> None:
    campaign.cases += 1
    for name in exchanges:
        campaign.per_server[name] += 1
    kinds = wire_kinds(exchanges, pairs)
    if not kinds:
        return
    note = "wire: " + "; ".join(f"{name}: {seen.responses} {seen.ending}" for name, seen in exchanges.items())
    results = results_of(fuzz.data, RequestLimits())  # the servers run with the default limits
    origin = f"seed {campaign.seed} input {fuzz.number}, {fuzz.origin}"
    for kind in kinds:
        campaign.record(Finding(fuzz.data, RequestLimits(), origin, results, kind), note)


# ---------------------------------------------------------------------------------------------------
# command


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.campaign", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long to run")
    parser.add_argument(
        "--seed", type=int, required=True, help="input N of seed S is the same bytes everywhere"
    )
    parser.add_argument("--target", choices=("parsers", "server", "gunicorn"), default="parsers")
    parser.add_argument("--http", choices=PARSERS, help="one parser only (server, gunicorn); default both")
    parser.add_argument(
        "--findings",
        type=Path,
        default=Path(tempfile.gettempdir()) / "asgi-worker-fuzz",
        help="folder for findings; each target writes into its own subfolder (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=16, help="concurrent connections (server, gunicorn)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C: servers stopped, summary printed."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    findings = FindingsDir(args.findings / args.target)
    campaign = Campaign(args.target, args.seed, findings)
    deadline = campaign.started + args.minutes * 60
    https = [args.http] if args.http else list(PARSERS)
    with _sigterm_interrupts():
        try:
            if args.target == "parsers":
                parsers_campaign(campaign, deadline)
            else:
                wire_campaign(campaign, deadline, https, args.workers)
        except KeyboardInterrupt:
            campaign.interrupted = True
        finally:
            findings.save()
            print(campaign.summary(), flush=True)
    return 1 if campaign.kinds else 0


if __name__ == "__main__":
    sys.exit(main())
