"""Side-by-side load benchmark: asgi_worker against uvicorn, same flags, same apps, same client.

Usage: python benchmarks/run.py [--quick] [--scenarios a,b] [--servers ours,uvicorn] ...

Rules, and why:
- Only ratios matter. Absolute numbers depend on the machine and on whatever else runs on it; the
  ratio ours/uvicorn, measured minutes apart on the same cores, mostly does not.
- Runs alternate (ours, uvicorn, ours, uvicorn, ...) so that slow drift (thermal, noisy neighbours,
  a test suite running next door) lands on both servers alike instead of on whichever ran last.
- Each server runs as one process per scenario and log pass, is checked once for a 200, and gets
  one discarded warm-up run before anything is measured.
- Every step has its own timeout and a SIGALRM budget bounds the whole run, so a hung server can
  never hold the machine; servers are killed in `finally` (see servers.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from load import WRK_SLACK, Sample, run_wrk, write_post_script
from report import Row, environment, summarize, text_table, write_markdown
from servers import (
    CHECK_TIMEOUT,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    check_response,
    expose_apps,
    free_port,
    running_server,
    server_command,
)
from spec import (
    LOG_PASSES,
    REPO_ROOT,
    RESULTS_PATH,
    SCENARIOS,
    SERVERS,
    WARMUP_SECONDS,
    BenchmarkError,
    LogPass,
    Scenario,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the options; `--quick` overrides rounds and duration so that it is always short."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per server")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated: ours,uvicorn")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the servers")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2
    args.scenarios = _pick(args.scenarios, SCENARIOS, parser)
    args.servers = _pick(args.servers, SERVERS, parser)
    if min(args.rounds, args.duration, args.connections) < 1:
        parser.error("--rounds, --duration and --connections must be positive")
    args.argv = argv
    return args


def _pick(value: str, known: dict, parser: argparse.ArgumentParser) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"unknown or empty choice {unknown or value!r}; known: {', '.join(known)}")
    return names


def preflight(args: argparse.Namespace) -> dict[str, str]:
    """Fail before any load if a tool, a core or a server is missing; return each server's version.

    Asking `--version` first turns "asgi_worker is not finished yet" into one clear line instead
    of a startup timeout in the middle of a run.
    """
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchmarkError(f"{tool} not found; run: bash benchmarks/setup.sh")
    if not {0, 1} <= os.sched_getaffinity(0):
        raise BenchmarkError("need CPUs 0 and 1: the server and wrk are pinned apart")
    versions = {}
    for name in args.servers:
        cmd = [args.python, "-m", SERVERS[name], "--version"]
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        output = (done.stdout.strip() or done.stderr.strip() or "?").splitlines()
        if done.returncode != 0:
            raise BenchmarkError(f"{' '.join(cmd)} failed: {output[-1]}")
        versions[name] = output[0]
    return versions


def time_budget(args: argparse.Namespace) -> int:
    """Upper bound in seconds for the whole run: every step's own timeout, summed, plus a minute."""
    per_server = STARTUP_TIMEOUT + CHECK_TIMEOUT + STOP_TIMEOUT + WARMUP_SECONDS + WRK_SLACK
    per_server += args.rounds * (args.duration + WRK_SLACK)
    return int(len(LOG_PASSES) * len(args.scenarios) * len(args.servers) * per_server) + 60


def measure(
    args: argparse.Namespace, scenario: Scenario, log_pass: LogPass, app_dir: Path, post_script: Path
) -> dict[str, list[Sample]]:
    """Start one process per server, check and warm each up, then alternate measured runs.

    Both servers stay up for the whole scenario (pinned to the same CPU; the idle one costs next
    to nothing) so that alternating needs no restart between runs.
    """
    samples: dict[str, list[Sample]] = {name: [] for name in args.servers}
    with ExitStack() as stack:
        ports = {}
        for name in args.servers:
            ports[name] = port = free_port()
            stack.enter_context(
                running_server(
                    server_command(args.python, SERVERS[name], scenario, log_pass, port), port, app_dir
                )
            )
            check_response(port, scenario)
        for name in args.servers:
            run_wrk(ports[name], scenario, WARMUP_SECONDS, args.connections, post_script)
        for _ in range(args.rounds):
            for name in args.servers:
                sample = run_wrk(ports[name], scenario, args.duration, args.connections, post_script)
                samples[name].append(sample)
                print(f"  {name:8} {sample.rps:10.0f} req/s  p99 {sample.p99_ms:8.2f} ms  {sample.errors}")
    return samples


def run_all(args: argparse.Namespace) -> list[Row]:
    """Measure every (log pass, scenario) pair and return one summarized row for each."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="asgi-bench-") as tmp:
        app_dir, post_script = expose_apps(Path(tmp)), write_post_script(Path(tmp))
        for log_pass in LOG_PASSES:
            for name in args.scenarios:
                print(f"[{log_pass.name}] {name}", flush=True)
                samples = measure(args, SCENARIOS[name], log_pass, app_dir, post_script)
                rows.append(summarize(log_pass, SCENARIOS[name], samples))
    return rows


def _on_alarm(signum: int, frame: object) -> None:
    raise TimeoutError("benchmark exceeded its time budget")


def main(argv: list[str] | None = None) -> int:
    """Preflight, measure under the time budget, then print the table and write results.md.

    Returns the exit status: 0 with results, 1 (and one line on stderr) on any failure.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        versions = preflight(args)
        budget = time_budget(args)
        print(f"servers: {versions}; time budget {budget} s", flush=True)
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(budget)
        try:
            rows = run_all(args)
        finally:
            signal.alarm(0)
        facts = environment(args.python, versions)
    except (BenchmarkError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print()
    print(text_table(rows))
    for row in rows:
        for error in row.errors:
            print(f"(!) {row.log_pass} / {row.scenario}: {error}")
    write_markdown(RESULTS_PATH, rows, args, facts)
    print(f"\nwritten: {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
