"""How a setting is declared: once, as a field of a settings dataclass, with everything about it.

``Config`` (and the supervisor's ``SupervisorConfig``) declare each setting as
``name: type = setting(default, help, ...)``. That one line is the keyword of ``Config(...)`` (so
IDEs and mypy see uvicorn's API), its default and type, and the source of its command-line flag,
environment variable, choices and bounds: ``options_of(cls)`` derives the ``Option`` rows that
``cli.py`` builds argparse from, and ``check_settings`` validates an instance against the same
declaration. Adding a setting is one field plus the code that uses it.

Flag names are uvicorn 0.54's wherever uvicorn has the setting; gunicorn's names
(``--limit-request-line`` ...) for the limits only gunicorn has. Each option can also come from
``ASGI_WORKER_<NAME>`` in the environment (uvicorn reads ``UVICORN_<NAME>``); a few read the
variable uvicorn documents (``WEB_CONCURRENCY``, ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from asgi_worker.errors import ConfigError

__all__ = [
    "HttpName",
    "InterfaceName",
    "LifespanName",
    "LogFormatName",
    "LoopName",
    "Option",
    "WsName",
    "check_settings",
    "choices_of",
    "env_name",
    "options_of",
    "setting",
]

T = TypeVar("T")

# Choice sets, declared once: the annotation of the setting, its CLI choices and its validation.
LoopName = Literal["auto", "asyncio", "uvloop"]
HttpName = Literal["auto", "h11", "httptools"]
WsName = Literal["auto", "websockets", "none"]
LifespanName = Literal["auto", "on", "off"]
InterfaceName = Literal["auto", "asgi3", "asgi2", "wsgi"]
LogFormatName = Literal["text", "json"]
ProxyProtocolName = Literal["off", "v1", "v2", "auto"]


def choices_of(literal: Any) -> tuple[str, ...]:
    """The values of a ``Literal[...]`` choice set, in declaration order."""
    return tuple(get_args(literal))


def octal(text: str) -> int:
    """Parse a file mode given in octal on the command line (``--uds-mode 660``)."""
    return int(text, 8)


def worker_count(text: str) -> int | str:
    """Parse ``--workers``/``WEB_CONCURRENCY``: a whole number, or ``auto`` (from the CPUs this
    process may use: asgi-supervise resolves it, ``supervisor/cpus.py``)."""
    return "auto" if text.strip().lower() == "auto" else int(text)


def truthy(text: str) -> bool:
    """Parse a boolean given as a value (``--ws-per-message-deflate false``)."""
    return text.lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Option:
    """One command-line row. ``kind`` is "value", "flag" (store true), "switch" (--x/--no-x) or "append"."""

    name: str
    flag: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = str
    kind: str = "value"
    choices: tuple[str, ...] | None = None
    env: str | None = None
    metavar: str | None = None


def env_name(option: Option) -> str:
    """The environment variable the option is read from when its flag is absent."""
    return option.env or f"ASGI_WORKER_{option.name.upper()}"


_SPEC = "asgi_worker.setting"


@dataclass(frozen=True)
class _Spec:
    help: str
    flag: str | None
    env: str | None
    metavar: str | None
    parse: Callable[[str], Any] | None
    kind: str | None
    choices: tuple[str, ...] | None
    low: float | None
    high: float | None
    cli: bool


def setting(
    default: T,
    help: str,
    *,
    flag: str | None = None,
    env: str | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    kind: str | None = None,
    choices: Sequence[str] | None = None,
    low: float | None = None,
    high: float | None = None,
    cli: bool = True,
) -> T:
    """Declare one setting as a dataclass field (see the module docstring).

    ``flag`` defaults to ``--name-with-dashes``; the text parser, the option kind and the choices
    follow the field's annotation unless given (``parse``/``kind``/``choices``). ``low``/``high``
    bound numbers (inclusive); ``cli=False`` keeps a setting off the command line.
    """
    spec = _Spec(help, flag, env, metavar, parse, kind, tuple(choices) if choices else None, low, high, cli)
    metadata = {_SPEC: spec}
    # A dict or list default is the same object for every instance, as a keyword default would be:
    # a class that mutates it must copy it first (SupervisorConfig.__post_init__ does).
    if type(default).__hash__ is None:
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@functools.cache
def _declared(cls: type) -> tuple[tuple[dataclasses.Field[Any], _Spec, tuple[Any, ...], bool], ...]:
    """``(field, spec, annotation alternatives without None, None allowed)`` for each declared setting
    of ``cls``; read once per class (type hints are resolved from strings, which is not free)."""
    hints = typing.get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(_SPEC)
        if spec is not None:
            hint = hints[field.name]
            rows.append((field, spec, _alternatives(hint), type(None) in get_args(hint)))
    return tuple(rows)


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(arg for arg in get_args(annotation) if arg is not type(None))
    return (annotation,)


def _choices(spec: _Spec, alternatives: tuple[Any, ...]) -> tuple[str, ...] | None:
    if spec.choices:
        return spec.choices
    literals = [arg for arg in alternatives if get_origin(arg) is Literal]
    return choices_of(literals[0]) if literals else None


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def options_of(cls: type) -> tuple[Option, ...]:
    """The command-line rows of a settings dataclass, in declaration order."""
    rows = []
    for field, spec, alternatives, _optional in _declared(cls):
        if not spec.cli:
            continue
        choices = _choices(spec, alternatives)
        kind = spec.kind
        if kind is None:
            if alternatives == (bool,):
                kind = "switch"
            elif all(get_origin(arg) in (list, Sequence) for arg in alternatives):
                kind = "append"
            else:
                kind = "value"
        parse = spec.parse
        if parse is None and kind == "value" and choices is None:
            parse = int if int in alternatives else float if float in alternatives else str
        rows.append(
            Option(
                field.name,
                spec.flag or "--" + field.name.replace("_", "-"),
                _default(field),
                spec.help,
                parse or str,
                kind,
                choices,
                spec.env,
                spec.metavar,
            )
        )
    return tuple(rows)


def check_settings(settings: Any) -> None:
    """Validate every declared setting of a dataclass instance; raise ``ConfigError`` naming the first
    bad one. Whole numbers are checked against their bounds, seconds (floats) must be 0 or more and
    are stored as ``float``, choices must be one of theirs. ``None`` passes where the type allows it."""
    cls: type = type(settings)
    for field, spec, alternatives, optional in _declared(cls):
        name = field.name
        value = getattr(settings, name)
        if value is None and optional:
            continue
        choices = _choices(spec, alternatives)
        if choices is not None:
            # A setting that also takes a number (log_level: a logging level) checks only its names.
            names_only = any(arg in (int, float) for arg in alternatives)
            if not (names_only and not isinstance(value, str)) and value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        elif int in alternatives:
            _check_int(name, value, spec.low, spec.high)
        elif float in alternatives:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < (spec.low or 0):
                raise ConfigError(f"{name} must be a number of seconds (0 or more), not {value!r}")
            object.__setattr__(settings, name, float(value))


def _check_int(name: str, value: Any, low: float | None, high: float | None) -> None:
    low = low or 0
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"from {low:g} to {high:g}" if high is not None else f"of at least {low:g}"
        raise ConfigError(f"{name} must be a whole number {bounds}, not {value!r}")
