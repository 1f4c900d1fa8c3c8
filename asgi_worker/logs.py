"""Logging setup and the formatters.

Loggers: ``asgi_worker.error`` (server events and app tracebacks, to stderr) and
``asgi_worker.access`` (one line per completed response, to stdout; see ``accesslog.py``), both
under ``asgi_worker``.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from typing import Any

from asgi_worker.http.response import reason_phrase

__all__ = [
    "LOGGING_CONFIG",
    "TRACE_LOG_LEVEL",
    "AccessFormatter",
    "DefaultFormatter",
    "configure_logging",
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

_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def escape_controls(text: str) -> str:
    """``text`` with control characters written as ``\\xNN``, safe to put on one log line."""
    return text.translate(_CONTROL_ESCAPES) if not text.isprintable() else text


class DefaultFormatter(logging.Formatter):
    """uvicorn's look: ``INFO:     message`` (level name and colon padded to nine columns)."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: str = "%") -> None:
        super().__init__(fmt or "%(levelprefix)s %(message)s", datefmt, style)  # type: ignore[arg-type]

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.__dict__["levelprefix"] = f"{record.levelname}:".ljust(9)
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Formats access records: ``INFO:     127.0.0.1:5000 - "GET /?q HTTP/1.1" 200 OK``.

    The record's args are ``(client, method, target, http_version, status, size, duration)``; they are
    turned into text here, in the logging thread, never on the event loop.
    """

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: str = "%") -> None:
        super().__init__(
            fmt or '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', datefmt
        )

    def formatMessage(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and len(args) == 7:
            client, method, target, version, status, _size, _duration = args
            fields = record.__dict__
            fields["client_addr"] = client
            fields["request_line"] = escape_controls(f"{method} {target} HTTP/{version}")
            fields["status_code"] = f"{status} {reason_phrase(status)}".rstrip()  # type: ignore[arg-type]
        return super().formatMessage(record)


def configure_logging(
    log_config: dict[str, Any] | str | None,
    log_level: str | int | None,
    access_log: bool,
    use_colors: bool | None = None,
    log_format: str = "text",
) -> None:
    """Apply a logging configuration (a dict, or a .json/.ini file), then the level and access switch."""
    if log_config is not None:
        if isinstance(log_config, dict):
            logging.config.dictConfig(log_config)
        elif log_config.endswith(".json"):
            with open(log_config) as file:
                logging.config.dictConfig(json.load(file))
        else:
            logging.config.fileConfig(log_config, disable_existing_loggers=False)
    if log_level is not None:
        level = LOG_LEVELS[log_level] if isinstance(log_level, str) else log_level
        for name in ("asgi_worker", "asgi_worker.error", "asgi_worker.access"):
            logging.getLogger(name).setLevel(level)
    if not access_log:
        access = logging.getLogger("asgi_worker.access")
        access.handlers = []
        access.propagate = False


def log_started(host_url: str) -> None:
    """The line operators look for: where the server listens."""
    logging.getLogger("asgi_worker.error").info("asgi_worker running on %s (Press CTRL+C to quit)", host_url)


def pid_line(verb: str) -> None:
    """``Started server process [pid]`` / ``Finished server process [pid]``, as uvicorn logs them."""
    logging.getLogger("asgi_worker.error").info("%s server process [%d]", verb, os.getpid())
