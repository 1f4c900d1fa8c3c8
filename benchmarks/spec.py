"""What the benchmark measures: the servers, the scenarios (rows), the log passes, the fixed setup.

Kept apart from the code that runs them so that adding a row (an app plus one Scenario here)
touches no process or parsing logic; how each server is started lives in servers.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import apps

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results.md"

HOST = "127.0.0.1"
# The server gets CPU 0 and the client CPU 1, so the client never steals cycles from what it measures.
SERVER_CPU = "0"
CLIENT_CPU = "1"
WARMUP_SECONDS = 1
UPLOAD_SIZE = 1024 * 1024
DEFAULT_CONNECTIONS = 64  # wrk -c of the rows that do not fix their own (--connections)
BASELINE = "uvicorn"  # every ratio is X / this server, measured in the same rounds
# uvicorn 0.54's flag names, taken by ours, uvicorn and asgi-supervise alike.
COMMON_FLAGS = ("--loop", "uvloop", "--http", "httptools")


class BenchmarkError(RuntimeError):
    """A precondition, a server or a client failed; the message says which and what to look at."""


@dataclass(frozen=True)
class Server:
    """A server under test. How it starts is servers.py's business; this says where it takes part.

    `serves` limits it to some rows (None: every row); `all_passes` is False for servers measured
    only with the access log off; `front_door` puts it in the front-door table rather than the
    main ones, and makes it selectable with --front-doors instead of --servers.
    """

    name: str
    serves: frozenset[str] | None = None
    all_passes: bool = True
    front_door: bool = False

    def takes(self, scenario: Scenario) -> bool:
        return self.serves is None or scenario.name in self.serves


# The raw-uvloop floor (ceiling.py): the GET rows whose whole response can be precomputed...
CEILING_ROWS = frozenset(
    {"plain", "json_1k", "body_64k", "body_1m", "chunked_16x1k", "one_conn", "conns_512"}
)
# ...and the framework rows, where the framework's own work is most of the cost: there the ceiling
# is the framework under the least ASGI server (ceiling.py --asgi), and the report says so.
CEILING_ASGI_ROWS = frozenset({"starlette_plain", "fastapi_get"})
# Our other entry points, each for one request-bound and one data-bound row.
FRONT_DOOR_ROWS = frozenset({"plain", "body_1m"})

SERVERS = {
    s.name: s
    for s in (
        Server("ours"),
        Server("uvicorn"),
        Server("granian"),
        Server("ceiling", serves=CEILING_ROWS | CEILING_ASGI_ROWS, all_passes=False),
        Server("ours_gunicorn", serves=FRONT_DOOR_ROWS, all_passes=False, front_door=True),
        Server("ours_supervised", serves=FRONT_DOOR_ROWS, all_passes=False, front_door=True),
    )
}
MAIN_SERVERS = tuple(name for name, s in SERVERS.items() if not s.front_door)
FRONT_DOORS = tuple(name for name, s in SERVERS.items() if s.front_door)


@dataclass(frozen=True)
class Scenario:
    """One row: the app served, the request or WebSocket load sent to it, and what it must answer.

    `expect` is the exact body the pre-load check insists on (HTTP rows); `chunked` makes the check
    insist on chunked framing too. `payload` is the bytes per request that MB/s counts (0: no MB/s).
    `all_passes` rows run under every log pass with `--log-passes all`; the rest only with the
    access log off. `requires` names modules the servers must import (skipped when missing).
    """

    name: str
    app: str = ""  # "module:attribute"; default apps:<name>
    kind: str = "http"  # or "ws"
    method: str = "GET"
    body_size: int = 0
    connections: int | None = None  # None: --connections
    expect: bytes = b""
    chunked: bool = False
    payload: int = 0
    ws_mode: str = ""  # ws_load.py's mode for a ws row
    requires: tuple[str, ...] = ()
    all_passes: bool = False

    @property
    def target(self) -> str:
        return self.app or f"apps:{self.name}"


_FASTAPI_BODY = json.dumps({"message": "Hello, world!"}, separators=(",", ":")).encode()

SCENARIOS = {
    s.name: s
    for s in (
        Scenario("plain", expect=apps.PLAIN_BODY, all_passes=True),
        Scenario("json_1k", expect=apps.JSON_BODY, all_passes=True),
        Scenario("body_64k", expect=apps.BODY_64K, payload=len(apps.BODY_64K), all_passes=True),
        Scenario("body_1m", expect=apps.BODY_1M, payload=len(apps.BODY_1M)),
        Scenario("chunked_16x1k", expect=apps.CHUNK_1K * apps.CHUNKS_1K, chunked=True),
        Scenario("streamed", expect=apps.STREAM_CHUNK * apps.STREAM_CHUNKS, chunked=True, all_passes=True),
        Scenario(
            "upload",
            method="POST",
            body_size=UPLOAD_SIZE,
            expect=str(UPLOAD_SIZE).encode(),
            payload=UPLOAD_SIZE,
            all_passes=True,
        ),
        Scenario("conns_512", app="apps:plain", connections=512, expect=apps.PLAIN_BODY),
        Scenario("one_conn", app="apps:plain", connections=1, expect=apps.PLAIN_BODY),
        Scenario(
            "starlette_plain",
            app="framework_apps:starlette_plain",
            expect=apps.PLAIN_BODY,
            requires=("starlette",),
        ),
        Scenario(
            "fastapi_get",
            app="framework_apps:fastapi_get",
            expect=_FASTAPI_BODY,
            requires=("starlette", "fastapi"),
        ),
        # One 64 B message in flight per connection: the round trip's latency and its cost.
        Scenario("ws_roundtrip", app="apps:ws_echo", kind="ws", connections=32, ws_mode="roundtrip"),
        # 50 messages of 32 B in flight per connection: throughput; the client cannot time one.
        Scenario("ws_batched", app="apps:ws_echo", kind="ws", connections=16, ws_mode="small"),
    )
}


@dataclass(frozen=True)
class LogPass:
    """A logging configuration; servers.py turns it into each server's own flags."""

    name: str
    access_log: bool
    level: str
    ours_format: str = ""  # --access-log-format, for ours only (uvicorn and granian keep their line)


# The access-log passes need `info`: at `warning` uvicorn drops every access line before writing
# it, and the pass would measure only the filtered call.
LOG_OFF = LogPass("access log off", access_log=False, level="warning")
LOG_PASSES = (
    LOG_OFF,
    LogPass("access log on", access_log=True, level="info"),
    # gunicorn's default access format through --access-log-format (issue: costs <= 35%).
    LogPass(
        "access log, gunicorn format",
        access_log=True,
        level="info",
        ours_format='%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    ),
)
