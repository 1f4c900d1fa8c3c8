"""Settings from TOML: ``--config PATH``, or the ``[tool.asgi-worker]`` table of the app's ``pyproject.toml``.

The file is the lowest layer above the defaults (the environment and the command line override it, see
``cli.resolve_settings``). Its keys are the setting names, snake_case or kebab-case as the flags are
spelled; its values are TOML's own types, checked against the option table here so that a typo or a
quoted number is one line naming the key before anything starts, not a surprise at serving time.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from asgi_worker.errors import ConfigError
from asgi_worker.options import Option, octal, truthy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pyproject.toml installs tomli there
    import tomli as tomllib

__all__ = ["file_settings"]

PYPROJECT = "pyproject.toml"
TOOL_TABLE = "asgi-worker"

_WRONG = object()  # what _convert answers for a value of the wrong TOML type

# asgi-supervise's own settings. One table usually serves both commands, so ``python -m asgi_worker``
# skips these rather than calling them unknown (it cannot import ``supervisor`` to ask; a test
# checks this list against ``supervisor.config.SUPERVISOR_OPTIONS``).
SUPERVISOR_KEYS = frozenset(
    {
        "preload",
        "timeout_worker_healthcheck",
        "max_worker_memory",
        "pid",
        "binds",
        "reload",
        "reload_dirs",
        "reload_includes",
        "reload_excludes",
        "reload_delay",
    }
)


def file_settings(path: str | None, app_dir: str, options: Sequence[Option]) -> tuple[str, dict[str, Any]]:
    """``(path read, {setting: value})`` from ``path``, else from ``app_dir``'s pyproject table.

    ``path``'s keys are top-level, unless it is a ``pyproject.toml`` (then its table is read).
    ``("", {})`` when there is no file or no table. Raises ``ConfigError`` for a file that cannot be
    read or parsed, an unknown key or a value of the wrong type.
    """
    if path is not None and os.path.basename(path) != PYPROJECT:
        return path, check_table(read_toml(path), options, path)
    pyproject = path or os.path.join(app_dir or ".", PYPROJECT)
    if path is None and not os.path.isfile(pyproject):
        return "", {}
    tool = read_toml(pyproject).get("tool")
    table = tool.get(TOOL_TABLE) if isinstance(tool, dict) else None
    if table is None:
        return "", {}
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.{TOOL_TABLE}] must be a table")
    return pyproject, check_table(table, options, pyproject)


def read_toml(path: str) -> dict[str, Any]:
    """The parsed document; every failure is one ``ConfigError`` line (a syntax error with its line)."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def check_table(table: dict[str, Any], options: Sequence[Option], source: str) -> dict[str, Any]:
    """The settings a table gives, keyed by setting name and converted to what ``Config`` takes."""
    by_name = {option.name: option for option in options}
    result: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        option = by_name.get(name)
        if option is None and name in SUPERVISOR_KEYS:
            continue  # the supervisor's, read by asgi-supervise from the same table
        if option is None:
            raise ConfigError(f"{source}: unknown setting {key!r}{_suggestion(key, by_name)}")
        if name in result:
            raise ConfigError(f"{source}: {name} is given twice (as snake_case and kebab-case)")
        converted = _convert(option, value)
        if converted is _WRONG:
            raise ConfigError(f"{source}: {key} must be {_expected(option)}, not {_toml_type(value)}")
        if option.choices and converted not in option.choices:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(option.choices)}, not {value!r}")
        result[name] = converted
    return result


def _suggestion(key: str, names: dict[str, Option]) -> str:
    """``"; did you mean 'port'?"`` in the spelling the key used (kebab or snake), or nothing."""
    close = difflib.get_close_matches(key.replace("-", "_"), list(names), n=1)
    if not close:
        return " (--help lists the settings)"
    return f"; did you mean {close[0].replace('_', '-') if '-' in key else close[0]!r}?"


def _convert(option: Option, value: Any) -> Any:
    """``value`` as the setting takes it, or ``_WRONG``. A bool is never a number, though Python's is."""
    if option.kind in ("switch", "flag") or option.type is truthy:
        return value if isinstance(value, bool) else _WRONG
    if option.kind == "append":
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
        return _WRONG
    if isinstance(value, bool):
        return _WRONG
    if option.type is int:
        return value if isinstance(value, int) else _WRONG
    if option.type is float:
        return float(value) if isinstance(value, int | float) else _WRONG
    if option.type in (str, None):
        return value if isinstance(value, str) else _WRONG
    # A parser of its own (octal, "auto"): TOML's number (0o660, 4) as it is, or text as the flag's.
    if isinstance(value, int | float):
        return value
    try:
        return option.type(value) if isinstance(value, str) else _WRONG
    except ValueError:
        return _WRONG


def _expected(option: Option) -> str:
    if option.kind in ("switch", "flag") or option.type is truthy:
        return "true or false"
    if option.kind == "append":
        return "an array of strings"
    if option.type is int:
        return "an integer"
    if option.type is float:
        return "a number"
    if option.type is octal:
        return "an integer (0o660) or a string of octal digits"
    if option.type in (str, None):
        return "a string"
    return f"a number or a string that {option.flag} takes"


def _toml_type(value: Any) -> str:
    """How the value was written, in TOML's words, with the value when it is short."""
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    kind = kinds.get(type(value), type(value).__name__)
    try:
        text = json.dumps(value)
    except TypeError:  # a TOML date or time
        text = str(value)
    return f"{kind} {text}" if len(text) <= 40 else kind
