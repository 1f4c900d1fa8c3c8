"""Side-by-side load benchmark: asgi_worker, uvicorn, granian and a raw-uvloop ceiling, same apps.

Usage: python benchmarks/run.py [--quick] [--scenarios a,b] [--servers ours,uvicorn,...] ...

Rules, and why:
- Only ratios matter. Absolute numbers depend on the machine and on whatever else runs on it; the
  ratio X/uvicorn, measured minutes apart on the same cores, mostly does not.
- Runs alternate (ours, uvicorn, granian, ceiling, front doors, ours, uvicorn, ...) so that slow
  drift (thermal, noisy neighbours, a test suite running next door) lands on every server alike.
- Each server runs as one process (tree) per row and log pass, is checked once (a 200 and the exact
  body, or an exact echo), and gets one discarded warm-up run before anything is measured.
- The server's CPU time (its whole process tree) is read right before and after each measured run,
  and divided by the requests completed: on a shared VM it moves less than req/s.
- Every step has its own timeout and a SIGALRM budget bounds the whole run, so a hung server can
  never hold the machine; servers are killed in `finally` (see servers.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import ws_load
from load import WRK_SLACK, Sample, charged, run_wrk, run_ws, write_post_script
from report import Row, environment, summarize, tables, text_table, write_markdown
from servers import (
    CHECK_TIMEOUT,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    VERSION_ARGS,
    check_response,
    expose_apps,
    free_port,
    running_server,
    server_command,
)
from spec import (
    CLIENT_CPU,
    DEFAULT_CONNECTIONS,
    FRONT_DOORS,
    LOG_OFF,
    LOG_PASSES,
    MAIN_SERVERS,
    REPO_ROOT,
    RESULTS_PATH,
    SCENARIOS,
    SERVERS,
    WARMUP_SECONDS,
    BenchmarkError,
    LogPass,
    Scenario,
)


@dataclass(frozen=True)
class Job:
    """One row under one log pass, and the servers measured on it in the same rounds."""

    log_pass: LogPass
    scenario: Scenario
    servers: tuple[str, ...]
    connections: int


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the options; `--quick` sets 1 round of 2 s unless --rounds/--duration say otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated rows")
    parser.add_argument("--servers", default=",".join(MAIN_SERVERS), help="comma-separated")
    parser.add_argument(
        "--front-doors",
        default=",".join(FRONT_DOORS),
        help="our other entry points, measured on plain and body_1m; 'none' for none",
    )
    parser.add_argument("--rounds", type=int, help="measured runs per server (default 3)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 5)")
    parser.add_argument(
        "--connections", type=int, default=DEFAULT_CONNECTIONS, help="wrk -c of rows without their own"
    )
    parser.add_argument(
        "--log-passes",
        choices=("off", "all"),
        default="off",
        help="off: access log off only; all: also the two access-log passes for the original five rows",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the servers")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the markdown file to write")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s (a smoke test)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds if args.rounds is not None else (1 if quick else 3)
    args.duration = args.duration if args.duration is not None else (2 if quick else 5)
    args.scenarios = _pick(args.scenarios, SCENARIOS, parser)
    args.servers = _pick(args.servers, MAIN_SERVERS, parser)
    args.front_doors = [] if args.front_doors == "none" else _pick(args.front_doors, FRONT_DOORS, parser)
    if min(args.rounds, args.duration, args.connections) < 1:
        parser.error("--rounds, --duration and --connections must be positive")
    args.argv = argv
    return args


def _pick(value: str, known: dict | tuple, parser: argparse.ArgumentParser) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"unknown or empty choice {unknown or value!r}; known: {', '.join(known)}")
    return names


def preflight(args: argparse.Namespace) -> dict[str, str]:
    """Fail before any load if a tool or a core is missing; return each available server's version.

    A server whose module is not installed (granian, say) is dropped with one line; any other
    failure to print a version stops the run, as does ours missing. Asking `--version` first turns
    "asgi_worker is not finished yet" into one clear line instead of a startup timeout mid-run.
    """
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchmarkError(f"{tool} not found; run: bash benchmarks/setup.sh")
    if not {0, 1} <= os.sched_getaffinity(0):
        raise BenchmarkError("need CPUs 0 and 1: the server and the client are pinned apart")
    versions = {}
    for name in [*args.servers, *args.front_doors]:
        cmd = [args.python, *VERSION_ARGS[name]]
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        output = (done.stdout.strip() or done.stderr.strip() or "?").splitlines()
        if done.returncode != 0:
            if "No module named" in output[-1] and name != "ours":
                print(f"{name}: skipped, not installed ({output[-1]}); see benchmarks/setup.sh")
                continue
            raise BenchmarkError(f"{' '.join(cmd)} failed: {output[-1]}")
        versions[name] = output[0]
    return versions


def missing_modules(python: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` the servers' interpreter cannot import."""
    if not modules:
        return []
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if not u.find_spec(m)))"
    done = subprocess.run([python, "-c", probe, *modules], capture_output=True, text=True, timeout=30)
    return done.stdout.split()


def plan(args: argparse.Namespace, available: list[str]) -> list[Job]:
    """Every (log pass, row) to measure, with the servers that take part in it."""
    passes = LOG_PASSES if args.log_passes == "all" else (LOG_OFF,)
    candidates = [name for name in [*args.servers, *args.front_doors] if name in available]
    skipped: set[str] = set()
    jobs = []
    for log_pass in passes:
        for scenario in (SCENARIOS[name] for name in args.scenarios):
            if log_pass is not LOG_OFF and not scenario.all_passes:
                continue
            if scenario.name in skipped:
                continue
            missing = missing_modules(args.python, scenario.requires)
            if missing:
                print(f"{scenario.name}: skipped, {', '.join(missing)} missing; see benchmarks/setup.sh")
                skipped.add(scenario.name)
                continue
            servers = tuple(
                name
                for name in candidates
                if SERVERS[name].takes(scenario) and (log_pass is LOG_OFF or SERVERS[name].all_passes)
            )
            if servers:
                jobs.append(Job(log_pass, scenario, servers, scenario.connections or args.connections))
    return jobs


def time_budget(args: argparse.Namespace, jobs: list[Job]) -> int:
    """Upper bound in seconds for the whole run: every step's own timeout, summed, plus a minute."""
    per_server = STARTUP_TIMEOUT + CHECK_TIMEOUT + STOP_TIMEOUT + WARMUP_SECONDS + WRK_SLACK
    per_server += args.rounds * (args.duration + WRK_SLACK)
    return int(sum(len(job.servers) for job in jobs) * per_server) + 60


def check(port: int, scenario: Scenario) -> None:
    """The row's pre-load check: a 200 with the exact body, or an exact WebSocket echo."""
    if scenario.kind == "http":
        check_response(port, scenario)
        return
    try:
        ws_load.check_echo(port)
    except RuntimeError as exc:
        raise BenchmarkError(f"{scenario.name} on port {port}: {exc}") from None


def load(args: argparse.Namespace, job: Job, port: int, duration: float, post_script: Path) -> Sample:
    if job.scenario.kind == "ws":
        return run_ws(args.python, port, job.scenario.ws_mode, duration, job.connections)
    return run_wrk(port, job.scenario, duration, job.connections, post_script)


def measure(args: argparse.Namespace, job: Job, app_dir: Path, post_script: Path) -> dict[str, list[Sample]]:
    """Start one process per server, check and warm each up, then alternate measured runs.

    Every server stays up for the whole row (pinned to the same CPU; an idle one costs next to
    nothing) so that alternating needs no restart between runs.
    """
    samples: dict[str, list[Sample]] = {name: [] for name in job.servers}
    unit = "msgs/s" if job.scenario.kind == "ws" else "req/s"
    with ExitStack() as stack:
        ports, pids = {}, {}
        for name in job.servers:
            ports[name] = port = free_port()
            cmd = server_command(args.python, name, job.scenario, job.log_pass, port)
            pids[name] = stack.enter_context(running_server(cmd, port, app_dir)).pid
            check(port, job.scenario)
        for name in job.servers:
            load(args, job, ports[name], WARMUP_SECONDS, post_script)
        for _ in range(args.rounds):
            for name in job.servers:
                client = partial(load, args, job, ports[name], args.duration, post_script)
                sample = charged(pids[name], client)
                samples[name].append(sample)
                p99 = "-" if sample.p99_ms is None else f"{sample.p99_ms:.2f}"
                print(
                    f"  {name:16} {sample.rate:10.0f} {unit}  p99 {p99:>7} ms  "
                    f"CPU {sample.cpu_us or 0:7.1f} µs  {sample.errors}",
                    flush=True,
                )
    return samples


def run_all(args: argparse.Namespace, jobs: list[Job]) -> list[Row]:
    """Measure every job and return one summarized row for each."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="asgi-bench-") as tmp:
        app_dir, post_script = expose_apps(Path(tmp)), write_post_script(Path(tmp))
        for job in jobs:
            print(f"[{job.log_pass.name}] {job.scenario.name} ({job.connections} conns)", flush=True)
            samples = measure(args, job, app_dir, post_script)
            rows.append(summarize(job.log_pass.name, job.scenario, job.connections, samples))
    return rows


def describe(args: argparse.Namespace, versions: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(how the run was made, each server's exact command) for the results file."""
    plain = SCENARIOS["plain"]
    commands = {
        name: shlex.join(server_command("python", name, plain, LOG_OFF, 0)).replace("--port 0", "--port PORT")
        for name in versions
    }
    commands = {
        name: c.replace("127.0.0.1:0", "127.0.0.1:PORT").replace(f"{REPO_ROOT}/", "")
        for name, c in commands.items()
    }
    run = {
        "command": shlex.join(["python", "benchmarks/run.py", *args.argv]),
        "runs": f"{args.rounds} x {args.duration} s per server, alternating, medians",
        "clients": (
            f"HTTP: taskset -c {CLIENT_CPU} wrk -t1 -cN --latency (N per row: the conns column; "
            f"upload posts 1 MiB); WebSocket: ws_load.py (ws_roundtrip: 1 x 64 B in flight per "
            "connection, p99 of the round trip; ws_batched: 50 x 32 B in flight, no p99)"
        ),
    }
    return run, commands


def _on_alarm(signum: int, frame: object) -> None:
    raise TimeoutError("benchmark exceeded its time budget")


def main(argv: list[str] | None = None) -> int:
    """Preflight, measure under the time budget, then print the tables and write results.md.

    Returns the exit status: 0 with results, 1 (and one line on stderr) on any failure.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        versions = preflight(args)
        jobs = plan(args, list(versions))
        if not jobs:
            raise BenchmarkError("nothing to measure: no available server takes the chosen rows")
        budget = time_budget(args, jobs)
        print(f"servers: {versions}; {len(jobs)} rows; time budget {budget} s", flush=True)
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(budget)
        try:
            rows = run_all(args, jobs)
        finally:
            signal.alarm(0)
        facts = environment(args.python, versions)
    except (BenchmarkError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    result = tables(rows, args.servers, args.front_doors)
    for table in result:
        print()
        print(text_table(table))
    for row in rows:
        for error in row.errors:
            print(f"(!) {row.log_pass} / {row.scenario.name}: {error}")
    run, commands = describe(args, versions)
    write_markdown(args.results, result, rows, run, commands, facts)
    print(f"\nwritten: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
