"""Our server at several commits, side by side: req/s and server CPU per request, alternating rounds.

    python benchmarks/compare_commits.py HEAD~3 HEAD --scenario plain --rounds 5

A ratio against uvicorn moves when uvicorn or the machine changes (uvicorn 0.54 served plain text at
34k req/s here one day and 57k another); a before/after of our own code on the same cores, minutes
apart, does not. Each commit is checked out into a temporary git worktree and served by the
current interpreter (``--python``) with ``--loop uvloop --http httptools --no-access-log``, pinned
to CPU 0; wrk runs on CPU 1. Server CPU per request (user + system, from psutil) is the steadier
figure when wrk itself saturates first. The first commit is the baseline of every ratio. wrk sends
plain GET requests (no body), the same one again and again; ``--varied`` sends each to a new path
(``varied.lua``, with ``--scenario varied``: every response a new length too), the case where
nothing a server remembers from the last request helps. For the upload scenario's POST, use run.py.

The name ``uvicorn`` in the list stands for uvicorn serving the same app with the same flags (from the
current tree): then each commit's ratio to uvicorn in the same alternating rounds is printed too, which
is how to compare "ratio to uvicorn" before and after a change when uvicorn's own rate drifts between
runs (it does, by 15% here).

``current`` in the list is the working copy as it is (uncommitted changes included, no checkout). Any
entry of ours takes suffixes: ``+metrics`` adds ``--control-bind`` on a free port (every request timed
into the histogram; /metrics is scraped at the end and the run fails if it counted nothing), and
``+supervise`` serves through ``python -m supervisor --workers 1`` (asgi-supervise) instead:

    python benchmarks/compare_commits.py current current+metrics --scenario json_1k
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from servers import cpu_seconds, free_port

ROOT = Path(__file__).resolve().parent.parent
BASE_PORT = 8310
UVICORN = "uvicorn"  # in the commit list: uvicorn itself, as the yardstick
CURRENT = "current"  # in the commit list: the working copy, served in place
OPTIONS = {"metrics", "supervise"}  # suffixes: current+metrics, HEAD~1+supervise+metrics, ...


def run_wrk(port: int, seconds: int, connections: int, varied: bool = False) -> tuple[float, int]:
    """``(requests per second, requests)`` of one wrk run against ``port``; ``varied``: every request
    to a new path (``varied.lua``)."""
    script = ["-s", str(Path(__file__).with_name("varied.lua"))] if varied else []
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            *script,
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rate = float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[1])
    total = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
    return rate, total


def split_entry(entry: str) -> tuple[str, set[str]]:
    """``REV+opt+opt`` -> the revision and its options; uvicorn takes none."""
    revision, *options = entry.split("+")
    unknown = set(options) - OPTIONS
    if unknown or (options and revision == UVICORN):
        raise SystemExit(f"{entry}: unknown or misplaced suffix; ours take {', '.join(sorted(OPTIONS))}")
    return revision, set(options)


def server_command(python: str, entry: str, scenario: str, port: int, control_port: int) -> list[str]:
    """The same flags for every entry; only the module and the suffixes' additions differ."""
    revision, options = split_entry(entry)
    if revision == UVICORN:
        module = ["uvicorn"]
    else:
        module = ["supervisor", "--workers", "1"] if "supervise" in options else ["asgi_worker"]
    app = f"benchmarks.{scenario}" if ":" in scenario else f"benchmarks.apps:{scenario}"
    command = ["taskset", "-c", "0", python, "-m", *module, app]
    command += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    command += ["--no-access-log", "--log-level", "warning"]
    if "metrics" in options:
        command += ["--control-bind", f"127.0.0.1:{control_port}"]
    return command


def scraped_requests(control_port: int, served: int) -> int:
    """Requests in /metrics' duration histogram, polled up to 3 s for at least ``served``.

    The proof that metrics were on while measured; the poll covers the supervisor, whose workers
    report at most once a second.
    """
    deadline, counted = time.monotonic() + 3, 0
    while counted < served and time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{control_port}/metrics", timeout=5) as response:
            lines = response.read().decode().splitlines()
        prefix = "http_server_request_duration_seconds_count"
        counted = sum(int(float(line.rsplit(" ", 1)[1])) for line in lines if line.startswith(prefix))
        time.sleep(0.2)
    return counted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("commits", nargs="+", help="git revisions; the first is the baseline")
    parser.add_argument(
        "--scenario",
        default="plain",
        help="an app of benchmarks/apps.py, or MODULE:APP of benchmarks/ (framework_apps:fastapi_get)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--varied",
        action="store_true",
        help="a new path per request (varied.lua; pair it with --scenario varied): nothing repeats",
    )
    args = parser.parse_args()
    for commit in args.commits:
        split_entry(commit)  # a typo fails here, before any worktree exists
    with tempfile.TemporaryDirectory(prefix="asgi-worker-ab-") as scratch:
        trees = []
        for index, commit in enumerate(args.commits):
            revision = split_entry(commit)[0]
            if revision in (UVICORN, CURRENT):
                trees.append(ROOT)
                continue
            tree = Path(scratch) / f"tree{index}"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), revision], check=True
            )
            trees.append(tree)
        servers = []
        try:
            control_ports = [free_port() for _ in trees]
            for index, tree in enumerate(trees):
                command = server_command(
                    args.python, args.commits[index], args.scenario, BASE_PORT + index, control_ports[index]
                )
                servers.append(
                    subprocess.Popen(
                        command,
                        cwd=tree,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            time.sleep(3)
            rates: list[list[float]] = [[] for _ in trees]
            cpu: list[list[float]] = [[] for _ in trees]
            served = [
                run_wrk(BASE_PORT + index, 1, args.connections, args.varied)[1] for index in range(len(trees))
            ]
            for _ in range(args.rounds):
                for index, server in enumerate(servers):
                    before = cpu_seconds(server.pid)
                    rate, total = run_wrk(BASE_PORT + index, args.duration, args.connections, args.varied)
                    rates[index].append(rate)
                    micros = (cpu_seconds(server.pid) - before) / total * 1e6
                    cpu[index].append(micros)
                    served[index] += total
                    print(f" {args.commits[index]:28} {rate:9.0f} req/s {micros:6.2f} us/request", flush=True)
            for index, commit in enumerate(args.commits):
                if "metrics" in split_entry(commit)[1]:
                    counted = scraped_requests(control_ports[index], served[index])
                    print(f"{commit}: /metrics counted {counted} requests, wrk saw {served[index]}")
                    if not counted:
                        raise SystemExit(f"{commit}: /metrics counted no request; were metrics on?")
        finally:
            for server in servers:
                os.killpg(server.pid, signal.SIGKILL)
            for tree in trees:
                if tree == ROOT:
                    continue
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
                )
    script = " -s varied.lua" if args.varied else ""
    runs = f"{args.rounds} x {args.duration} s, wrk -c{args.connections}{script}"
    print(f"{args.scenario}, {runs}; ratios against {args.commits[0]}")
    against = args.commits.index(UVICORN) if UVICORN in args.commits else None
    extra = " req/s / uvicorn |" if against is not None else ""
    print(f"| commit | req/s | req/s ratio | server CPU us/request | CPU ratio (base/this) |{extra}")
    print("| --- | ---: | ---: | ---: | ---: |" + (" ---: |" if extra else ""))
    for index, commit in enumerate(args.commits):
        rate_ratio = statistics.median(a / b for a, b in zip(rates[index], rates[0], strict=True))
        cpu_ratio = statistics.median(b / a for a, b in zip(cpu[index], cpu[0], strict=True))
        row = (
            f"| {commit} | {statistics.median(rates[index]):.0f} | {rate_ratio:.3f} "
            f"| {statistics.median(cpu[index]):.2f} | {cpu_ratio:.3f} |"
        )
        if against is not None:
            paired = (a / b for a, b in zip(rates[index], rates[against], strict=True))
            row += f" {statistics.median(paired):.3f} |"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
