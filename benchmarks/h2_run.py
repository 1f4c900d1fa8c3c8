"""HTTP/2 side by side under h2load: asgi_worker --http2, hypercorn and granian, cleartext h2c.

Usage: python benchmarks/h2_run.py [--quick] [--rounds N] [--duration S] [--servers ours,hypercorn,granian]
                                   [--results PATH] [--python PATH]

The rows of issue 17: `1 conn x 100 streams` (h2load -c1 -m100) and `64 conns x 10 streams`
(-c64 -m10), each for `plain` and `body_64k` (apps.py). Every connection opens with the HTTP/2
preface (prior knowledge, no TLS, no Upgrade), which all three servers serve on a plain port.
The same rules as run.py: server on CPU 0, h2load on CPU 1, alternating runs, a discarded warm-up,
the server tree's CPU time per request (psutil), medians, and ratios X/hypercorn taken per round.

Why the pieces differ from run.py's:
- h2load prints min/max/mean/sd of the request time but no percentiles, so each run writes its
  per-request times (--log-file) and p99 is computed from them; that file also counts the streams
  that failed.
- hypercorn closes a connection after 1000 requests by default (keep_alive_max_requests; a GOAWAY
  on HTTP/2) and h2load does not reconnect: the run would stop after 1000 requests and count the
  rest as failed. It gets a config file lifting that cap; nothing else of its defaults changes.
- Every server's output goes to a log file, whose tail is printed when its check or a run fails:
  an HTTP/2 server that cannot serve h2c, or fails streams under load, is a loud failure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from load import WRK_SLACK, Sample, charged
from report import Table, cpu_model, markdown_table, text_table
from servers import (
    CHECK_TIMEOUT,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    expose_apps,
    free_port,
    stop_process_group,
    wait_accepting,
)
from spec import (
    BENCH_DIR,
    CLIENT_CPU,
    HOST,
    REPO_ROOT,
    SCENARIOS,
    SERVER_CPU,
    WARMUP_SECONDS,
    BenchmarkError,
    Scenario,
)

RESULTS_PATH = BENCH_DIR / "h2_results.md"
SERVERS = ("ours", "hypercorn", "granian")
BASELINE = "hypercorn"  # every ratio is X / this server, measured in the same rounds
GOAL = 3.0  # issue 17: ours at least 3x hypercorn's req/s
APPS = ("plain", "body_64k")
HYPERCORN_CONFIG = "keep_alive_max_requests = 1000000000  # default 1000: GOAWAY, and h2load gives up\n"
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Shape:
    """How h2load loads one server: connections, and streams in flight on each."""

    connections: int
    streams: int

    @property
    def label(self) -> str:
        conns = "conn" if self.connections == 1 else "conns"
        return f"{self.connections} {conns} x {self.streams} streams"


SHAPES = (Shape(1, 100), Shape(64, 10))


# --- the servers ---------------------------------------------------------------------------------


def server_command(python: str, name: str, target: str, port: int, workdir: Path) -> list[str]:
    """The exact command line of `name` serving `target` in cleartext HTTP/2, pinned to the server CPU."""
    if name == "ours":
        cmd = [python, "-m", "asgi_worker", target, "--host", HOST, "--port", str(port), "--http2"]
        cmd += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    elif name == "hypercorn":  # access log off by default; one worker process under its arbiter
        cmd = [python, "-m", "hypercorn", "-c", str(workdir / "hypercorn.toml")]
        cmd += ["--bind", f"{HOST}:{port}", "--worker-class", "uvloop", "--log-level", "warning", target]
    elif name == "granian":  # --http 2: HTTP/2 only (h2c prior knowledge in cleartext)
        cmd = [python, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port)]
        cmd += ["--loop", "uvloop", "--http", "2", "--workers", "1", "--no-access-log"]
        cmd += ["--log-level", "warning", target]
    else:
        raise BenchmarkError(f"unknown server {name!r}")
    return ["taskset", "-c", SERVER_CPU, *cmd]


@contextmanager
def logged_server(cmd: list[str], port: int, app_dir: Path, log_path: Path) -> Iterator[subprocess.Popen]:
    """servers.running_server, but the output goes to a log file we can show when something fails.

    Nothing is logged per request (access logs off, level warning), so the file costs nothing.
    """
    pythonpath = os.pathsep.join(filter(None, [str(app_dir), os.environ.get("PYTHONPATH")]))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": pythonpath},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            try:
                wait_accepting(proc, port)
            except BenchmarkError as exc:
                raise BenchmarkError(f"{exc}\n{log_tail(log_path)}") from None
            yield proc
        finally:
            stop_process_group(proc)


def log_tail(path: Path) -> str:
    """The last lines a server wrote, indented, for an error message."""
    try:
        lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return f"    (no log at {path})"
    return "\n".join(f"    | {line}" for line in lines) or f"    (the server wrote nothing to {path.name})"


def check_h2c(port: int, scenario: Scenario, workdir: Path, log_path: Path) -> None:
    """One request with curl --http2-prior-knowledge: HTTP/2, 200 and exactly the row's body.

    A server that cannot speak h2c on this port would otherwise show up as a zero (or as h2load's
    failed count) in the middle of the load; here it stops the run with the server's own log.
    """
    body_path = workdir / "check.body"
    cmd = ["curl", "--http2-prior-knowledge", "-sS", "--max-time", f"{CHECK_TIMEOUT:g}"]
    cmd += ["-o", str(body_path), "-w", "%{http_code} %{http_version}", f"http://{HOST}:{port}/"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT + 5)
    where = f"{scenario.name} on port {port}"
    got = done.stdout.strip()
    body = body_path.read_bytes() if body_path.exists() else b""
    body_path.unlink(missing_ok=True)
    problem = ""
    if done.returncode != 0:
        problem = f"curl failed ({done.returncode}): {done.stderr.strip()}"
    elif got != "200 2":
        problem = f"expected '200 2' (status, HTTP version), got {got!r}"
    elif body != scenario.expect:
        problem = f"wrong body: {len(body)} bytes {body[:40]!r}, expected {len(scenario.expect)} bytes"
    if problem:
        raise BenchmarkError(f"h2c check, {where}: {problem}\n{log_tail(log_path)}")


# --- the client ----------------------------------------------------------------------------------

_RATE = re.compile(r"^finished in [\d.]+\w+, ([\d.]+) req/s", re.MULTILINE)
_REQUESTS = re.compile(
    r"^requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored, "
    r"(?P<timeout>\d+) timeout",
    re.MULTILINE,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)


def h2load_command(port: int, shape: Shape, duration: float, log_file: Path) -> list[str]:
    """h2load, one thread on the client CPU, for `duration` seconds, each request's time logged.

    -D in milliseconds: h2load 1.52 takes "1500ms" but refuses "1.5".
    """
    cmd = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{shape.connections}", f"-m{shape.streams}"]
    return [*cmd, f"-D{round(duration * 1000)}ms", f"--log-file={log_file}", f"http://{HOST}:{port}/"]


def run_h2load(port: int, shape: Shape, duration: float, log_file: Path) -> Sample:
    """One timed h2load run: req/s, p99 from the per-request log, and every kind of failure as text.

    Never raises for what the server did: a run that failed streams, or completed none, comes back
    with `errors` set so the table flags it (and the caller shows the server's log).
    """
    log_file.unlink(missing_ok=True)  # h2load appends to an existing file
    cmd = h2load_command(port, shape, duration, log_file)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + WRK_SLACK)
    except subprocess.TimeoutExpired:
        return Sample(0.0, None, 0, f"h2load did not finish within {duration + WRK_SLACK:g} s")
    sample = parse_h2load(done.stdout)
    p99_ms, failed_streams = request_times(log_file)
    log_file.unlink(missing_ok=True)
    errors = [sample.errors] if sample.errors else []
    if done.returncode != 0:
        errors.append(f"h2load exited {done.returncode}: {(done.stderr.strip() or '?').splitlines()[-1]}")
    if failed_streams and not sample.errors:
        errors.append(f"{failed_streams} failed streams in the request log")
    return replace(sample, p99_ms=p99_ms, errors="; ".join(errors))


def parse_h2load(output: str) -> Sample:
    """req/s, succeeded requests and the failures h2load counted (failed, errored, timeout, non-2xx)."""
    rate, requests, status = _RATE.search(output), _REQUESTS.search(output), _STATUS.search(output)
    if rate is None or requests is None or status is None:
        tail = "\n".join(output.strip().splitlines()[-8:])
        return Sample(0.0, None, 0, f"could not parse h2load output: {tail!r}")
    counts = {key: int(value) for key, value in requests.groupdict().items()}
    errors = [f"{counts[key]} {key}" for key in ("failed", "errored", "timeout") if counts[key]]
    non_2xx = sum(int(n) for n in status.groups()[1:])
    if non_2xx:
        errors.append(f"{non_2xx} non-2xx")
    if counts["succeeded"] == 0:
        errors.append("no request completed")
    return Sample(float(rate.group(1)), None, counts["succeeded"], "; ".join(errors))


def request_times(log_file: Path) -> tuple[float | None, int]:
    """(p99 in ms of the completed requests, streams h2load logged as failed) from its --log-file.

    Columns: start time (µs since the epoch), status (-1: the stream failed), µs until the end of
    the response.
    """
    micros, failed = [], 0
    try:
        with log_file.open() as rows:
            for row in rows:
                fields = row.split("\t")
                if len(fields) < 3:
                    continue
                if fields[1] == "-1":
                    failed += 1
                else:
                    micros.append(int(fields[2]))
    except FileNotFoundError:
        return None, 0
    if not micros:
        return None, failed
    micros.sort()
    return micros[max(0, -(-len(micros) * 99 // 100) - 1)] / 1000, failed


# --- the measurement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One app under one shape: each server's runs, in round order."""

    scenario: Scenario
    shape: Shape
    samples: dict[str, list[Sample]]

    @property
    def label(self) -> str:
        return f"{self.shape.label}, {self.scenario.name}"

    @property
    def errors(self) -> list[str]:
        return [f"{name}: {s.errors}" for name, runs in self.samples.items() for s in runs if s.errors]


def one_run(proc: subprocess.Popen, port: int, shape: Shape, duration: float, workdir: Path) -> Sample:
    """A measured run charged with the server tree's CPU, or a failed sample if the server is gone."""
    if proc.poll() is not None:
        return Sample(0.0, None, 0, f"server exited with code {proc.returncode}")
    return charged(proc.pid, partial(run_h2load, port, shape, duration, workdir / "requests.tsv"))


def measure_app(args: argparse.Namespace, scenario: Scenario, workdir: Path, app_dir: Path) -> list[Row]:
    """Start every server on this app, check each over h2c, then per shape: warm up and alternate."""
    rows = []
    with ExitStack() as stack:
        procs, ports, logs = {}, {}, {}
        for name in args.servers:
            ports[name] = port = free_port()
            logs[name] = workdir / f"{name}-{scenario.name}.log"
            cmd = server_command(args.python, name, scenario.target, port, workdir)
            procs[name] = stack.enter_context(logged_server(cmd, port, app_dir, logs[name]))
            check_h2c(port, scenario, workdir, logs[name])
        for shape in SHAPES:
            print(f"{shape.label}, {scenario.name}", flush=True)
            for name in args.servers:  # discarded
                run_h2load(ports[name], shape, WARMUP_SECONDS, workdir / "requests.tsv")
            samples: dict[str, list[Sample]] = {name: [] for name in args.servers}
            for _ in range(args.rounds):
                for name in args.servers:
                    sample = one_run(procs[name], ports[name], shape, args.duration, workdir)
                    samples[name].append(sample)
                    p99 = "-" if sample.p99_ms is None else f"{sample.p99_ms:.2f}"
                    print(
                        f"  {name:10} {sample.rate:10.0f} req/s  p99 {p99:>7} ms  "
                        f"CPU {sample.cpu_us or 0:7.1f} µs  {sample.errors}",
                        flush=True,
                    )
                    if sample.errors:
                        print(f"  {name}'s log ({logs[name]}):\n{log_tail(logs[name])}", flush=True)
            rows.append(Row(scenario, shape, samples))
    return rows


# --- the report ----------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def pair_ratio(row: Row, name: str, field: str) -> float | None:
    """The median over rounds of name/hypercorn, each round's two runs taken back to back."""
    ours, theirs = row.samples.get(name), row.samples.get(BASELINE)
    if not ours or not theirs:
        return None
    pairs = zip((getattr(s, field) for s in ours), (getattr(s, field) for s in theirs), strict=True)
    return _median([a / b for a, b in pairs if a is not None and b])


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def build_table(rows: list[Row], servers: list[str]) -> Table:
    """Per server: median req/s, p99 and CPU µs/req; ratios X/hypercorn of req/s and of CPU."""
    others = [s for s in servers if s != BASELINE] if BASELINE in servers else []
    headers = ["row", *(f"{s} req/s" for s in servers), *(f"{s}/{BASELINE} req/s" for s in others)]
    headers += [f"{s} p99 ms" for s in servers]
    headers += [f"{s} CPU µs/req" for s in servers] + [f"{s}/{BASELINE} CPU" for s in others]
    lines = []
    for row in rows:

        def medians(field: str, spec: str, row: Row = row) -> list[str]:
            return [_fmt(_median([getattr(x, field) for x in row.samples[s]]), spec) for s in servers]

        line = [row.label + (" (!)" if row.errors else "")]
        line += medians("rate", ".0f") + [_fmt(pair_ratio(row, s, "rate"), ".2f") for s in others]
        line += medians("p99_ms", ".2f")
        line += medians("cpu_us", ".1f") + [_fmt(pair_ratio(row, s, "cpu_us"), ".2f") for s in others]
        lines.append(line)
    return Table("HTTP/2 rows (h2c prior knowledge)", headers, lines)


def goal_line(rows: list[Row]) -> str:
    """Whether ours reaches GOAL x hypercorn's req/s, row by row."""
    ratios = [(row.label, pair_ratio(row, "ours", "rate")) for row in rows]
    measured = [(label, r) for label, r in ratios if r is not None]
    if not measured:
        return f"Goal (issue 17), ours/{BASELINE} req/s >= {GOAL:g}: not measured."
    met = sum(r >= GOAL for _, r in measured)
    detail = ", ".join(f"{label} {r:.2f}" for label, r in measured)
    head = f"Goal (issue 17), ours/{BASELINE} req/s >= {GOAL:g}"
    return f"{head}: met on {met} of {len(measured)} rows ({detail})."


_VERSION_PROBE = (
    "import json, platform, importlib.metadata as m\n"
    "def v(n):\n"
    "    try:\n"
    "        return m.version(n)\n"
    "    except m.PackageNotFoundError:\n"
    "        return 'not installed'\n"
    "facts = {'python': platform.python_implementation() + ' ' + platform.python_version()}\n"
    "facts.update({n: v(n) for n in ('asgi-worker', 'h2', 'uvloop', 'httptools', 'hypercorn', 'granian')})\n"
    "print(json.dumps(facts))\n"
)


def environment(python: str) -> dict[str, str]:
    """Facts that make a result comparable: versions (of the servers' interpreter), tools, CPU, kernel."""
    done = subprocess.run(
        [python, "-c", _VERSION_PROBE], capture_output=True, text=True, timeout=30, check=True
    )
    facts = json.loads(done.stdout)
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True, timeout=10).stdout
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=10).stdout
    facts["h2load"] = h2load.strip().splitlines()[0] if h2load.strip() else "?"
    facts["curl (the h2c check)"] = " ".join(curl.split()[:2]) if curl.strip() else "?"
    facts["cpu"] = f"{cpu_model()} ({os.cpu_count()} cores)"
    facts["kernel"] = f"{platform.system()} {platform.release()}"
    return facts


def write_markdown(path: Path, args: argparse.Namespace, rows: list[Row], facts: dict[str, str]) -> None:
    """The results file: how it was made (commands, versions, machine), the table, the goal, failures."""
    table = build_table(rows, args.servers)
    commands = {
        name: shlex.join(server_command("python", name, "apps:plain", 0, Path("/tmp/h2bench")))
        .replace("--port 0", "--port PORT")
        .replace(f"{HOST}:0", f"{HOST}:PORT")
        for name in args.servers
    }
    client = shlex.join(h2load_command(0, Shape(64, 10), args.duration, Path("/tmp/h2bench/requests.tsv")))
    client = client.replace(f"{HOST}:0/", f"{HOST}:PORT/")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# HTTP/2 benchmark: asgi_worker --http2, hypercorn and granian (h2load, cleartext h2c)",
        "",
        f"Ratios are X/{BASELINE}, each the median over rounds of that round's pair of runs: above 1 is"
        " better for req/s, below 1 is better for CPU per request. Only the ratios carry over to other"
        " machines. CPU µs/req is the server's whole process tree (utime + stime, psutil) over the run,"
        " divided by the requests it completed. p99 is computed from h2load's per-request log"
        " (--log-file): h2load itself prints only min/max/mean/sd of the request time.",
        "",
        f"- date: {now}",
        f"- command: `{shlex.join(['python', 'benchmarks/h2_run.py', *args.argv])}`",
        f"- runs: {args.rounds} x {args.duration:g} s per server and row, alternating, medians;"
        f" {WARMUP_SECONDS} s warm-up per server and row discarded",
        f"- client (row `64 conns x 10 streams`; the other row -c1 -m100): `{client}`",
        f"- pinning: server on CPU {SERVER_CPU} (taskset), client on CPU {CLIENT_CPU}",
        *(f"- {key}: {value}" for key, value in facts.items()),
        "- server commands (row `plain`; `body_64k` serves apps:body_64k):",
        *(f"  - {name}: `{command}`" for name, command in commands.items()),
    ]
    if "hypercorn" in args.servers:
        lines.append(f"- hypercorn.toml: `{HYPERCORN_CONFIG.strip()}`")
    lines += ["", f"## {table.title}", "", markdown_table(table), "", goal_line(rows), ""]
    failures = [f"- {row.label}: {error}" for row in rows for error in row.errors]
    if failures:
        lines += ["(!) failures (h2load's counts, or the server was gone):", "", *failures, ""]
    path.write_text("\n".join(lines))


# --- the command line ----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """`--quick` sets 1 round of 2 s unless --rounds/--duration say otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--rounds", type=int, help="measured runs per server and row (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 5)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the servers")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the markdown file to write")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s (a smoke test)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    args.duration = args.duration if args.duration is not None else (2.0 if args.quick else 5.0)
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in args.servers if name not in SERVERS]
    if unknown or not args.servers:
        parser.error(f"unknown or empty --servers {unknown or ''}; known: {', '.join(SERVERS)}")
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds and --duration must be positive")
    args.argv = argv
    return args


def preflight(args: argparse.Namespace) -> list[str]:
    """Fail before any load if a tool, a core or our h2 is missing; drop absent baselines loudly."""
    for tool in ("h2load", "curl", "taskset"):
        if shutil.which(tool) is None:
            raise BenchmarkError(f"{tool} not found; run: bash benchmarks/setup.sh")
    if not {0, 1} <= os.sched_getaffinity(0):
        raise BenchmarkError("need CPUs 0 and 1: the server and the client are pinned apart")
    needs = {"ours": "asgi_worker, h2", "hypercorn": "hypercorn", "granian": "granian"}
    available = []
    for name in args.servers:
        probe = f"import {needs[name]}"
        done = subprocess.run(
            [args.python, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
        if done.returncode == 0:
            available.append(name)
            continue
        last = (done.stderr.strip() or "?").splitlines()[-1]
        if name == "ours":
            raise BenchmarkError(f"ours cannot serve --http2: {last} (pip install -e '.[standard,http2]')")
        print(f"{name}: skipped, not installed ({last}); see benchmarks/setup.sh")
    if BASELINE not in available:
        print(f"no {BASELINE}: no ratios, the run only validates the harness")
    return available


def time_budget(args: argparse.Namespace) -> int:
    """Upper bound in seconds for the whole run: every step's own timeout, summed, plus a minute."""
    per_server_app = STARTUP_TIMEOUT + CHECK_TIMEOUT + 5 + STOP_TIMEOUT
    per_server_app += len(SHAPES) * (WARMUP_SECONDS + WRK_SLACK + args.rounds * (args.duration + WRK_SLACK))
    return int(len(APPS) * len(args.servers) * per_server_app) + 60


def _on_alarm(signum: int, frame: object) -> None:
    raise TimeoutError("benchmark exceeded its time budget")


def main(argv: list[str] | None = None) -> int:
    """Preflight, measure under the time budget, print the table, write the results file.

    Exit status: 0 clean; 1 on a failure that stopped the run (one line on stderr, the server's log
    under it); 2 when the run finished but some run failed requests (flagged in the file too).
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        args.servers = preflight(args)
        budget = time_budget(args)
        print(f"servers: {', '.join(args.servers)}; {len(APPS) * len(SHAPES)} rows; time budget {budget} s")
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(budget)
        rows: list[Row] = []
        try:
            with tempfile.TemporaryDirectory(prefix="asgi-h2-bench-") as tmp:
                workdir = Path(tmp)
                (workdir / "hypercorn.toml").write_text(HYPERCORN_CONFIG)
                app_dir = expose_apps(workdir)
                for app in APPS:
                    rows += measure_app(args, SCENARIOS[app], workdir, app_dir)
        finally:
            signal.alarm(0)
        facts = environment(args.python)
    except (BenchmarkError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    table = build_table(rows, args.servers)
    print()
    print(text_table(table))
    print(goal_line(rows))
    for row in rows:
        for error in row.errors:
            print(f"(!) {row.label}: {error}")
    write_markdown(args.results, args, rows, facts)
    print(f"\nwritten: {args.results}")
    return 2 if any(row.errors for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
