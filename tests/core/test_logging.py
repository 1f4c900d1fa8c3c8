"""Logging in process: the compiled access format, JSON, colors, log-config files, escaping, both paths.

The subprocess half (stdout and stderr of a real server, exit codes) is tests/cli/test_logging_cli.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import sys
import time
from datetime import datetime
from types import SimpleNamespace

import httpx
import pytest

from asgi_worker.errors import ConfigError
from asgi_worker.log import (
    AccessFormatter,
    DefaultFormatter,
    JsonFormatter,
    compile_access_format,
    configure_logging,
    escape_controls,
    escape_field,
)
from asgi_worker.log.access_format import ATOMS, clf_time
from asgi_worker.log.access_line import AccessEntry
from asgi_worker.log.json import iso_time
from tests.conftest import run_server
from tests.timing import TIMEOUT

EVERY_ATOM = (
    '%(h)s|%(l)s|%(u)s|%(t)s|"%(r)s"|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(f)s|%(a)s|'
    "%(T)s|%(M)s|%(D)s|%(L)s|%(p)s|%({x-test}i)s|%({content-type}o)s|%({ASGI_WORKER_LOG_TEST}e)s|%%"
)
LOGGERS = ("", "asgi_worker", "asgi_worker.error", "asgi_worker.access")


@pytest.fixture(autouse=True)
def restore_logging():
    """Whatever a test configures, the next test sees the loggers as they were."""
    saved = [
        (logging.getLogger(n), list(logging.getLogger(n).handlers), logging.getLogger(n).level)
        for n in LOGGERS
    ]
    flags = [(logger.propagate, logger.disabled) for logger, _, _ in saved]
    yield
    for (logger, handlers, level), (propagate, disabled) in zip(saved, flags, strict=True):
        logger.handlers = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def fake_cycle(path="/p", query=b"a=1", headers=(), response_headers=(), status=200, size=5, client=None):
    scope = {
        "client": client or ("10.0.0.1", 5000),
        "method": "GET",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": query,
        "http_version": "1.1",
        "headers": list(headers),
    }
    return SimpleNamespace(scope=scope, status=status, bytes_sent=size, response_headers=response_headers)


def basic(user: str, password: str = "pw") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


# The compiled format


def test_every_atom_field_by_field(monkeypatch):
    monkeypatch.setenv("ASGI_WORKER_LOG_TEST", "env-value")
    render = compile_access_format(EVERY_ATOM)
    cycle = fake_cycle(
        headers=[
            (b"x-test", b"first"),
            (b"authorization", basic("bob")),
            (b"referer", b"http://ref/"),
            (b"user-agent", b"agent/1"),
            (b"x-test", b"last"),
        ],
        response_headers=[(b"Content-Type", b"text/plain")],
    )
    wall = 1_700_000_000.25
    fields = render(cycle, 1.2345678, wall).split("|")
    assert fields == [
        "10.0.0.1",
        "-",
        "bob",
        clf_time(wall),
        '"GET /p?a=1 HTTP/1.1"',
        "GET",
        "/p",
        "a=1",
        "HTTP/1.1",
        "200",
        "5",
        "5",
        "http://ref/",
        "agent/1",
        "1",
        "1234",
        "1234567",
        "1.234567",
        f"<{os.getpid()}>",
        "last",  # repeated header: the last one wins, as in gunicorn
        "text/plain",
        "env-value",
        "%",
    ]


def test_missing_values_are_dashes():
    render = compile_access_format("%(u)s %(b)s %(f)s %(a)s %({x}i)s %({x}o)s %({NO_SUCH_VAR_XYZ}e)s")
    assert render(fake_cycle(size=0), 0.0, time.time()) == "- - - - - - -"


def test_printf_flags_and_numeric_conversions():
    render = compile_access_format("[%(m)-6s] %(s)d %(B)05d")
    assert render(fake_cycle(status=404, size=42), 0.0, 0.0) == "[GET   ] 404 00042"


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [
        ("%(x)s", "unknown atom %(x)s"),
        ("%(h)s %", "stray '%'"),
        ("100% %(h)s", "stray '%'"),
        ("%(h)d", "%(h)d is not allowed"),
        ("%(s)r", "%(s)r is not allowed"),
        ("%({x-test}z)s", "unknown atom"),
    ],
)
def test_bad_format_is_a_one_line_config_error(fmt, needle):
    with pytest.raises(ConfigError) as info:
        compile_access_format(fmt)
    message = str(info.value)
    assert needle in message and message.startswith("access_log_format") and "\n" not in message


def test_format_text_is_never_code():
    render = compile_access_format('%({"; import os; #}i)s \')"\\ %(h)s')
    assert render(fake_cycle(), 0.0, 0.0) == "- ')\"\\ 10.0.0.1"


@pytest.mark.parametrize(
    ("authorization", "user"),
    [
        (basic("alice", "a:b"), "alice"),
        (b"basic " + base64.b64encode(b"lower:x"), "lower"),
        (b"Basic !!!not-base64", "-"),
        (b"Bearer abc", "-"),
        (basic(""), "-"),
        (basic("ev\x1b[31mil\r\n"), "ev\\x1b[31mil\\x0d\\x0a"),
    ],
)
def test_basic_auth_user(authorization, user):
    render = compile_access_format("%(u)s")
    assert render(fake_cycle(headers=[(b"authorization", authorization)]), 0.0, 0.0) == user


def test_clf_time_parses_back():
    wall = time.time()
    parsed = datetime.strptime(clf_time(wall), "[%d/%b/%Y:%H:%M:%S %z]")
    assert abs(parsed.timestamp() - wall) < 1
    assert clf_time(wall) is clf_time(wall)  # cached per second


def test_atom_table_is_gunicorns():
    assert set(ATOMS) == set("hlutrmUqHsBbfaTMDLp")


# Escaping


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("/plain/é", "/plain/é"),
        ("/\x1b[31mred", "/\\x1b[31mred"),
        ("/a\r\nINFO: forged", "/a\\x0d\\x0aINFO: forged"),
        ("/\x9b31m\x7f", "/\\x9b31m\\x7f"),
        ("/\u2028\u202e", "/\\u2028\\u202e"),
    ],
)
def test_escape_controls(raw, escaped):
    assert escape_controls(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("Mozilla/5.0", "Mozilla/5.0"),
        ('x" 200 0 "-" "forged', 'x\\" 200 0 \\"-\\" \\"forged'),
        ("C:\\x0a", "C:\\\\x0a"),  # a literal backslash cannot pass for one of our escapes
        ('\x1b"', '\\x1b\\"'),
        ("\u2028\\", "\\u2028\\\\"),
    ],
)
def test_escape_field(raw, escaped):
    assert escape_field(raw) == escaped


def test_a_quote_in_a_header_cannot_add_fields_to_a_gunicorn_line():
    render = compile_access_format('"%(r)s" %(s)s "%(f)s" "%(a)s"')
    agent = b'evil" 500 "http://forged" "x'
    line = render(fake_cycle(headers=[(b"user-agent", agent), (b"referer", b"\\")]), 0.0, 0.0)
    fields = re.findall(r'"((?:[^"\\]|\\.)*)"', line)  # an Apache-style quoted-field reader
    assert len(fields) == 3
    assert fields[1] == "\\\\" and fields[2] == 'evil\\" 500 \\"http://forged\\" \\"x'


def test_request_values_are_escaped_in_the_custom_format():
    render = compile_access_format("%(U)s %(q)s %(a)s %({x}i)s %({x}o)s %(r)s")
    cycle = fake_cycle(
        path="/\x1b[31m",
        query=b"\r\n",
        headers=[(b"user-agent", b"\x9b1m"), (b"x", b"a\x85")],
        response_headers=[(b"X", b"\x1b")],
    )
    line = render(cycle, 0.0, 0.0)
    assert line == "/\\x1b[31m \\x0d\\x0a \\x9b1m a\\x85 \\x1b GET /\\x1b[31m?\\x0d\\x0a HTTP/1.1"
    assert line.isprintable()


# JSON


def test_json_error_record_with_traceback():
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        record = logging.getLogger("asgi_worker.error").makeRecord(
            "asgi_worker.error", logging.ERROR, __file__, 1, "failed %s", ("\x1b[31m",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\x1b" not in line and "\n" not in line
    data = json.loads(line)
    assert data["level"] == "ERROR" and data["logger"] == "asgi_worker.error"
    assert data["message"] == "failed \x1b[31m" and data["pid"] == os.getpid()
    assert "RuntimeError: kaput" in data["exc_info"]
    assert datetime.strptime(data["time"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_iso_time_is_utc_with_milliseconds():
    assert iso_time(0.5) == "1970-01-01T00:00:00.500Z"
    assert iso_time(1_700_000_000.1235) == "2023-11-14T22:13:20.123Z"


def test_json_access_line_fields():
    cycle = fake_cycle(
        path="/\x1b[31m\r\n",
        query=b"q=1",
        headers=[(b"referer", b"http://r/"), (b"user-agent", b"ua\x9b")],
        status=201,
        size=7,
    )
    line = AccessEntry(cycle, 0.2005, 1_700_000_000.0, None).json_line(1234)
    assert line.isascii() and line.isprintable()
    data = json.loads(line)
    assert data == {
        "time": "2023-11-14T22:13:20.000Z",
        "level": "INFO",
        "logger": "asgi_worker.access",
        "message": '10.0.0.1:5000 - "GET /\\x1b[31m\\x0d\\x0a?q=1 HTTP/1.1" 201 Created',
        "pid": 1234,
        "client": "10.0.0.1:5000",
        "method": "GET",
        "path": "/\x1b[31m\r\n",
        "query": "q=1",
        "http_version": "1.1",
        "status": 201,
        "bytes": 7,
        "duration_ms": 200.5,
        "referer": "http://r/",
        "user_agent": "ua\x9b",
    }


# Colors


def record(level=logging.INFO, message="hello"):
    return logging.LogRecord("asgi_worker.error", level, __file__, 1, message, None, None)


def test_colors_forced_on_and_off():
    assert DefaultFormatter(use_colors=True).format(record()) == "\x1b[32mINFO\x1b[0m:     hello"
    assert DefaultFormatter(use_colors=True).format(record(logging.ERROR)) == "\x1b[31mERROR\x1b[0m:    hello"
    assert DefaultFormatter(use_colors=False).format(record()) == "INFO:     hello"
    assert DefaultFormatter().format(record(logging.CRITICAL)) == "CRITICAL: hello"


class TtyStream(io.StringIO):
    def isatty(self):
        return True


def logging_to(stream, formatter="asgi_worker.log.DefaultFormatter", **formatter_options):
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"f": {"()": formatter, **formatter_options}},
        "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f", "stream": stream}},
        "loggers": {"asgi_worker": {"handlers": ["h"], "level": "INFO", "propagate": False}},
    }


@pytest.mark.parametrize(
    ("stream_class", "use_colors", "colored"),
    [
        (TtyStream, None, True),  # auto: a terminal gets colors
        (io.StringIO, None, False),  # auto: a pipe or file does not
        (io.StringIO, True, True),
        (TtyStream, False, False),
    ],
)
def test_colors_auto_follows_isatty_unless_forced(stream_class, use_colors, colored):
    stream = stream_class()
    configure_logging(logging_to(stream), None, True, use_colors)
    logging.getLogger("asgi_worker.error").info("hi")
    assert stream.getvalue() == ("\x1b[32mINFO\x1b[0m:     hi\n" if colored else "INFO:     hi\n")


def test_a_formatters_own_use_colors_wins_over_auto():
    stream = io.StringIO()
    configure_logging(logging_to(stream, use_colors=True), None, True)
    logging.getLogger("asgi_worker.error").info("hi")
    assert stream.getvalue().startswith("\x1b[32mINFO")


def test_json_replaces_our_formatters_and_never_colors():
    stream = TtyStream()
    configure_logging(logging_to(stream), None, True, True, "json")
    logging.getLogger("asgi_worker.error").warning("careful \x1b")
    line = stream.getvalue()
    assert "\x1b" not in line and json.loads(line)["message"] == "careful \x1b"


def test_operators_own_formatter_is_left_alone():
    stream = io.StringIO()
    configure_logging(
        logging_to(stream, "logging.Formatter", format="OWN %(message)s"), None, True, True, "json"
    )
    logging.getLogger("asgi_worker.error").info("hi")
    assert stream.getvalue() == "OWN hi\n"


# Log config files

CONFIG_FILES = {
    "json": json.dumps(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"f": {"format": "FROM-FILE %(name)s %(message)s"}},
            "handlers": {
                "h": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stderr"}
            },
            "loggers": {"asgi_worker": {"handlers": ["h"], "level": "WARNING", "propagate": False}},
        }
    ),
    "yaml": """
version: 1
disable_existing_loggers: false
formatters:
  f: {format: "FROM-FILE %(name)s %(message)s"}
handlers:
  h: {class: logging.StreamHandler, formatter: f, stream: "ext://sys.stderr"}
loggers:
  asgi_worker: {handlers: [h], level: WARNING, propagate: false}
""",
    "ini": """
[loggers]
keys=root,asgi_worker

[handlers]
keys=h

[formatters]
keys=f

[logger_root]
handlers=

[logger_asgi_worker]
handlers=h
level=WARNING
propagate=0
qualname=asgi_worker

[handler_h]
class=StreamHandler
formatter=f
args=(sys.stderr,)

[formatter_f]
format=FROM-FILE %(name)s %(message)s
""",
}


@pytest.mark.parametrize("suffix", ["json", "yaml", "yml", "ini"])
def test_log_config_files(tmp_path, suffix, capsys):
    path = tmp_path / f"logging.{suffix}"
    path.write_text(CONFIG_FILES["yaml" if suffix == "yml" else suffix])
    configure_logging(str(path), None, True)
    logger = logging.getLogger("asgi_worker")
    assert logger.level == logging.WARNING and not logger.propagate
    logging.getLogger("asgi_worker.error").warning("from %s", suffix)
    assert f"FROM-FILE asgi_worker.error from {suffix}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("missing.json", None),
        ("broken.json", '{"version": 1,'),
        ("broken.yaml", "version: [1\n  bad: : :"),
        ("broken.ini", "[loggers]\nkeys=root\n"),
        ("wrong.json", '{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}'),
        ("notadict.yaml", "just a string"),
    ],
)
def test_bad_log_config_is_a_one_line_error_naming_the_file(tmp_path, name, text):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        configure_logging(str(path), None, True)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_yaml_without_pyyaml_says_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "logging.yaml"
    path.write_text(CONFIG_FILES["yaml"])
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    with pytest.raises(ConfigError, match="pip install pyyaml") as info:
        configure_logging(str(path), None, True)
    assert "\n" not in str(info.value)


# Both access paths, in a real server


async def logged_app(scope, receive, send):
    if scope["path"] == "/sleep":
        await asyncio.sleep(0.2)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/x-log")]})
    await send({"type": "http.response.body", "body": b"hello"})


def access_config(handler, formatter="asgi_worker.log.AccessFormatter"):
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"access": {"()": formatter}},
        "handlers": {"access": {**handler, "formatter": "access"}},
        "loggers": {"asgi_worker.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }


class ListHandler(logging.Handler):
    records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)
        self.format(record)


def get(srv, path, **kwargs):
    return httpx.get(f"{srv.url}{path}", timeout=TIMEOUT, **kwargs)


def test_writer_path_default_line(serve):
    stream = io.StringIO()
    with serve(
        logged_app, log_config=access_config({"class": "logging.StreamHandler", "stream": stream})
    ) as srv:
        assert srv.server._ctx.access_log.log == srv.server._ctx.access_log._log_text
        get(srv, "/a%1b?q=%0d")
    assert re.fullmatch(
        r'INFO:     127\.0\.0\.1:\d+ - "GET /a%1b\?q=%0d HTTP/1\.1" 200 OK\n', stream.getvalue()
    )


def test_writer_path_custom_format_and_timing(serve):
    stream = io.StringIO()
    config = access_config({"class": "logging.StreamHandler", "stream": stream})
    fmt = "%(U)s %(s)s %(T)s %(M)s %(D)s %(L)s %({content-type}o)s %({x-test}i)s %(u)s"
    with serve(logged_app, log_config=config, access_log_format=fmt) as srv:
        assert srv.server._ctx.access_log.log == srv.server._ctx.access_log._log_custom
        get(srv, "/sleep", headers={"x-test": b"v\x85"}, auth=("carol", "pw"))
        get(srv, "/%1b[31m%0d%0a")
    first, second = stream.getvalue().splitlines()
    path, status, seconds, ms, us, decimal, ctype, xtest, user = first.split(" ")
    assert (path, status, ctype, xtest, user) == ("/sleep", "200", "text/x-log", "v\\x85", "carol")
    assert 0.19 <= float(decimal) < 0.2 + TIMEOUT / 5
    assert int(seconds) == int(float(decimal))
    assert int(ms) == int(us) // 1000 and decimal == f"{int(us) // 1000000}.{int(us) % 1000000:06d}"
    assert second.startswith("/\\x1b[31m\\x0d\\x0a 200 ")


def test_writer_path_json(serve):
    stream = io.StringIO()
    handler = {"class": "logging.StreamHandler", "stream": stream}
    with serve(logged_app, log_config=access_config(handler), log_format="json") as srv:
        assert srv.server._ctx.access_log.log == srv.server._ctx.access_log._log_json
        get(srv, "/%1b?x=1", headers={"user-agent": "ua", "referer": "r"})
    data = json.loads(stream.getvalue())
    assert data["path"] == "/\x1b" and data["query"] == "x=1" and data["user_agent"] == "ua"
    assert data["referer"] == "r" and data["status"] == 200 and data["bytes"] == 5
    assert data["logger"] == "asgi_worker.access" and data["client"].startswith("127.0.0.1:")


@pytest.mark.parametrize("access_log_format", [None, "%(r)s %(s)s %({x-test}i)s"])
def test_logging_path_records(access_log_format):
    ListHandler.records = []
    config = access_config({"()": ListHandler})
    with run_server(logged_app, log_config=config, access_log_format=access_log_format) as srv:
        assert srv.server._ctx.access_log.log == srv.server._ctx.access_log._log_record
        get(srv, "/x%1b?q=1", headers={"x-test": "t"})
    (rec,) = ListHandler.records
    assert rec.name == "asgi_worker.access" and rec.levelno == logging.INFO
    entry = rec.asgi_access
    assert entry.status == 200 and entry.bytes_sent == 5 and entry.scope["path"] == "/x\x1b"
    text = AccessFormatter().format(rec)
    if access_log_format is None:
        client, method, target, version, status, size, _duration = rec.args
        assert (method, target, version, status, size) == ("GET", "/x%1b?q=1", "1.1", 200, 5)
        assert text == f'INFO:     {client} - "GET /x%1b?q=1 HTTP/1.1" 200 OK'
    else:
        assert rec.getMessage() == text == "GET /x%1b?q=1 HTTP/1.1 200 t"
    assert json.loads(JsonFormatter().format(rec))["path"] == "/x\x1b"


def test_access_log_off_computes_nothing():
    ListHandler.records = []
    with run_server(logged_app, log_config=access_config({"()": ListHandler}), access_log=False) as srv:
        assert not srv.server._ctx.access_log.enabled
        assert get(srv, "/").status_code == 200
    assert ListHandler.records == []
