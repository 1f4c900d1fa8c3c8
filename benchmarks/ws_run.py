"""WebSocket echo benchmark: asgi_worker against uvicorn, same app, same client, alternating runs.

Usage: python benchmarks/ws_run.py [--rounds N] [--duration S] [--quick]

Scenarios (client: ws_load.py, pinned to the client CPU; server pinned to the server CPU):
- small: 16 connections, each keeping 50 messages of 32 bytes in flight, echoed back;
- large: 4 connections, one 1 MiB binary message at a time, echoed back;
- idle memory: the server's RSS growth per idle open WebSocket, over 1000 of them.
Ratios are ours/uvicorn: msgs/s above 1 is better, KiB per connection below 1 is better. Each
msgs/s ratio is the median over rounds of that round's pair (the two runs back to back). Beside
it, the server's CPU time (user + system) per message, and uvicorn's over ours: on a noisy
machine this moves less than msgs/s, since time the VM steals from the server is not counted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
from servers import expose_apps, free_port, running_server
from spec import BENCH_DIR, CLIENT_CPU, COMMON_FLAGS, HOST, SERVER_CPU, SERVERS, BenchmarkError

RESULTS_PATH = BENCH_DIR / "ws_results.md"
SCENARIOS = {"small": 16, "large": 4}  # name -> connections
IDLE_CONNECTIONS = 1000
LOG_FLAGS = ("--no-access-log", "--log-level", "warning")


def server_command(python: str, module: str, port: int) -> list[str]:
    return [
        *("taskset", "-c", SERVER_CPU),
        *(python, "-m", module, "apps:ws_echo", "--host", HOST, "--port", str(port)),
        *COMMON_FLAGS,
        *LOG_FLAGS,
    ]


def run_client(python: str, port: int, *args: str, timeout: float) -> str:
    cmd = ["taskset", "-c", CLIENT_CPU, python, str(BENCH_DIR / "ws_load.py"), str(port), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchmarkError(f"ws_load failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def echo_rate(python: str, port: int, scenario: str, duration: float, server_pid: int) -> tuple[float, float]:
    """(messages per second, server CPU microseconds per message) of one client run."""
    server = psutil.Process(server_pid)
    before = server.cpu_times()
    out = run_client(python, port, scenario, str(duration), str(SCENARIOS[scenario]), timeout=duration + 60)
    after = server.cpu_times()
    result = json.loads(out.strip().splitlines()[-1])
    cpu = (after.user - before.user) + (after.system - before.system)
    return result["msgs"] / result["seconds"], cpu / result["msgs"] * 1e6


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    rates: dict[str, dict[str, list[float]]] = {s: {n: [] for n in SERVERS} for s in SCENARIOS}
    cpu: dict[str, dict[str, list[float]]] = {s: {n: [] for n in SERVERS} for s in SCENARIOS}
    memory: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="asgi-ws-bench-") as tmp, ExitStack() as stack:
        app_dir = expose_apps(Path(tmp))
        ports, pids = {}, {}
        for name, module in SERVERS.items():
            ports[name] = port = free_port()
            proc = stack.enter_context(
                running_server(server_command(args.python, module, port), port, app_dir)
            )
            pids[name] = proc.pid
        for name in SERVERS:  # memory first, on fresh processes
            memory[name] = idle_kib_per_connection(args.python, ports[name], pids[name])
            print(f"  {name:8} idle {memory[name]:7.1f} KiB per WebSocket", flush=True)
        for scenario in SCENARIOS:
            for name in SERVERS:
                echo_rate(args.python, ports[name], scenario, 1.0, pids[name])  # warm-up, discarded
            for _ in range(args.rounds):
                for name in SERVERS:
                    rate, micros = echo_rate(args.python, ports[name], scenario, args.duration, pids[name])
                    rates[scenario][name].append(rate)
                    cpu[scenario][name].append(micros)
                    print(f"  {scenario:6} {name:8} {rate:10.0f} msgs/s {micros:8.1f} CPU us/msg", flush=True)
    lines = [
        "# WebSocket benchmark results: asgi_worker vs uvicorn",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- command: `python benchmarks/ws_run.py {' '.join(sys.argv[1:])}`",
        f"- server flags: `{' '.join(COMMON_FLAGS + LOG_FLAGS)}` (uvicorn's --ws default: auto)",
        f"- runs: {args.rounds} x {args.duration:g} s per server, alternating; server CPU {SERVER_CPU}, "
        f"client CPU {CLIENT_CPU}; python {sys.version.split()[0]}",
        "",
        "| scenario | ours msgs/s | uvicorn msgs/s | ratio | ours CPU µs/msg | uvicorn CPU µs/msg "
        "| CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, by_server in rates.items():
        ours, theirs = by_server["ours"], by_server["uvicorn"]
        ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
        our_cpu, their_cpu = cpu[scenario]["ours"], cpu[scenario]["uvicorn"]
        cpu_ratio = statistics.median(b / a for a, b in zip(our_cpu, their_cpu, strict=True))
        lines.append(
            f"| {scenario} ({SCENARIOS[scenario]} conns) | {statistics.median(ours):.0f} | "
            f"{statistics.median(theirs):.0f} | {ratio:.2f} | {statistics.median(our_cpu):.1f} | "
            f"{statistics.median(their_cpu):.1f} | {cpu_ratio:.2f} |"
        )
    lines += [
        "",
        f"| idle memory per WebSocket ({IDLE_CONNECTIONS} open) | ours KiB | uvicorn KiB | ratio |",
        "|---|---:|---:|---:|",
        f"| RSS growth / connection | {memory['ours']:.1f} | {memory['uvicorn']:.1f} | "
        f"{memory['ours'] / memory['uvicorn']:.2f} |",
        "",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    RESULTS_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    os.chdir(BENCH_DIR)
    sys.exit(main())
