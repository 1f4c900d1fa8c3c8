"""Instructions per request, counted by valgrind's callgrind: a before/after that noise cannot move.

    python benchmarks/instructions.py 0437ad6 current --app apps:plain --requests 2000

A wrk run on a shared two-core machine moves by several percent between rounds; callgrind counts
the instructions the server executes, which is the same for the same code, inputs and interpreter
whatever else the machine is doing (two runs of one commit differ by about 0.1%). It cannot show
what a change does to syscalls or the kernel (use compare_commits.py for req/s and CPU time); it
shows what it does to our Python, to 0.1%.

Each entry (a git revision, or ``current`` for the working copy) is served by
``python -m asgi_worker APP`` from its own worktree under callgrind, twice: once for ``--requests``
keep-alive GETs over 4 connections (one in flight each, as wrk does) and once for twice as many.
The difference of the two runs' instructions, divided by ``--requests``, is the figure: startup and
shutdown cancel out. Needs valgrind (Debian package valgrind).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CURRENT = "current"
OTHER_SERVERS = ("uvicorn", "ceiling")  # entries that are not our commits: the same app on those
WARMUP = 200
CONNECTIONS = 4
START_TIMEOUT = 60.0  # callgrind makes startup some 50 times slower


def send_requests(port: int, total: int) -> None:
    """``total`` GETs over ``CONNECTIONS`` keep-alive connections, each waiting for its response."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def one_connection(count: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            for _ in range(count):
                sock.sendall(request)
                data = b""
                while True:
                    data += sock.recv(65536)
                    head, found, body = data.partition(b"\r\n\r\n")
                    if not found:
                        continue
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    if len(body) >= length:
                        break

    threads = [
        threading.Thread(target=one_connection, args=(total // CONNECTIONS,)) for _ in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def send_h2_requests(port: int, total: int, streams: int) -> None:
    """``total`` GETs over one HTTP/2 connection (prior knowledge), ``streams`` in flight, by h2load."""
    command = ["h2load", "-n", str(total), "-c", "1", "-m", str(streams), f"http://127.0.0.1:{port}/"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if f"{total} succeeded" not in done.stdout:
        raise SystemExit(f"h2load did not complete {total} requests:\n{done.stdout}{done.stderr}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_accepting(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server did not accept on {port} within {START_TIMEOUT:.0f} s")


def total_instructions(
    tree: Path, app: str, requests: int, python: str, scratch: Path, h2: int, server: str
) -> int:
    """Instructions of one whole server run (startup, ``WARMUP + requests`` GETs, shutdown)."""
    port = free_port()
    out = scratch / f"callgrind.{port}.out"
    quiet = ("--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning")
    if server == "uvicorn":
        serve = [python, "-m", "uvicorn", app, "--port", str(port), *quiet]
    elif server == "ceiling":  # the least ASGI server (ceiling.py --asgi): what any server must spend
        serve = [python, str(ROOT / "benchmarks" / "ceiling.py"), "--port", str(port), "--asgi", app]
    else:
        serve = [python, "-m", "asgi_worker", app, "--port", str(port), *quiet, *(("--http2",) if h2 else ())]
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *serve]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    proc = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_accepting(port, proc)
        if h2:
            send_h2_requests(port, WARMUP, h2)
            send_h2_requests(port, requests, h2)
        else:
            send_requests(port, WARMUP + requests)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no instruction count in {out}")


def count(
    tree: Path, app: str, requests: int, python: str, scratch: Path, h2: int, server: str = "ours"
) -> int:
    """Instructions per request: two whole runs, ``requests`` apart, so startup and shutdown cancel."""
    once = total_instructions(tree, app, requests, python, scratch, h2, server)
    twice = total_instructions(tree, app, 2 * requests, python, scratch, h2, server)
    return (twice - once) // requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "commits",
        nargs="+",
        help="git revisions, 'current' for the working copy, 'uvicorn' or 'ceiling' (ceiling.py --asgi)",
    )
    parser.add_argument("--app", default="apps:plain", help="module:attribute, benchmarks/ on the path")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--h2",
        type=int,
        default=0,
        metavar="STREAMS",
        help="serve --http2 and send by h2load over one connection with STREAMS in flight (needs h2load)",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="asgi-worker-ir-") as tmp:
        scratch = Path(tmp)
        for index, commit in enumerate(args.commits):
            tree = ROOT
            if commit in OTHER_SERVERS:
                results.append(
                    (commit, count(tree, args.app, args.requests, args.python, scratch, 0, commit))
                )
                print(f"{commit:12} {results[-1][1]:>9} instructions/request", flush=True)
                continue
            if commit != CURRENT:
                tree = scratch / f"tree{index}"
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), commit],
                    check=True,
                )
            try:
                results.append((commit, count(tree, args.app, args.requests, args.python, scratch, args.h2)))
            finally:
                if commit != CURRENT:
                    subprocess.run(
                        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
                    )
            print(f"{commit:12} {results[-1][1]:>9} instructions/request", flush=True)
    base = results[0][1]
    mode = f"HTTP/2, {args.h2} streams in flight" if args.h2 else "HTTP/1.1"
    print(f"\n{args.app}, {args.requests} requests, {mode}; ratio to {results[0][0]}")
    print("| entry | instructions/request | ratio |\n| --- | ---: | ---: |")
    for commit, value in results:
        print(f"| {commit} | {value} | {value / base:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
