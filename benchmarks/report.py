"""Reduce samples to medians and paired ratios; write them as terminal tables and as results.md.

Medians, not means: one run disturbed by the machine's other work must not move the result. Each
ratio is the median over rounds of that round's pair (the server's run and uvicorn's, minutes apart
at most), so slow drift cancels. The markdown file carries the context (versions, CPU, kernel, the
exact commands) without which a number means nothing, and keeps the hand-written sections that
follow the generated part.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from load import Sample
from spec import (
    BASELINE,
    CEILING_ASGI_ROWS,
    CLIENT_CPU,
    FRONT_DOOR_ROWS,
    LOG_OFF,
    SERVER_CPU,
    WARMUP_SECONDS,
    Scenario,
)

# Everything after this line in results.md is hand-written and survives a rewrite.
KEEP_MARKER = "<!-- generated above by run.py; hand-written sections below are kept when it rewrites -->"

# On the framework rows the ceiling is not precomputed bytes: the row's mark and the note say what it is.
ASGI_CEILING_MARK = " †"
ASGI_CEILING_NOTE = (
    "† `ceiling` on this row is the same framework app under the least ASGI server"
    " (`ceiling.py --asgi`: httptools, one scope and one Task per request, one write per response),"
    " not precomputed bytes: the framework's own work is inside it, so it is the most any ASGI server"
    " can reach on the row, and ceiling/uvicorn is the highest ratio to uvicorn a server can reach here."
)


@dataclass(frozen=True)
class Cell:
    """One server's result on one row: medians over rounds, and ratios to the baseline."""

    rate: float
    mbps: float | None
    p99_ms: float | None
    cpu_us: float | None
    rate_ratio: float | None
    cpu_ratio: float | None


@dataclass(frozen=True)
class Row:
    """One row of the matrix under one log pass: a cell per server measured in the same rounds."""

    log_pass: str
    scenario: Scenario
    connections: int
    cells: dict[str, Cell]
    errors: list[str]


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def pair_ratio(samples: dict[str, list[Sample]], name: str, field: str) -> float | None:
    """The median over rounds of name/baseline, each round's two runs taken back to back.

    A ratio of medians lets a noisy stretch that hit one server's run and spared the other's move
    the result; pairing runs that were minutes apart at most cancels most of that drift.
    """
    ours, theirs = samples.get(name), samples.get(BASELINE)
    if not ours or not theirs:
        return None
    pairs = zip((getattr(s, field) for s in ours), (getattr(s, field) for s in theirs), strict=False)
    return _median([a / b for a, b in pairs if a is not None and b])


def summarize(log_pass: str, scenario: Scenario, connections: int, samples: dict[str, list[Sample]]) -> Row:
    """Reduce each server's runs to a Cell; keep any client failures so the table can flag them."""
    errors = [f"{name}: {s.errors}" for name, runs in samples.items() for s in runs if s.errors]
    cells = {}
    for name, runs in samples.items():
        rate = statistics.median(s.rate for s in runs)
        cells[name] = Cell(
            rate=rate,
            mbps=rate * scenario.payload / 1e6 if scenario.payload else None,
            p99_ms=_median([s.p99_ms for s in runs]),
            cpu_us=_median([s.cpu_us for s in runs]),
            rate_ratio=pair_ratio(samples, name, "rate") if name != BASELINE else None,
            cpu_ratio=pair_ratio(samples, name, "cpu_us") if name != BASELINE else None,
        )
    return Row(log_pass, scenario, connections, cells, errors)


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    lines: list[list[str]]
    notes: tuple[str, ...] = ()  # footnotes printed under the table


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def build_table(title: str, rows: list[Row], servers: list[str], unit: str) -> Table:
    """Columns per server, grouped by measure: rate, its ratio, MB/s (data rows), p99, CPU, its ratio."""
    others = [s for s in servers if s != BASELINE] if BASELINE in servers else []
    with_mbps = any(row.scenario.payload for row in rows)
    per = "msg" if unit == "msgs/s" else "req"
    headers = ["row", "conns"]
    headers += [f"{s} {unit}" for s in servers] + [f"{s}/{BASELINE} {unit}" for s in others]
    headers += [f"{s} MB/s" for s in servers] if with_mbps else []
    headers += [f"{s} p99 ms" for s in servers]
    headers += [f"{s} CPU µs/{per}" for s in servers] + [f"{s}/{BASELINE} CPU" for s in others]
    lines = []
    asgi_ceiling = False
    for row in rows:

        def col(name: str, field: str, spec: str, row: Row = row) -> str:
            cell = row.cells.get(name)
            return "-" if cell is None else _fmt(getattr(cell, field), spec)

        marked = "ceiling" in servers and "ceiling" in row.cells and row.scenario.name in CEILING_ASGI_ROWS
        asgi_ceiling |= marked
        name = row.scenario.name + (ASGI_CEILING_MARK if marked else "") + (" (!)" if row.errors else "")
        line = [name, str(row.connections)]
        line += [col(s, "rate", ".0f") for s in servers] + [col(s, "rate_ratio", ".2f") for s in others]
        line += [col(s, "mbps", ".0f") for s in servers] if with_mbps else []
        line += [col(s, "p99_ms", ".2f") for s in servers]
        line += [col(s, "cpu_us", ".1f") for s in servers] + [col(s, "cpu_ratio", ".2f") for s in others]
        lines.append(line)
    return Table(title, headers, lines, (ASGI_CEILING_NOTE,) if asgi_ceiling else ())


def tables(rows: list[Row], main_servers: list[str], front_doors: list[str]) -> list[Table]:
    """One table per kind: HTTP rows (one per log pass), WebSocket rows, front doors."""

    def measured(names: list[str], subset: list[Row]) -> list[str]:
        return [n for n in names if any(n in row.cells for row in subset)]

    result = []
    for log_pass in dict.fromkeys(row.log_pass for row in rows):
        http = [r for r in rows if r.log_pass == log_pass and r.scenario.kind == "http"]
        if http:
            title = "HTTP rows" + ("" if log_pass == LOG_OFF.name else f", {log_pass}")
            result.append(build_table(title, http, measured(main_servers, http), "req/s"))
    ws = [r for r in rows if r.scenario.kind == "ws"]
    if ws:
        result.append(build_table("WebSocket rows", ws, measured(main_servers, ws), "msgs/s"))
    doors = [r for r in rows if r.log_pass == LOG_OFF.name and r.scenario.name in FRONT_DOOR_ROWS]
    door_servers = measured(["ours", *front_doors, BASELINE], doors)
    if doors and any(name in door_servers for name in front_doors):
        result.append(build_table("Front doors", doors, door_servers, "req/s"))
    return result


def text_table(table: Table) -> str:
    """Right-aligned plain text for the terminal, under its title."""
    lines = [table.headers, *table.lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(table.headers))]
    body = "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)
    notes = "".join(f"\n{note}" for note in table.notes)
    return f"{table.title}\n{body}{notes}"


def markdown_table(table: Table) -> str:
    """The same table as markdown, numbers right-aligned."""
    lines = ["| " + " | ".join(table.headers) + " |", "|---|" + "---:|" * (len(table.headers) - 1)]
    lines += ["| " + " | ".join(line) + " |" for line in table.lines]
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
    names = ("uvloop", "httptools", "websockets", "uvicorn", "granian", "gunicorn", "starlette", "fastapi")
    facts.update({name: v(name) for name in names})
    print(json.dumps(facts))
    """
)


def environment(python: str, versions: dict[str, str]) -> dict[str, str]:
    """Facts that make a result comparable, the package versions asked of the servers' interpreter."""
    done = subprocess.run(
        [python, "-c", _VERSION_PROBE], capture_output=True, text=True, timeout=30, check=True
    )
    facts = json.loads(done.stdout)
    facts["cpu"] = f"{cpu_model()} ({os.cpu_count()} cores)"
    facts["kernel"] = f"{platform.system()} {platform.release()}"
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


def kept_sections(path: Path) -> str:
    """The hand-written part of an existing results file: what follows the marker, or, in a file
    written before the marker existed, everything from its first `## ` heading on."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ""
    if KEEP_MARKER in text:
        return text.split(KEEP_MARKER, 1)[1].lstrip("\n")
    index = text.find("\n## ")
    return text[index + 1 :] if index >= 0 else ""


def write_markdown(
    path: Path,
    tables_: list[Table],
    rows: list[Row],
    run: dict[str, str],
    commands: dict[str, str],
    facts: dict[str, str],
) -> None:
    """Write the results file: context, the tables, any client failures, then the kept sections."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results: asgi_worker, uvicorn, granian and the ceiling",
        "",
        f"Ratios are X/{BASELINE}, measured in the same alternating rounds: above 1 is better for req/s"
        " (msgs/s), below 1 is better for CPU per request. Each ratio is the median over rounds of that"
        " round's pair. Only the ratios carry over to other machines; the absolute numbers do not.",
        "`ceiling` is a raw uvloop protocol writing precomputed responses (ceiling.py): the limit of a",
        "Python + uvloop server on this machine. On the framework rows (marked †) it is the framework",
        "under the least ASGI server instead (`ceiling.py --asgi framework_apps:<row>`).",
        "CPU µs/req is the server's whole process tree",
        "(utime + stime, psutil) over the run, divided by the requests it completed.",
        "",
        f"- date: {now}",
        f"- command: `{run['command']}`",
        f"- runs: {run['runs']}; {WARMUP_SECONDS} s warm-up per server discarded",
        f"- clients: {run['clients']}",
        f"- pinning: server on CPU {SERVER_CPU} (taskset), client on CPU {CLIENT_CPU}",
        *(f"- {key}: {value}" for key, value in facts.items()),
        "- server commands (row `plain`, access log off; other rows change the app, passes the log flags):",
        *(f"  - {name}: `{command}`" for name, command in commands.items()),
        "",
    ]
    for table in tables_:
        lines += [f"## {table.title}", "", markdown_table(table), ""]
        lines += [line for note in table.notes for line in (note, "")]
    failures = [f"- {row.log_pass} / {row.scenario.name}: {e}" for row in rows for e in row.errors]
    if failures:
        lines += ["(!) the client reported failures:", "", *failures, ""]
    lines += [KEEP_MARKER, ""]
    kept = kept_sections(path)
    path.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
