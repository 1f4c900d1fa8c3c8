"""Drive one wrk run against a server and read back throughput and tail latency.

wrk is the client because it is C, costs little per request, and one thread of it saturates one
Python server core; `--latency` gives the percentile table we take p99 from.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from spec import CLIENT_CPU, HOST, UPLOAD_SIZE, BenchmarkError, Scenario

WRK_SLACK = 30  # seconds wrk may overrun its own -d before we kill it


@dataclass(frozen=True)
class Sample:
    """What one wrk run tells us: throughput, tail latency, and any failures it saw."""

    rps: float
    p99_ms: float
    errors: str = ""


def write_post_script(directory: Path) -> Path:
    """Write the wrk Lua script that turns every request into a 1 MiB POST; return its path."""
    path = directory / "post_1mib.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("a", {UPLOAD_SIZE})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    return path


def run_wrk(port: int, scenario: Scenario, duration: int, connections: int, post_script: Path) -> Sample:
    """Run wrk pinned to the client CPU and return what it measured.

    Raises BenchmarkError if wrk fails or prints no result; subprocess.TimeoutExpired (after wrk
    is killed) if it overruns by more than WRK_SLACK.
    """
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if scenario.method == "POST":
        cmd += ["-s", str(post_script)]
    cmd.append(f"http://{HOST}:{port}/")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + WRK_SLACK)
    if done.returncode != 0:
        raise BenchmarkError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_P99 = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_FAILURES = re.compile(r"^\s*(Non-2xx or 3xx responses: \d+|Socket errors: .*)$", re.MULTILINE)
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> Sample:
    """Extract Requests/sec and the 99% latency (in ms) from wrk's `--latency` report.

    Socket errors and non-2xx counts are kept as text: they do not stop the run, but the table
    flags them, because a server that errors quickly would otherwise look fast.
    """
    rps, p99 = _RPS.search(output), _P99.search(output)
    if rps is None or p99 is None:
        raise BenchmarkError(f"could not parse wrk output:\n{output}")
    errors = "; ".join(match.group(1) for match in _FAILURES.finditer(output))
    return Sample(float(rps.group(1)), float(p99.group(1)) * _TO_MS[p99.group(2)], errors)
