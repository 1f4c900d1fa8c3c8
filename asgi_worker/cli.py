"""``python -m asgi_worker APP [flags]``: argv -> ``Config`` through the option table -> ``Server``.

Every mistake an operator can make ends in one line on stderr and a non-zero exit code from
``exitcodes``: a bad flag (2), an app that cannot be loaded or a bad setting (1), a startup failure (3).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from asgi_worker.config import OPTIONS
from asgi_worker.errors import AppLoadError, ConfigError
from asgi_worker.exitcodes import BOOT_ERROR, OK, USAGE_ERROR
from asgi_worker.options import Option, env_name
from asgi_worker.version import __version__

__all__ = ["build_parser", "fail", "main", "options_from_environment", "parse_config_kwargs"]

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


def parse_config_kwargs(
    argv: Sequence[str],
    environ: dict[str, str] | None = None,
    prog: str = PROG,
    options: Sequence[Option] = OPTIONS,
) -> tuple[str, dict[str, Any]]:
    """``(app, keyword arguments)`` from argv, then the environment, then the defaults.

    Only settings given somewhere are in the result; ``Config`` supplies the other defaults.
    """
    environ = dict(os.environ) if environ is None else environ
    namespace = vars(build_parser(prog, options).parse_args(list(argv)))
    app = namespace.pop("app")
    kwargs: dict[str, Any] = {}
    for option in options:
        if option.name in namespace:
            kwargs[option.name] = namespace[option.name]
        else:
            value = _from_env(option, environ)
            if value is not None:
                kwargs[option.name] = value
    return app, kwargs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    from asgi_worker.config import Config
    from asgi_worker.server import Server

    argv = sys.argv[1:] if argv is None else argv
    try:
        app, kwargs = parse_config_kwargs(argv)
        workers = kwargs.pop("workers", None)
        config = Config(app, **kwargs)
        if workers and workers > 1:
            logging.getLogger("asgi_worker.error").warning(
                "asgi_worker runs one process; --workers %d is ignored (use asgi-supervise).", workers
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
