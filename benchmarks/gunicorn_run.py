"""gunicorn worker classes side by side: ours against UvicornWorker and gunicorn's own ``-k asgi``.

Usage: python benchmarks/gunicorn_run.py [--rounds N] [--duration S] [--quick]

One gunicorn arbiter per worker class, one worker each (``-w 1``), pinned to the server CPU, the
same apps as run.py, wrk on the client CPU, alternating runs. The access log is off (gunicorn's
default). Ratios are ours/theirs, each the median over rounds of that round's pair, of req/s and
of requests per CPU-second of the arbiter and its worker (utime+stime from psutil): the second
is steadier on a shared VM, where stolen time slows a run without being charged to the process.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from load import run_wrk, write_post_script
from servers import cpu_seconds, expose_apps, free_port, running_server
from spec import BENCH_DIR, HOST, SCENARIOS, SERVER_CPU

RESULTS_PATH = BENCH_DIR / "gunicorn_results.md"
WORKERS = {
    "ours": "asgi_worker.Worker",
    "uvicorn_worker": "uvicorn_worker.UvicornWorker",
    "gunicorn_asgi": "asgi",
}
SCENARIO_NAMES = ("plain", "json_1k", "streamed")


def command(python: str, worker: str, scenario: str, port: int) -> list[str]:
    return [
        *("taskset", "-c", SERVER_CPU, python, "-m", "gunicorn"),
        *("-k", worker, "-w", "1", "-b", f"{HOST}:{port}", "--log-level", "warning"),
        f"apps:{scenario}",
    ]


def pair_ratio(by: dict[str, list[float]], other: str) -> float:
    """Median over rounds of ours/other, each round's two runs back to back."""
    return statistics.median(a / b for a, b in zip(by["ours"], by[other], strict=True) if b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2
    rates: dict[str, dict[str, list[float]]] = {}
    per_cpu: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="asgi-gunicorn-bench-") as tmp:
        app_dir, post = expose_apps(Path(tmp)), write_post_script(Path(tmp))
        for name in SCENARIO_NAMES:
            scenario = SCENARIOS[name]
            rates[name] = {worker: [] for worker in WORKERS}
            per_cpu[name] = {worker: [] for worker in WORKERS}
            with ExitStack() as stack:
                ports, procs = {}, {}
                for label, worker in WORKERS.items():
                    ports[label] = port = free_port()
                    procs[label] = stack.enter_context(
                        running_server(command(args.python, worker, name, port), port, app_dir)
                    )
                for label in WORKERS:
                    run_wrk(ports[label], scenario, 1, args.connections, post)  # warm-up
                for _ in range(args.rounds):
                    for label in WORKERS:
                        before = cpu_seconds(procs[label].pid)
                        sample = run_wrk(ports[label], scenario, args.duration, args.connections, post)
                        used = cpu_seconds(procs[label].pid) - before
                        rates[name][label].append(sample.rate)
                        per_cpu[name][label].append(sample.count / used if used else 0.0)
                        print(f"  {name:9} {label:15} {sample.rate:10.0f} req/s {sample.errors}", flush=True)
    lines = [
        "# gunicorn worker classes: asgi_worker.Worker vs UvicornWorker vs -k asgi",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- command: `python benchmarks/gunicorn_run.py {' '.join(sys.argv[1:])}`",
        f"- one worker each (`-w 1`), access log off, server CPU {SERVER_CPU}; "
        f"{args.rounds} x {args.duration} s alternating; wrk -t1 -c{args.connections}",
        "",
        "| scenario | ours req/s | UvicornWorker | -k asgi | ours/UvicornWorker | ours/-k asgi "
        "| per CPU-s: ours/UvicornWorker | per CPU-s: ours/-k asgi |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by in rates.items():
        med = {label: statistics.median(values) for label, values in by.items()}
        cpu = per_cpu[name]
        lines.append(
            f"| {name} | {med['ours']:.0f} | {med['uvicorn_worker']:.0f} | {med['gunicorn_asgi']:.0f} | "
            f"{pair_ratio(by, 'uvicorn_worker'):.2f} | {pair_ratio(by, 'gunicorn_asgi'):.2f} | "
            f"{pair_ratio(cpu, 'uvicorn_worker'):.2f} | {pair_ratio(cpu, 'gunicorn_asgi'):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    RESULTS_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
