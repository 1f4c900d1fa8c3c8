"""``--env-file``: KEY=VALUE lines put into ``os.environ`` before the app is imported.

The dialect is the common subset of python-dotenv (what uvicorn uses) and systemd's
``EnvironmentFile=``, so one file serves both: ``#`` comments and blank lines are skipped, an
``export`` prefix is allowed, values may be single-quoted (taken as they are) or double-quoted
(``\\n``, ``\\t``, ``\\"`` and ``\\\\`` unescaped), and an unquoted value ends at `` #``. Variables
already set in the environment win, as with python-dotenv's default: the operator's explicit
environment overrides the file.
"""

from __future__ import annotations

import os
import re

from asgi_worker.errors import ConfigError

__all__ = ["load_env_file", "parse_env_lines"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_DOUBLE_QUOTED_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_env_lines(text: str, source: str = "<env>") -> dict[str, str]:
    """The variables ``text`` defines. Raises ``ConfigError`` naming the first bad line."""
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise ConfigError(f"{source}, line {number}: expected NAME=VALUE, got {raw.strip()[:60]!r}")
        result[name] = _value(value.strip(), source, number)
    return result


def _value(value: str, source: str, number: int) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = _closing_quote(value, quote)
        if end == -1:
            raise ConfigError(f"{source}, line {number}: unterminated {quote} quote")
        inner = value[1:end]
        if quote == "'":
            return inner
        return re.sub(r"\\(.)", lambda m: _DOUBLE_QUOTED_ESCAPES.get(m[1], m[0]), inner)
    comment = value.find(" #")
    return (value[:comment] if comment != -1 else value).rstrip()


def _closing_quote(value: str, quote: str) -> int:
    index = 1
    while index < len(value):
        char = value[index]
        if char == "\\" and quote == '"':
            index += 2
            continue
        if char == quote:
            return index
        index += 1
    return -1


def load_env_file(path: str | os.PathLike[str]) -> None:
    """Read ``path`` and set each variable not already in the environment.

    Raises ``ConfigError`` (one line) when the file cannot be read or a line does not parse.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"could not read env file {os.fspath(path)}: {reason}") from exc
    for name, value in parse_env_lines(text, os.fspath(path)).items():
        os.environ.setdefault(name, value)
