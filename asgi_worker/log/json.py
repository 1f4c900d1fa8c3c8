"""``--log-format json``: one JSON object per line, for log shippers.

Every line has ``time`` (ISO-8601 UTC, milliseconds, ``Z``), ``level``, ``logger``, ``message`` and
``pid``; ``exc_info`` holds the formatted traceback when there is one. Access lines add structured
request fields (see ``access_line.AccessEntry.json_line``). Output is ASCII only (``\\uXXXX`` escapes
for everything else), so no control character, terminal escape or Unicode line separator can reach
the log raw; JSON escaping is the whole of the log-injection defence here. Colors never apply.
"""

from __future__ import annotations

import json
import logging
import time
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["JsonFormatter", "iso_time", "json_string"]

json_string = encode_basestring_ascii
"""``str`` -> its JSON literal, quotes included (the C encoder json.dumps uses; no dict, no call overhead)."""

_last_second: tuple[int, str] = (-1, "")
_last_milli: tuple[int, str] = (-1, "")


def iso_time(wall: float) -> str:
    """``wall`` (seconds since the epoch) as ``2026-11-22T13:55:36.123Z``; cached per millisecond."""
    global _last_second, _last_milli
    milli = int(wall * 1000)
    cached = _last_milli
    if cached[0] == milli:
        return cached[1]
    second, fraction = divmod(milli, 1000)
    date = _last_second
    if date[0] != second:
        date = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    text = f"{date[1]}.{fraction:03d}Z"
    _last_milli = (milli, text)
    return text


class JsonFormatter(logging.Formatter):
    """Formats any record as one JSON object; access records (with ``asgi_access``) get their fields.

    Usable from a logging config (``"()": "asgi_worker.log.JsonFormatter"`` or ini ``class=``);
    ``fmt`` and ``datefmt`` are accepted and ignored.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = record.__dict__.get("asgi_access")
        if entry is not None:
            return entry.json_line(record.process)  # type: ignore[no-any-return]
        fields: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc_info"] = record.exc_text
        if record.stack_info:
            fields["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(fields, separators=(",", ":"), default=str)
