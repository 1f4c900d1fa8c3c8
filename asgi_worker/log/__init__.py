"""Logging: setup, the access log, its formats, JSON lines and ASGI tracing, behind one façade.

- ``setup``: levels, ``DefaultFormatter`` and ``AccessFormatter`` (the names a logging config uses),
  the default config, ``configure_logging``, the server's start and stop lines.
- ``text``: how a text line reads (level prefix, TRACE, colors, escaping, peer and status text).
- ``access_line``: the one place an access line's words are built (request target and line, the
  default line, the record args) and ``AccessEntry``, a completed response frozen for formatting.
- ``access_format``: ``--access-log-format`` (gunicorn's atoms), compiled once.
- ``access``: ``AccessLog``, the per-server writer of access lines (a writer thread or ``logging``).
- ``json``: ``--log-format json`` (``JsonFormatter``).
- ``tracing``: ``--log-level trace`` (``TracingApp``).

Logging configs may name ``asgi_worker.log.DefaultFormatter``, ``asgi_worker.log.AccessFormatter``
and ``asgi_worker.log.JsonFormatter``.
"""

from __future__ import annotations

from asgi_worker.log.access import AccessLog
from asgi_worker.log.access_format import compile_access_format
from asgi_worker.log.access_line import request_target
from asgi_worker.log.json import JsonFormatter
from asgi_worker.log.setup import (
    LOG_LEVELS,
    LOGGING_CONFIG,
    AccessFormatter,
    DefaultFormatter,
    configure_logging,
    log_started,
    pid_line,
)
from asgi_worker.log.text import TRACE_LOG_LEVEL, escape_controls, escape_field, peer_text, tag_lines_with_pid
from asgi_worker.log.tracing import TracingApp, tracing_enabled

__all__ = [
    "LOGGING_CONFIG",
    "LOG_LEVELS",
    "TRACE_LOG_LEVEL",
    "AccessFormatter",
    "AccessLog",
    "DefaultFormatter",
    "JsonFormatter",
    "TracingApp",
    "compile_access_format",
    "configure_logging",
    "escape_controls",
    "escape_field",
    "log_started",
    "peer_text",
    "pid_line",
    "request_target",
    "tag_lines_with_pid",
    "tracing_enabled",
]
