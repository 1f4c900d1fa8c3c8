"""WebSocket extras: idle memory per connection and 1 MiB echoes, ours against uvicorn and granian.

Usage: python benchmarks/ws_run.py [--rounds N] [--duration S] [--quick] [--servers ours,uvicorn,granian]

The per-message echo rows (ws_roundtrip, ws_batched) are run.py's now; this script keeps what does
not fit its matrix (client: ws_load.py, pinned to the client CPU; server pinned to the server CPU):
- idle memory: the server's RSS growth (its whole process tree) per idle open WebSocket, over 1000;
- large: 4 connections, one 1 MiB binary message at a time, echoed back.
Ratios are X/uvicorn: msgs/s above 1 is better, KiB per connection and CPU per message below 1
is better. Each msgs/s and CPU ratio is the median over rounds of that round's pair.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import psutil
import ws_load
from load import Sample, charged, run_ws
from servers import VERSION_ARGS, expose_apps, free_port, running_server, server_command
from spec import BASELINE, BENCH_DIR, CLIENT_CPU, LOG_OFF, REPO_ROOT, SERVER_CPU, BenchmarkError, Scenario

RESULTS_PATH = BENCH_DIR / "ws_results.md"
SERVERS = ("ours", "uvicorn", "granian")
LARGE = Scenario("ws_large", app="apps:ws_echo", kind="ws", connections=4, ws_mode="large")
IDLE_CONNECTIONS = 1000


def idle_kib_per_connection(python: str, port: int, server_pid: int) -> float:
    """RSS growth of the server (and its children) while IDLE_CONNECTIONS WebSockets stay open."""
    server = psutil.Process(server_pid)

    def rss() -> int:
        return sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])

    time.sleep(0.5)
    before = rss()
    cmd = ["taskset", "-c", CLIENT_CPU, python, str(BENCH_DIR / "ws_load.py"), str(port), "idle"]
    client = subprocess.Popen([*cmd, str(IDLE_CONNECTIONS), "30"], stdout=subprocess.PIPE, text=True)
    try:
        line = client.stdout.readline() if client.stdout else ""
        if line.strip() != "ready":
            raise BenchmarkError("idle client did not open its connections")
        time.sleep(1.0)
        after = rss()
    finally:
        client.kill()
        client.wait(10)
    return (after - before) / IDLE_CONNECTIONS / 1024


def installed(python: str, names: list[str]) -> list[str]:
    """The servers whose `--version` works; the others are dropped with one line each."""
    found = []
    for name in names:
        done = subprocess.run(
            [python, *VERSION_ARGS[name]], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
        if done.returncode == 0:
            found.append(name)
        else:
            print(f"{name}: skipped ({(done.stderr.strip() or '?').splitlines()[-1]})")
    return found


def paired(values: dict[str, list[float]], name: str) -> str:
    """Median over rounds of name/uvicorn, or '-' without a baseline."""
    if name == BASELINE or BASELINE not in values:
        return "-"
    return f"{statistics.median(a / b for a, b in zip(values[name], values[BASELINE], strict=True) if b):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    names = installed(args.python, [n.strip() for n in args.servers.split(",") if n.strip() in SERVERS])
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    connections = LARGE.connections or 1
    memory: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="asgi-ws-bench-") as tmp, ExitStack() as stack:
        app_dir = expose_apps(Path(tmp))
        ports, pids = {}, {}
        for name in names:
            ports[name] = port = free_port()
            cmd = server_command(args.python, name, LARGE, LOG_OFF, port)
            pids[name] = stack.enter_context(running_server(cmd, port, app_dir)).pid
            ws_load.check_echo(port)
        for name in names:  # memory first, on fresh processes
            memory[name] = idle_kib_per_connection(args.python, ports[name], pids[name])
            print(f"  {name:8} idle {memory[name]:7.1f} KiB per WebSocket", flush=True)
        for name in names:
            run_ws(args.python, ports[name], "large", 1.0, connections)  # warm-up, discarded
        for _ in range(args.rounds):
            for name in names:
                client = partial(run_ws, args.python, ports[name], "large", args.duration, connections)
                sample = charged(pids[name], client)
                samples[name].append(sample)
                micros = sample.cpu_us or 0.0
                print(f"  large {name:8} {sample.rate:8.0f} msgs/s {micros:8.1f} µs/msg", flush=True)
    rates = {name: [s.rate for s in runs] for name, runs in samples.items()}
    cpu = {name: [s.cpu_us or 0.0 for s in runs] for name, runs in samples.items()}
    mem = {name: [value] for name, value in memory.items()}
    lines = [
        "# WebSocket extras: idle memory and 1 MiB echoes (ours, uvicorn, granian)",
        "",
        "The per-message echo rows (ws_roundtrip, ws_batched) are in results.md (run.py).",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- command: `python benchmarks/ws_run.py {' '.join(sys.argv[1:])}`",
        "- servers: the commands of results.md with app `apps:ws_echo` (uvicorn's and ours' --ws: auto)",
        f"- runs: {args.rounds} x {args.duration:g} s per server, alternating; server CPU {SERVER_CPU}, "
        f"client CPU {CLIENT_CPU}; python {sys.version.split()[0]}",
        "",
        "| server | large msgs/s | msgs/s ÷ uvicorn | CPU µs/msg | CPU ÷ uvicorn "
        f"| idle KiB per WebSocket ({IDLE_CONNECTIONS} open) | KiB ÷ uvicorn |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {statistics.median(rates[name]):.0f} | {paired(rates, name)} "
            f"| {statistics.median(cpu[name]):.1f} | {paired(cpu, name)} "
            f"| {memory[name]:.1f} | {paired(mem, name)} |"
        )
    text = "\n".join([*lines, ""])
    print("\n" + text)
    args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
