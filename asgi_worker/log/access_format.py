"""``--access-log-format``: gunicorn's atoms, compiled once into one function.

``compile_access_format`` turns a format into one generated function, once, at startup: the format
becomes a positional ``%`` template and each atom one small expression, so a line costs one ``%``
operation plus the atoms the format really uses (request headers become a dict once, in C, and
only when a header atom is present). Nothing is parsed per line.

Rules:
- The atoms are gunicorn's (``ATOMS``), plus ``%({name}i)s`` request header, ``%({name}o)s`` response
  header, ``%({name}e)s`` environment variable and ``%%``. An unknown atom, a conversion other than
  ``s`` (or ``d`` for the numeric atoms s, B, T, M, D) or a stray ``%`` is a ``ConfigError`` at
  startup, not a ``-`` on every line: a typo should stop the deploy, not blank a column for months.
- As in gunicorn: ``t`` is ``[10/Oct/2000:13:55:36 -0700]`` (local time, cached per second), ``p`` is
  ``<pid>``, ``T``/``M``/``D`` are whole seconds/milliseconds/microseconds (truncated; timed with
  ``perf_counter``, not the loop clock, which uvloop keeps in milliseconds), ``L`` is
  seconds with six decimals, and the last of repeated headers wins. ``b`` is ``-`` for an empty body
  (Apache's CLF ``%b``). ``{name}e`` is read once, when the format is compiled.
- Every request-derived value (and response header) has control characters escaped (``\\xNN``),
  and ``"`` and ``\\`` backslash-escaped (Apache's rule): a user agent cannot close its quotes.
- A formatted line is written as it is: no level prefix, no colors (gunicorn's lines, for parsers).
  Under ``--log-format json`` it is the ``message`` of the JSON object.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from typing import Any

from asgi_worker.errors import ConfigError
from asgi_worker.log.access_line import Render, protocol_version, request_line
from asgi_worker.log.text import escape_field

__all__ = ["ATOMS", "clf_time", "compile_access_format"]


# atom -> the expression that renders it. Names: c (the cycle), scope, req / resp (request headers /
# the wanted response headers, lowercased name -> value), us (duration in microseconds), wall.
ATOMS = {
    "h": '_host(scope["client"])',
    "l": '"-"',
    "u": '_user(req.get(b"authorization"))',
    "t": "_clf(wall)",
    "r": "_request_line(scope)",
    "m": '_esc(scope["method"])',
    "U": '_esc(scope["path"])',
    "q": '_esc(scope["query_string"].decode("latin-1"))',
    "H": '"HTTP/" + _version(scope["http_version"])',
    "s": "c.status",
    "B": "c.bytes_sent",
    "b": 'c.bytes_sent or "-"',
    "f": '_text(req.get(b"referer"))',
    "a": '_text(req.get(b"user-agent"))',
    "T": "us // 1000000",
    "M": "us // 1000",
    "D": "us",
    "L": 'f"{us // 1000000}.{us % 1000000:06d}"',
    "p": "PID",
}
_NUMERIC = frozenset("sBTMD")

_TOKEN = re.compile(r"%(?:\((?P<key>[^)]*)\)(?P<spec>[-#0 +]*\d*(?:\.\d+)?)(?P<conv>[a-zA-Z])|%)")
_BRACED = re.compile(r"\{(?P<name>[^{}]+)\}(?P<kind>[ioe])\Z")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_last_second: tuple[int, str] = (-1, "")


def clf_time(wall: float) -> str:
    """``[10/Oct/2000:13:55:36 -0700]`` in local time; recomputed once per second, not per line."""
    global _last_second
    second = int(wall)
    cached = _last_second
    if cached[0] != second:
        tm = time.localtime(second)
        offset = tm.tm_gmtoff // 60
        sign = "-" if offset < 0 else "+"
        text = (
            f"[{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:{tm.tm_hour:02d}:{tm.tm_min:02d}:"
            f"{tm.tm_sec:02d} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}]"
        )
        cached = _last_second = (second, text)
    return cached[1]


def _host(client: Any) -> str:
    return escape_field(client[0]) if client else "-"


def _text(value: bytes | None) -> str:
    return "-" if value is None else escape_field(value.decode("latin-1"))


def _user(authorization: bytes | None) -> str:
    """The user name of HTTP Basic credentials, or ``-``."""
    if authorization is None or authorization[:6].lower() != b"basic ":
        return "-"
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return "-"
    user = decoded.partition(b":")[0].decode("utf-8", "backslashreplace")
    return escape_field(user) if user else "-"


def _pick_lower(headers: Any, wanted: frozenset[bytes]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in headers if name.lower() in wanted}


def _environ(name: str) -> str:
    value = os.environ.get(name)
    if value is None:  # gunicorn matches these names case-insensitively
        value = next((v for k, v in os.environ.items() if k.lower() == name.lower()), None)
    return "-" if value is None else escape_field(value)


def compile_access_format(fmt: str) -> Render:
    """Compile ``fmt`` (gunicorn's ``access_log_format``) once. Raises ``ConfigError`` naming the problem."""
    template: list[str] = []
    expressions: list[str] = []
    namespace: dict[str, Any] = {}
    wanted_out: set[bytes] = set()
    position = 0
    while (start := fmt.find("%", position)) != -1:
        template.append(fmt[position:start])
        match = _TOKEN.match(fmt, start)
        if match is None:
            raise ConfigError(
                f"access_log_format: stray '%' at position {start} (write %% for a percent sign)"
            )
        position = match.end()
        key = match["key"]
        if key is None:
            template.append("%%")
            continue
        conv = match["conv"]
        if conv not in "sd" or (conv == "d" and key not in _NUMERIC):
            raise ConfigError(f"access_log_format: %({key}){conv} is not allowed; use %({key})s")
        template.append(f"%{match['spec']}{conv}")
        expressions.append(_expression(key, namespace, wanted_out))
    template.append(fmt[position:])
    return _generate("".join(template), expressions, namespace, wanted_out)


def _expression(key: str, namespace: dict[str, Any], wanted_out: set[bytes]) -> str:
    if key in ATOMS:
        return ATOMS[key]
    braced = _BRACED.match(key)
    if braced is None:
        known = " ".join(ATOMS)
        raise ConfigError(
            f"access_log_format: unknown atom %({key})s (known: {known}, {{header}}i, {{header}}o, {{var}}e)"
        )
    constant = f"K{len(namespace)}"
    name, kind = braced["name"], braced["kind"]
    if kind == "e":
        namespace[constant] = _environ(name)
        return constant
    namespace[constant] = header = name.strip().lower().encode("latin-1")
    if kind == "o":
        wanted_out.add(header)
    return f"_text({'req' if kind == 'i' else 'resp'}.get({constant}))"


def _generate(
    template: str,
    expressions: list[str],
    namespace: dict[str, Any],
    wanted_out: set[bytes],
) -> Render:
    # Only our own expressions and constant names go into the source; every operator-supplied
    # string (the template, header and variable names) is bound in the namespace.
    uses = set(re.findall(r"\b(?:scope|req|resp|us)\b", " ".join(expressions)))
    lines = ["def render(c, duration, wall):"]
    if "scope" in uses:
        lines.append("    scope = c.scope")
    if "req" in uses:
        lines.append('    req = dict(c.scope["headers"])')  # in C: faster than picking the wanted few
    if "resp" in uses:
        lines.append("    resp = _pick_lower(c.response_headers, WANTED_OUT)")
    if "us" in uses:
        lines.append("    us = int(duration * 1000000)")
    lines.append(f"    return TEMPLATE % ({''.join(e + ', ' for e in expressions)})")
    namespace.update(
        TEMPLATE=template,
        WANTED_OUT=frozenset(wanted_out),
        PID=f"<{os.getpid()}>",
        _clf=clf_time,
        _esc=escape_field,
        _host=_host,
        _text=_text,
        _user=_user,
        _request_line=request_line,
        _version=protocol_version,
        _pick_lower=_pick_lower,
    )
    exec(compile("\n".join(lines), "<access_log_format>", "exec"), namespace)
    render: Render = namespace["render"]
    return render
