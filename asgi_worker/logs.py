"""Logging setup and the formatters.

Loggers (operators configure these by name, e.g. in ``--log-config``):
- ``asgi_worker.error``: server events and app tracebacks; to stderr by default.
- ``asgi_worker.access``: one line per completed response; to stdout by default (see ``accesslog.py``
  for the two paths a line can take, and ``accessformat.py`` for ``--access-log-format``).
Both sit under ``asgi_worker``, which holds the default stderr handler and does not propagate.

Rules:
- ``configure_logging`` applies the config, then adapts *our* formatters only (``DefaultFormatter``
  and ``AccessFormatter`` on those loggers and the root): ``--log-format json`` swaps them for
  ``jsonlog.JsonFormatter``; ``--use-colors/--no-use-colors`` forces colors on or off, and auto
  (the default) colors a handler only when its stream is a tty. An operator's own formatters are
  left exactly as configured. JSON is never colored.
- A ``--log-config`` file that is missing, unreadable or rejected by ``logging.config`` is a one-line
  ``ConfigError`` naming the file: .json and .yaml/.yml go to ``dictConfig`` (YAML needs PyYAML),
  anything else to ``fileConfig`` (ini).
- Request-derived text on a text line goes through ``escape_controls`` (no log injection); on an
  access line through ``escape_field``, which also escapes ``"`` and ``\\`` as Apache does, so a
  quoted field (request line, user agent, referer) cannot be closed from inside it.
"""

from __future__ import annotations

import importlib
import json
import logging
import logging.config
import os
from typing import Any

from asgi_worker.errors import ConfigError
from asgi_worker.http.response import reason_phrase
from asgi_worker.jsonlog import JsonFormatter

__all__ = [
    "LOGGING_CONFIG",
    "TRACE_LOG_LEVEL",
    "AccessFormatter",
    "DefaultFormatter",
    "configure_logging",
    "escape_controls",
    "escape_field",
    "level_prefix",
    "peer_text",
    "status_text",
    "tag_lines_with_pid",
]

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

# With a plain "%(message)s" formatter an access line reads: client - "request line" status bytes seconds.
ACCESS_MESSAGE = '%s - "%s %s HTTP/%s" %d %d %.6f'

DEFAULT_ACCESS_FORMAT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'

LOG_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"()": "asgi_worker.logs.DefaultFormatter"},
        "access": {"()": "asgi_worker.logs.AccessFormatter"},
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "asgi_worker": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "asgi_worker.error": {"level": "INFO"},
        "asgi_worker.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_FIELD_ESCAPES = {**_CONTROL_ESCAPES, ord('"'): '\\"', ord("\\"): "\\\\"}


def peer_text(client: tuple[str, int] | None) -> str:
    """``host:port`` of a scope's ``client`` for a log line (``-`` for none, e.g. a UNIX socket)."""
    return f"{client[0]}:{client[1]}" if client else "-"


def escape_controls(text: str) -> str:
    """``text`` with control characters written as ``\\xNN``, safe to put on one log line.

    C0, DEL and C1 (8-bit terminal escapes) become ``\\xNN``; any other non-printable character (line
    and paragraph separators, bidi overrides) becomes ``\\uNNNN``. Printable text is returned as is,
    after one C-level check.
    """
    return text if text.isprintable() else _escaped(text, _CONTROL_ESCAPES)


def escape_field(text: str) -> str:
    """``text`` for a field of a text access line: ``escape_controls``, plus ``"`` as ``\\"`` and
    ``\\`` as ``\\\\`` (Apache's rule), so no field can end early and no escape can be forged."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return _escaped(text, _FIELD_ESCAPES)


def _escaped(text: str, table: dict[int, str]) -> str:
    text = text.translate(table)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def _escape_char(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


# ANSI SGR codes, as uvicorn picks them (via click) for level names and status classes.
_LEVEL_COLORS = {
    TRACE_LOG_LEVEL: "34",
    logging.DEBUG: "36",
    logging.INFO: "32",
    logging.WARNING: "33",
    logging.ERROR: "31",
    logging.CRITICAL: "91",
}
_STATUS_COLORS = {1: "97", 2: "32", 3: "33", 4: "31", 5: "91"}


def _colored(text: str, code: str | None) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if code else text


# " [pid]" after the level on every text line of a supervisor's worker (``tag_lines_with_pid``).
_PROCESS_TAG = ""


def tag_lines_with_pid() -> None:
    """From now on, text log lines of this process carry its pid: ``INFO:     [1234] message``.

    Called by a supervisor's worker before logging starts, so interleaved lines can be told apart.
    """
    global _PROCESS_TAG
    _PROCESS_TAG = f" [{os.getpid()}]"


def level_prefix(levelname: str, levelno: int, colors: bool) -> str:
    """``INFO:     `` (name and colon padded to nine columns), the name colored when ``colors``."""
    pad = " " * (8 - len(levelname))
    if colors:
        levelname = _colored(levelname, _LEVEL_COLORS.get(levelno))
    return f"{levelname}:{pad}{_PROCESS_TAG}"


_STATUS_TEXTS: tuple[dict[int, str], dict[int, str]] = ({}, {})  # plain, colored


def status_text(status: int, colors: bool = False) -> str:
    """``200 OK`` (colored by status class when ``colors``); cached per status."""
    table = _STATUS_TEXTS[colors]
    text = table.get(status)
    if text is None:
        text = f"{status} {reason_phrase(status)}".rstrip()
        if colors:
            text = _colored(text, _STATUS_COLORS.get(status // 100))
        table[status] = text
    return text


class DefaultFormatter(logging.Formatter):
    """uvicorn's look: ``INFO:     message``; ``use_colors`` colors the level name (None: not yet decided).

    ``configure_logging`` decides ``use_colors`` for the formatters of our handlers; a formatter it
    never saw and left at None writes no colors.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: str = "%",
        use_colors: bool | None = None,
    ) -> None:
        super().__init__(fmt or "%(levelprefix)s %(message)s", datefmt, style)  # type: ignore[arg-type]
        self.use_colors = use_colors

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.__dict__["levelprefix"] = level_prefix(record.levelname, record.levelno, bool(self.use_colors))
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Formats access records: ``INFO:     127.0.0.1:5000 - "GET /?q HTTP/1.1" 200 OK``.

    Our records carry ``asgi_access`` (an ``accessformat.AccessEntry``) and, for the default line,
    args ``(client, method, target, http_version, status, size, duration)``; ``%(client_addr)s``,
    ``%(request_line)s`` and ``%(status_code)s`` are filled in here, in the logging thread, never
    on the event loop. With ``--access-log-format`` and this formatter's default ``fmt`` the line is
    the formatted atoms alone, as on the writer path.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: str = "%",
        use_colors: bool | None = None,
    ) -> None:
        super().__init__(fmt or DEFAULT_ACCESS_FORMAT, datefmt, style, use_colors)

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        entry = fields.get("asgi_access")
        if entry is not None:
            if entry.render is not None and self._fmt == DEFAULT_ACCESS_FORMAT:
                return record.message
            fields["client_addr"] = entry.client_text()
            fields["request_line"] = entry.request_line()
            fields["status_code"] = status_text(entry.status, bool(self.use_colors))
        else:
            args = record.args
            if isinstance(args, tuple) and len(args) == 7:
                client, method, target, version, status, _size, _duration = args
                fields["client_addr"] = client
                fields["request_line"] = escape_field(f"{method} {target} HTTP/{version}")
                fields["status_code"] = status_text(status, bool(self.use_colors))  # type: ignore[arg-type]
        return super().formatMessage(record)


def configure_logging(
    log_config: dict[str, Any] | str | None,
    log_level: str | int | None,
    access_log: bool,
    use_colors: bool | None = None,
    log_format: str = "text",
) -> None:
    """Apply a logging config (a dict or a file), the level, colors, JSON and the access switch.

    Raises ``ConfigError`` (one line, naming the file) when the config cannot be applied.
    """
    if log_config is not None:
        if isinstance(log_config, dict):
            _apply(log_config, "log_config", logging.config.dictConfig)
        else:
            _apply_file(str(log_config))
    if log_level is not None:
        level = LOG_LEVELS[log_level] if isinstance(log_level, str) else log_level
        for name in ("asgi_worker", "asgi_worker.error", "asgi_worker.access"):
            logging.getLogger(name).setLevel(level)
    _adapt_formatters(use_colors, log_format)
    if not access_log:
        access = logging.getLogger("asgi_worker.access")
        access.handlers = []
        access.propagate = False


def _apply(config: Any, what: str, apply: Any) -> None:
    try:
        apply(config)
    except Exception as exc:  # logging.config raises anything from ValueError to ImportError
        raise ConfigError(f"{what}: {' '.join(str(exc).split()) or type(exc).__name__}") from exc


def _apply_file(path: str) -> None:
    what = f"log_config {path!r}"
    if not os.path.isfile(path):
        raise ConfigError(f"{what}: no such file")
    if path.endswith((".yaml", ".yml")):
        try:
            yaml = importlib.import_module("yaml")  # optional; PyYAML ships no type stubs
        except ImportError:
            raise ConfigError(f"{what} is YAML, which needs PyYAML: pip install pyyaml") from None
        _apply(path, what, lambda p: logging.config.dictConfig(yaml.safe_load(_read(p))))
    elif path.endswith(".json"):
        _apply(path, what, lambda p: logging.config.dictConfig(json.loads(_read(p))))
    else:
        _apply(path, what, lambda p: logging.config.fileConfig(p, disable_existing_loggers=False))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()


def _adapt_formatters(use_colors: bool | None, log_format: str) -> None:
    for name in ("", "asgi_worker", "asgi_worker.error", "asgi_worker.access"):
        for handler in logging.getLogger(name).handlers:
            formatter = handler.formatter
            if not isinstance(formatter, DefaultFormatter):
                continue
            if log_format == "json":
                handler.setFormatter(JsonFormatter())
            elif use_colors is not None:
                formatter.use_colors = use_colors
            elif formatter.use_colors is None:
                formatter.use_colors = _isatty(getattr(handler, "stream", None))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no stream, or a closed one
        return False


def log_started(host_url: str) -> None:
    """The line operators look for: where the server listens."""
    logging.getLogger("asgi_worker.error").info("asgi_worker running on %s (Press CTRL+C to quit)", host_url)


def pid_line(verb: str) -> None:
    """``Started server process [pid]`` / ``Finished server process [pid]``, as uvicorn logs them."""
    logging.getLogger("asgi_worker.error").info("%s server process [%d]", verb, os.getpid())
