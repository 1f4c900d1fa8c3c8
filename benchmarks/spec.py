"""What the benchmark measures: the servers, the scenarios, the log passes, and the fixed setup.

Kept apart from the code that runs them so that adding a scenario (an app in apps.py plus one
row here) touches no process or parsing logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results.md"

HOST = "127.0.0.1"
# The server gets CPU 0 and wrk CPU 1, so the client never steals cycles from what it measures.
SERVER_CPU = "0"
CLIENT_CPU = "1"
WARMUP_SECONDS = 1
UPLOAD_SIZE = 1024 * 1024

# Benchmark name -> module run with `python -m`. Both take uvicorn 0.54's flag names.
SERVERS = {"ours": "asgi_worker", "uvicorn": "uvicorn"}
COMMON_FLAGS = ("--loop", "uvloop", "--http", "httptools")


class BenchmarkError(RuntimeError):
    """A precondition, a server or wrk failed; the message says which and what to look at."""


@dataclass(frozen=True)
class Scenario:
    """One app from apps.py (same name) and the request wrk sends to it."""

    name: str
    method: str = "GET"
    body_size: int = 0


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("plain"),
        Scenario("json_1k"),
        Scenario("body_64k"),
        Scenario("streamed"),
        Scenario("upload", method="POST", body_size=UPLOAD_SIZE),
    )
}


@dataclass(frozen=True)
class LogPass:
    """A logging configuration that every scenario is run under."""

    name: str
    flags: tuple[str, ...]
    ours_only: tuple[str, ...] = ()  # flags uvicorn lacks; it runs the pass with its default line


# The access-log pass needs `info`: at `warning` uvicorn drops every access line before writing
# it, and the pass would measure only the filtered call.
LOG_PASSES = (
    LogPass("access log off", ("--no-access-log", "--log-level", "warning")),
    LogPass("access log on", ("--access-log", "--log-level", "info")),
    # gunicorn's default access format through --access-log-format (issue: costs <= 35%).
    LogPass(
        "access log, gunicorn format",
        ("--access-log", "--log-level", "info"),
        ("--access-log-format", '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'),
    ),
)
