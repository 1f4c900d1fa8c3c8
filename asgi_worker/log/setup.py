"""Logging setup: levels, our formatters, the default config, ``configure_logging``, the server's lines.

Loggers (operators configure these by name, e.g. in ``--log-config``):
- ``asgi_worker.error``: server events and app tracebacks; to stderr by default.
- ``asgi_worker.access``: one line per completed response; to stdout by default (see ``log.access``
  for the two paths a line can take, and ``log.access_format`` for ``--access-log-format``).
Both sit under ``asgi_worker``, which holds the default stderr handler and does not propagate.

Rules:
- ``configure_logging`` applies the config, then adapts *our* formatters only (``DefaultFormatter``
  and ``AccessFormatter`` on those loggers and the root): ``--log-format json`` swaps them for
  ``JsonFormatter``; ``--use-colors/--no-use-colors`` forces colors on or off, and auto
  (the default) colors a handler only when its stream is a tty. An operator's own formatters are
  left exactly as configured. JSON is never colored.
- ``DefaultFormatter`` and ``AccessFormatter`` give uvicorn's look (``INFO:     message``). Access
  text is filled in by the formatter, in whichever thread formats the record, never on the event
  loop, and its words come from ``access_line``.
- A ``--log-config`` file that is missing, unreadable or rejected by ``logging.config`` is a one-line
  ``ConfigError`` naming the file: .json and .yaml/.yml go to ``dictConfig`` (YAML needs PyYAML),
  anything else to ``fileConfig`` (ini).
"""

from __future__ import annotations

import importlib
import json
import logging
import logging.config
import os
from typing import Any

from asgi_worker.errors import ConfigError
from asgi_worker.log.access_line import access_line, client_field, request_line
from asgi_worker.log.json import JsonFormatter
from asgi_worker.log.text import TRACE_LOG_LEVEL, level_prefix, status_text

__all__ = [
    "DEFAULT_ACCESS_FORMAT",
    "LOGGING_CONFIG",
    "LOG_LEVELS",
    "AccessFormatter",
    "DefaultFormatter",
    "configure_logging",
    "log_started",
    "pid_line",
]

# The fields of the default access line, for operators who rearrange them in their own ``fmt``. With
# this format itself the line after the prefix is ``access_line``'s, not a second rendering of it.
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
        "default": {"()": "asgi_worker.log.DefaultFormatter"},
        "access": {"()": "asgi_worker.log.AccessFormatter"},
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


class DefaultFormatter(logging.Formatter):
    """uvicorn's look: ``INFO:     message``; ``use_colors`` colors the level name (None: not yet decided).

    ``configure_logging`` decides ``use_colors`` for the formatters of our handlers; a formatter it
    never saw and left at None writes no colors.
    """

    default_format = "%(levelprefix)s %(message)s"  # used when a logging config gives no fmt

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: str = "%",
        use_colors: bool | None = None,
    ) -> None:
        super().__init__(fmt or self.default_format, datefmt, style)  # type: ignore[arg-type]
        self.use_colors = use_colors

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.__dict__["levelprefix"] = level_prefix(record.levelname, record.levelno, bool(self.use_colors))
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Formats access records: ``INFO:     127.0.0.1:5000 - "GET /?q HTTP/1.1" 200 OK``.

    Our records carry ``asgi_access`` (an ``access_line.AccessEntry``). With the default ``fmt`` the
    line is the level prefix and ``access_line``, or, under ``--access-log-format``, the formatted
    atoms alone, as on the writer path. Any other ``fmt`` may use ``%(client_addr)s``,
    ``%(request_line)s`` and ``%(status_code)s``, filled in here.
    """

    default_format = DEFAULT_ACCESS_FORMAT

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        entry = fields.get("asgi_access")
        if entry is None:
            return super().formatMessage(record)
        colors = bool(self.use_colors)
        if self._fmt == DEFAULT_ACCESS_FORMAT:
            if entry.render is not None:
                return record.message
            prefix = level_prefix(record.levelname, record.levelno, colors)
            return f"{prefix} {access_line(entry.scope, status_text(entry.status, colors))}"
        scope = entry.scope
        fields["client_addr"] = client_field(scope)
        fields["request_line"] = request_line(scope)
        fields["status_code"] = status_text(entry.status, colors)
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
