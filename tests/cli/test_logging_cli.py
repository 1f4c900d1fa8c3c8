"""The logs of a real ``python -m asgi_worker``, parsed back: access formats, JSON, colors, log configs.

Output is read as bytes: text mode would turn a raw ``\\r`` into a newline and hide an injection.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import SimpleNamespace

import httpx
import pytest

from tests.cli.test_cli import run_cli
from tests.processes import free_port
from tests.timing import TICK, TIMEOUT

APP = """
import asyncio

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    if scope["path"] == "/sleep":
        await asyncio.sleep(0.2)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/x-log")]})
    await send({"type": "http.response.body", "body": b"hello"})
"""

EVERY_ATOM = (
    '%(h)s|%(l)s|%(u)s|%(t)s|"%(r)s"|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(f)s|%(a)s|'
    "%(T)s|%(M)s|%(D)s|%(L)s|%(p)s|%({x-test}i)s|%({content-type}o)s|%({LOG_TEST_VALUE}e)s|%%"
)
INJECTION = "/%1b[31mred%0d%0aINFO:     forged"


@contextmanager
def logged_server(tmp_path, *args: str, env: dict[str, str] | None = None) -> Iterator[SimpleNamespace]:
    """Serve the app above; on exit stop it with SIGINT (so the access log is flushed) and keep its output."""
    (tmp_path / "logapp.py").write_text(APP)
    port = free_port()
    command = [sys.executable, "-m", "asgi_worker", "logapp:app", "--app-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--lifespan", "off", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    result = SimpleNamespace(url=f"http://127.0.0.1:{port}", stdout="", stderr="", returncode=None)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=TICK).close()
                break
            except OSError:
                time.sleep(TICK / 2)
        yield result
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=TIMEOUT)
        result.stdout, result.stderr = out.decode("latin-1"), err.decode("latin-1")
        result.returncode = proc.returncode


def get(srv, path, **kwargs):
    return httpx.get(srv.url + path, timeout=TIMEOUT, **kwargs)


def assert_no_raw_controls(text):
    for line in text.splitlines():
        assert line.isprintable(), repr(line)
    assert "\r" not in text


def test_every_atom_of_a_custom_format(tmp_path):
    with logged_server(
        tmp_path, "--access-log-format", EVERY_ATOM, env={"LOG_TEST_VALUE": "from-env"}
    ) as srv:
        before = time.time()
        headers = {"x-test": "xt", "referer": "http://ref/", "user-agent": "agent/1"}
        assert get(srv, "/sleep?a=1", headers=headers, auth=("bob", "pw")).text == "hello"
        get(srv, INJECTION, headers={"user-agent": b'ua\x9b[31m"q'})
    assert srv.returncode == 0
    first, second = srv.stdout.splitlines()
    fields = first.split("|")
    assert len(fields) == 23
    (
        h,
        dash,
        u,
        t,
        r,
        m,
        path,
        q,
        proto,
        s,
        big_b,
        b,
        f,
        a,
        secs,
        ms,
        us,
        decimal,
        p,
        xtest,
        ctype,
        env,
        pct,
    ) = fields
    assert (h, dash, u, r, m, path, q, proto) == (
        "127.0.0.1",
        "-",
        "bob",
        '"GET /sleep?a=1 HTTP/1.1"',
        "GET",
        "/sleep",
        "a=1",
        "HTTP/1.1",
    )
    assert (s, big_b, b, f, a) == ("200", "5", "5", "http://ref/", "agent/1")
    assert (xtest, ctype, env, pct) == ("xt", "text/x-log", "from-env", "%")
    assert re.fullmatch(r"<\d+>", p)
    logged_at = datetime.strptime(t, "[%d/%b/%Y:%H:%M:%S %z]").timestamp()
    assert before - 1 <= logged_at <= time.time() + 1
    assert 0.19 <= float(decimal) < 0.2 + TIMEOUT / 5
    assert decimal == f"{int(us) // 1_000_000}.{int(us) % 1_000_000:06d}"
    assert int(secs) == int(us) // 1_000_000 and int(ms) == int(us) // 1000
    # microseconds really are microseconds (uvloop's loop clock would round them to milliseconds)
    assert int(us) % 1000 or int(second.split("|")[16]) % 1000
    # Request-derived text is escaped: the decoded path, the query, the user agent.
    assert_no_raw_controls(srv.stdout)
    assert "|/\\x1b[31mred\\x0d\\x0aINFO:     forged|" in second and '|ua\\x9b[31m\\"q|' in second


def test_json_error_and_access_lines(tmp_path):
    with logged_server(tmp_path, "--log-format", "json") as srv:
        get(srv, "/boom")
        get(srv, INJECTION + "?q=1", headers={"user-agent": b"ua\x9b", "referer": "r"})
    assert srv.returncode == 0
    errors = [json.loads(line) for line in srv.stderr.splitlines()]
    access = [json.loads(line) for line in srv.stdout.splitlines()]
    for line in errors + access:
        assert set(line) >= {"time", "level", "logger", "message", "pid"}
        assert datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert any(e["message"].startswith("Started server process") for e in errors)
    (crash,) = [e for e in errors if e["level"] == "ERROR"]
    assert crash["logger"] == "asgi_worker.error" and "RuntimeError: boom" in crash["exc_info"]
    boom, injected = access
    assert boom["status"] == 500 and boom["path"] == "/boom"
    assert injected["path"] == "/\x1b[31mred\r\nINFO:     forged" and injected["query"] == "q=1"
    assert injected["user_agent"] == "ua\x9b" and injected["referer"] == "r"
    assert injected["method"] == "GET" and injected["http_version"] == "1.1" and injected["bytes"] == 5
    assert injected["client"].startswith("127.0.0.1:") and injected["duration_ms"] >= 0
    assert injected["pid"] == boom["pid"] == crash["pid"]
    assert_no_raw_controls(srv.stdout + srv.stderr)


@pytest.mark.parametrize(
    ("flag", "colored"), [("--use-colors", True), ("--no-use-colors", False), (None, False)]
)
def test_colors(tmp_path, flag, colored):
    with logged_server(tmp_path, *([flag] if flag else [])) as srv:
        get(srv, "/")
    started = next(line for line in srv.stderr.splitlines() if "Started server process" in line)
    (access,) = srv.stdout.splitlines()
    if colored:
        assert started.startswith("\x1b[32mINFO\x1b[0m:     Started")
        assert access.startswith("\x1b[32mINFO\x1b[0m:     127.0.0.1:")
        assert access.endswith('"GET / HTTP/1.1" \x1b[32m200 OK\x1b[0m')
    else:  # off, or auto with a pipe for stdout and stderr
        assert "\x1b" not in srv.stdout + srv.stderr
        assert re.fullmatch(r'INFO:     127\.0\.0\.1:\d+ - "GET / HTTP/1\.1" 200 OK', access)


LOG_CONFIGS = {
    "json": json.dumps(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"f": {"format": "CFG %(name)s %(message)s"}},
            "handlers": {
                "err": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stderr"},
                "out": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stdout"},
            },
            "loggers": {
                "asgi_worker": {"handlers": ["err"], "level": "INFO", "propagate": False},
                "asgi_worker.access": {"handlers": ["out"], "level": "INFO", "propagate": False},
            },
        }
    ),
    "yaml": """
version: 1
disable_existing_loggers: false
formatters:
  f: {format: "CFG %(name)s %(message)s"}
handlers:
  err: {class: logging.StreamHandler, formatter: f, stream: "ext://sys.stderr"}
  out: {class: logging.StreamHandler, formatter: f, stream: "ext://sys.stdout"}
loggers:
  asgi_worker: {handlers: [err], level: INFO, propagate: false}
  asgi_worker.access: {handlers: [out], level: INFO, propagate: false}
""",
    "ini": """
[loggers]
keys=root,asgi_worker,access
[handlers]
keys=err,out
[formatters]
keys=f
[logger_root]
handlers=
[logger_asgi_worker]
handlers=err
level=INFO
propagate=0
qualname=asgi_worker
[logger_access]
handlers=out
level=INFO
propagate=0
qualname=asgi_worker.access
[handler_err]
class=StreamHandler
formatter=f
args=(sys.stderr,)
[handler_out]
class=StreamHandler
formatter=f
args=(sys.stdout,)
[formatter_f]
format=CFG %(name)s %(message)s
""",
}


@pytest.mark.parametrize("suffix", ["json", "yaml", "ini"])
def test_log_config_files(tmp_path, suffix):
    config = tmp_path / f"logging.{suffix}"
    config.write_text(LOG_CONFIGS[suffix])
    with logged_server(tmp_path, "--log-config", str(config)) as srv:
        get(srv, "/x%1b")
    assert srv.returncode == 0
    assert "CFG asgi_worker.error Started server process" in srv.stderr
    (access,) = srv.stdout.splitlines()  # the logging path: the record's own message and args
    assert re.fullmatch(
        r'CFG asgi_worker\.access 127\.0\.0\.1:\d+ - "GET /x%1b HTTP/1\.1" 200 5 \d+\.\d{6}', access
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("missing.json", None),
        ("broken.json", '{"version": 1,'),
        ("broken.yaml", "version: [1\n  bad: : :"),
        ("broken.ini", "[loggers]\nkeys=root\n"),
    ],
)
def test_bad_log_config_exits_1_with_one_line(tmp_path, name, text):
    config = tmp_path / name
    if text is not None:
        config.write_text(text)
    (tmp_path / "logapp.py").write_text(APP)
    result = run_cli("logapp:app", "--app-dir", str(tmp_path), "--log-config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("asgi_worker: error: log_config") and str(config) in lines[0]
    )


def test_bad_access_log_format_exits_1(tmp_path):
    (tmp_path / "logapp.py").write_text(APP)
    result = run_cli(
        "logapp:app", "--app-dir", str(tmp_path), "--port", "0", "--access-log-format", "%(h)s %(x)s"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "asgi_worker: error: access_log_format: unknown atom %(x)s "
        "(known: h l u t r m U q H s B b f a T M D L p, {header}i, {header}o, {var}e)"
    )
