"""``python -m asgi_worker APP [flags]``: argv -> ``Config`` through the option table -> ``Server``.

Every mistake an operator can make ends in one line on stderr and a non-zero exit code from
``exitcodes``: a bad flag (2), an app that cannot be loaded or a bad setting (1), a startup failure (3).

A setting comes from the first layer that gives it: the command line, the environment, the TOML file
(``--config PATH``, else ``[tool.asgi-worker]`` in the app's ``pyproject.toml``), the default.
``--print-config`` shows each setting with its layer instead of serving.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from asgi_worker.config import OPTIONS
from asgi_worker.config_file import file_settings
from asgi_worker.errors import AppLoadError, ConfigError
from asgi_worker.exitcodes import BOOT_ERROR, OK, USAGE_ERROR
from asgi_worker.options import Option, env_name, octal
from asgi_worker.version import __version__

__all__ = [
    "Settings",
    "build_parser",
    "fail",
    "format_settings",
    "main",
    "options_from_environment",
    "parse_config_kwargs",
    "resolve_settings",
]

PROG = "asgi_worker"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exits with ``USAGE_ERROR``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def build_parser(prog: str = PROG, options: Sequence[Option] = OPTIONS) -> argparse.ArgumentParser:
    """The argument parser, generated from ``options`` (the supervisor passes ours plus its own)."""
    parser = _OneLineParser(prog=prog, description="Serve an ASGI application.")
    parser.add_argument("app", metavar="APP", help="The application, as module:attribute.")
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    parser.add_argument(
        "--config",
        dest="config_path",
        metavar="PATH",
        help="Read settings from this TOML file (the environment and flags override it). "
        "[default: [tool.asgi-worker] in pyproject.toml of --app-dir or the current directory]",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="Print each setting, its value and where it came from, then exit without serving.",
    )
    for option in options:
        _add_option(parser, option)
    return parser


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    help_text = f"{option.help} [env: {env_name(option)}]".replace("%", "%%")  # argparse formats help
    if option.kind == "switch":
        parser.add_argument(
            option.flag,
            dest=option.name,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=help_text,
        )
    elif option.kind == "flag":
        parser.add_argument(
            option.flag, dest=option.name, action="store_true", default=argparse.SUPPRESS, help=help_text
        )
    elif option.kind == "append":
        parser.add_argument(
            option.flag,
            dest=option.name,
            action="append",
            default=argparse.SUPPRESS,
            metavar=option.metavar,
            help=help_text,
        )
    else:
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.type or str,
            choices=option.choices,
            default=argparse.SUPPRESS,
            metavar=option.metavar,
            help=help_text,
        )


def _from_env(option: Option, environ: dict[str, str]) -> Any:
    raw = environ.get(env_name(option))
    if raw is None or raw == "":
        return None
    try:
        if option.kind in ("switch", "flag"):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if option.kind == "append":
            return [part for part in raw.split(",") if part]
        value = option.type(raw) if option.type else raw
    except ValueError:
        raise ConfigError(f"{env_name(option)}={raw!r} is not a valid value for {option.flag}") from None
    if option.choices and value not in option.choices:
        raise ConfigError(f"{env_name(option)} must be one of {', '.join(option.choices)}, not {raw!r}")
    return value


def options_from_environment(names: Sequence[str], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings among ``names`` that ``ASGI_WORKER_<NAME>`` variables give (for gunicorn's worker,
    whose command line is gunicorn's). Raises ``ConfigError`` for a value that does not parse."""
    environ = dict(os.environ) if environ is None else environ
    wanted = set(names)
    kwargs: dict[str, Any] = {}
    for option in OPTIONS:
        if option.name in wanted:
            value = _from_env(option, environ)
            if value is not None:
                kwargs[option.name] = value
    return kwargs


@dataclass(frozen=True)
class Settings:
    """What the layers gave: ``values`` holds only the settings given somewhere (``Config`` has the
    other defaults), ``sources`` says which layer gave each, for ``--print-config``."""

    app: str
    values: dict[str, Any]
    sources: dict[str, str]
    print_config: bool = False


def resolve_settings(
    argv: Sequence[str],
    environ: dict[str, str] | None = None,
    prog: str = PROG,
    options: Sequence[Option] = OPTIONS,
) -> Settings:
    """Each setting from the command line, else the environment, else the TOML file.

    The file is ``--config``'s, else the ``[tool.asgi-worker]`` table of ``pyproject.toml`` in the
    app directory (``--app-dir`` from the command line or the environment, else the current one).
    A variable is parsed only when its flag is absent: a bad one that a flag overrides is no error.
    """
    environ = dict(os.environ) if environ is None else environ
    namespace = vars(build_parser(prog, options).parse_args(list(argv)))
    app = namespace.pop("app")
    config_path = namespace.pop("config_path", None)
    print_config = bool(namespace.pop("print_config", False))
    from_file_path, from_file = file_settings(config_path, _app_dir(namespace, environ, options), options)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in options:
        if option.name in namespace:
            values[option.name], sources[option.name] = namespace[option.name], "command line"
            continue
        value = _from_env(option, environ)
        if value is not None:
            values[option.name], sources[option.name] = value, f"environment {env_name(option)}"
        elif option.name in from_file:
            values[option.name], sources[option.name] = from_file[option.name], f"file {from_file_path}"
    return Settings(app, values, sources, print_config)


def _app_dir(namespace: dict[str, Any], environ: dict[str, str], options: Sequence[Option]) -> str:
    """Where to look for ``pyproject.toml``: ``--app-dir`` as the flag or its variable gives it."""
    if namespace.get("app_dir"):
        return str(namespace["app_dir"])
    option = next((option for option in options if option.name == "app_dir"), None)
    return (_from_env(option, environ) if option else None) or ""


def parse_config_kwargs(
    argv: Sequence[str],
    environ: dict[str, str] | None = None,
    prog: str = PROG,
    options: Sequence[Option] = OPTIONS,
) -> tuple[str, dict[str, Any]]:
    """``(app, keyword arguments)`` from argv, then the environment, then the TOML file.

    Only settings given somewhere are in the result; ``Config`` supplies the other defaults.
    """
    settings = resolve_settings(argv, environ, prog, options)
    return settings.app, dict(settings.values)


def format_settings(
    settings: Settings, options: Sequence[Option] = OPTIONS, defaults: Mapping[str, Any] | None = None
) -> str:
    """``--print-config``: one ``name = value  # source`` line per setting, values written as TOML
    would have them (``unset`` for no value, a file mode in octal). ``defaults`` replaces table
    defaults the command overrides (the supervisor's one worker)."""
    lines = [f"app = {_show(settings.app)}  # command line"]
    for option in options:
        if option.name in settings.values:
            value, source = settings.values[option.name], settings.sources[option.name]
        else:
            value, source = (defaults or {}).get(option.name, option.default), "default"
        shown = oct(value) if option.type is octal and isinstance(value, int) else _show(value)
        lines.append(f"{option.name} = {shown}  # {source}")
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, bool | int | float | str):
        return json.dumps(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else "{...}"  # the built-in logging config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    from asgi_worker.config import Config
    from asgi_worker.server import Server

    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = resolve_settings(argv)
        kwargs = dict(settings.values)
        workers = kwargs.pop("workers", None)
        config = Config(settings.app, **kwargs)
        if settings.print_config:  # after Config, so that a value it refuses still exits 1
            sys.stdout.write(format_settings(settings))
            return OK
        if workers is not None and workers != 1:
            logging.getLogger("asgi_worker.error").warning(
                "asgi_worker runs one process; --workers %s is ignored (use asgi-supervise).", workers
            )
        server = Server(config)
        server.run()
    except (AppLoadError, ConfigError) as exc:
        fail(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return OK
    return OK if server.started else BOOT_ERROR


def fail(exc: Exception, prog: str = PROG) -> None:
    """Tell the operator what is wrong in one line; the traceback only with debug logging."""
    debug = logging.getLogger("asgi_worker").isEnabledFor(logging.DEBUG)
    cause = exc.__cause__
    if debug and cause is not None:
        logging.getLogger("asgi_worker.error").debug("Caused by:", exc_info=cause)
    sys.stderr.write(f"{prog}: error: {exc}\n")
