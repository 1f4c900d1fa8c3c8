"""Reduce samples to medians and write them as a terminal table and as results.md.

Medians, not means: one run disturbed by the machine's other work must not move the result. The
markdown file carries the context (versions, CPU, command) without which a number means nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from load import Sample
from spec import CLIENT_CPU, COMMON_FLAGS, LOG_PASSES, SERVER_CPU, WARMUP_SECONDS, LogPass, Scenario

HEADERS = (
    "log",
    "scenario",
    "ours req/s",
    "uvicorn req/s",
    "req/s ratio",
    "ours p99 ms",
    "uvicorn p99 ms",
    "p99 ratio",
)


@dataclass(frozen=True)
class Row:
    """One line of the results table: medians per server for a scenario under one log pass."""

    log_pass: str
    scenario: str
    rps: dict[str, float]
    p99: dict[str, float]
    errors: list[str]
    rps_ratio: float | None = None
    p99_ratio: float | None = None


def summarize(log_pass: LogPass, scenario: Scenario, samples: dict[str, list[Sample]]) -> Row:
    """Reduce the runs to medians; keep any wrk failures so the table can flag them."""
    errors = [f"{name}: {s.errors}" for name, runs in samples.items() for s in runs if s.errors]
    return Row(
        log_pass.name,
        scenario.name,
        {name: statistics.median(s.rps for s in runs) for name, runs in samples.items()},
        {name: statistics.median(s.p99_ms for s in runs) for name, runs in samples.items()},
        errors,
        pair_ratio(samples, "rps"),
        pair_ratio(samples, "p99_ms"),
    )


def pair_ratio(samples: dict[str, list[Sample]], field: str) -> float | None:
    """The median of ours/uvicorn over the rounds, each round's two runs taken back to back.

    A ratio of medians lets a noisy stretch that hit one server's run and spared the other's move
    the result; pairing runs that were minutes apart at most cancels most of that drift.
    """
    ours, theirs = samples.get("ours"), samples.get("uvicorn")
    if not ours or not theirs:
        return None
    ratios = [
        getattr(a, field) / getattr(b, field) for a, b in zip(ours, theirs, strict=False) if getattr(b, field)
    ]
    return statistics.median(ratios) if ratios else None


def table_cells(row: Row) -> list[str]:
    """Format one row; a server that was not run shows as '-', and so does its ratio."""

    def num(values: dict[str, float], name: str, fmt: str) -> str:
        return format(values[name], fmt) if name in values else "-"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    return [
        row.log_pass,
        row.scenario + (" (!)" if row.errors else ""),
        num(row.rps, "ours", ".0f"),
        num(row.rps, "uvicorn", ".0f"),
        ratio(row.rps_ratio),
        num(row.p99, "ours", ".2f"),
        num(row.p99, "uvicorn", ".2f"),
        ratio(row.p99_ratio),
    ]


def text_table(rows: list[Row]) -> str:
    """Right-aligned plain text for the terminal."""
    lines = [list(HEADERS), *(table_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)


def markdown_table(rows: list[Row]) -> str:
    """The same table as markdown, numbers right-aligned."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * 2 + "---:|" * (len(HEADERS) - 2)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


_VERSION_PROBE = textwrap.dedent(
    """
    import json, platform, importlib.metadata as m

    def v(name):
        try:
            return m.version(name)
        except m.PackageNotFoundError:
            return "not installed"

    facts = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    facts.update({name: v(name) for name in ("uvloop", "httptools", "uvicorn")})
    print(json.dumps(facts))
    """
)


def environment(python: str, versions: dict[str, str]) -> dict[str, str]:
    """Facts that make a result comparable, asked of the interpreter that ran the servers."""
    done = subprocess.run(
        [python, "-c", _VERSION_PROBE], capture_output=True, text=True, timeout=30, check=True
    )
    facts = json.loads(done.stdout)
    facts["cpu"] = cpu_model()
    wrk_banner = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10).stdout
    facts["wrk"] = wrk_banner.split(" Copyright")[0].strip()
    facts.update({f"{name} --version": text for name, text in versions.items()})
    return facts


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_markdown(path: Path, rows: list[Row], args: argparse.Namespace, facts: dict[str, str]) -> None:
    """Write the results file: the context first, then the table, then any wrk failures."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    passes = "; ".join(f"{p.name}: `{' '.join(p.flags + p.ours_only)}`" for p in LOG_PASSES)
    lines = [
        "# Benchmark results: asgi_worker vs uvicorn",
        "",
        "Ratios are ours/uvicorn: above 1 is better for req/s, below 1 is better for p99.",
        "Each ratio is the median over rounds of that round's pair (ours, then uvicorn, back to back).",
        "Only the ratios carry over to other machines; the absolute numbers do not.",
        "",
        f"- date: {now}",
        f"- command: `{' '.join(['python', 'benchmarks/run.py', *args.argv])}`",
        f"- runs: {args.rounds} x {args.duration} s per server, alternating, medians;"
        f" wrk -t1 -c{args.connections} --latency; {WARMUP_SECONDS} s warm-up discarded",
        f"- server flags: `{' '.join(COMMON_FLAGS)}`; {passes} (output to /dev/null; flags uvicorn"
        " lacks are given to ours only)",
        f"- pinning: server on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}",
        *(f"- {key}: {value}" for key, value in facts.items()),
        "",
        markdown_table(rows),
        "",
    ]
    failures = [f"- {row.log_pass} / {row.scenario}: {e}" for row in rows for e in row.errors]
    if failures:
        lines += ["(!) wrk reported failures:", "", *failures, ""]
    path.write_text("\n".join(lines))
