"""How a text log line reads: the level prefix, the TRACE level, colors, escaping, peer and status text.

Rules:
- Request-derived text on a text line goes through ``escape_controls`` (no log injection); on an
  access line through ``escape_field``, which also escapes ``"`` and ``\\`` as Apache does, so a
  quoted field (request line, user agent, referer) cannot be closed from inside it.
- Colors are ANSI SGR codes, picked as uvicorn picks them (via click) for level names and status
  classes; whether to use them is decided by ``log.setup.configure_logging``.
"""

from __future__ import annotations

import logging
import os

from asgi_worker.http.response import reason_phrase

__all__ = [
    "TRACE_LOG_LEVEL",
    "escape_controls",
    "escape_field",
    "level_prefix",
    "peer_text",
    "status_text",
    "tag_lines_with_pid",
]

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

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
