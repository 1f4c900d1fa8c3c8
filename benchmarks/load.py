"""Drive one client run against a server and read back throughput, tail latency and the count.

HTTP rows use wrk: it is C, costs little per request, and one thread of it saturates one Python
server core; `--latency` gives the percentile table we take p99 from. WebSocket rows use
ws_load.py, built to stay as cheap per message (see there).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from servers import cpu_seconds
from spec import BENCH_DIR, CLIENT_CPU, HOST, UPLOAD_SIZE, BenchmarkError, Scenario

WRK_SLACK = 30  # seconds a client may overrun its own duration before we kill it


@dataclass(frozen=True)
class Sample:
    """What one client run tells us.

    `rate` is requests (or messages) per second; `count` how many completed, which the server's
    CPU time is divided by; `p99_ms` is None where the client cannot time single requests.
    `cpu_us` is filled in by the caller, which reads the server's CPU around the run.
    """

    rate: float
    p99_ms: float | None
    count: int
    errors: str = ""
    cpu_us: float | None = None


def write_post_script(directory: Path) -> Path:
    """Write the wrk Lua script that turns every request into a 1 MiB POST; return its path."""
    path = directory / "post_1mib.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("a", {UPLOAD_SIZE})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    return path


def run_wrk(port: int, scenario: Scenario, duration: float, connections: int, post_script: Path) -> Sample:
    """Run wrk pinned to the client CPU and return what it measured.

    Raises BenchmarkError if wrk fails or prints no result; subprocess.TimeoutExpired (after wrk
    is killed) if it overruns by more than WRK_SLACK.
    """
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if scenario.method == "POST":
        cmd += ["-s", str(post_script)]
    cmd.append(f"http://{HOST}:{port}/")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + WRK_SLACK)
    if done.returncode != 0:
        raise BenchmarkError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_P99 = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_COUNT = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_FAILURES = re.compile(r"^\s*(Non-2xx or 3xx responses: \d+|Socket errors: .*)$", re.MULTILINE)
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> Sample:
    """Extract Requests/sec, the 99% latency (in ms) and the request count from wrk's report.

    Socket errors and non-2xx counts are kept as text: they do not stop the run, but the table
    flags them, because a server that errors quickly would otherwise look fast.
    """
    rps, p99, count = _RPS.search(output), _P99.search(output), _COUNT.search(output)
    if rps is None or p99 is None or count is None:
        raise BenchmarkError(f"could not parse wrk output:\n{output}")
    errors = "; ".join(match.group(1) for match in _FAILURES.finditer(output))
    p99_ms = float(p99.group(1)) * _TO_MS[p99.group(2)]
    return Sample(float(rps.group(1)), p99_ms, int(count.group(1)), errors)


def run_ws(python: str, port: int, mode: str, duration: float, connections: int) -> Sample:
    """Run ws_load.py in `mode` pinned to the client CPU; msgs/s, and p99 where the mode times."""
    cmd = ["taskset", "-c", CLIENT_CPU, python, str(BENCH_DIR / "ws_load.py"), str(port), mode]
    cmd += [f"{duration:g}", str(connections)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + WRK_SLACK)
    if done.returncode != 0:
        raise BenchmarkError(f"ws_load {mode} failed: {done.stderr.strip()[-300:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Sample(result["msgs"] / result["seconds"], result.get("p99_ms"), result["msgs"])


def charged(server_pid: int, run: Callable[[], Sample]) -> Sample:
    """Run the client and divide the server tree's CPU time over the run by what it completed.

    Read right before and right after the run, so the idle time between runs is not counted.
    """
    before = cpu_seconds(server_pid)
    sample = run()
    used = cpu_seconds(server_pid) - before
    return dataclasses.replace(sample, cpu_us=used / sample.count * 1e6 if sample.count else None)
