"""``asgi-supervise APP [flags]``: every ``python -m asgi_worker`` flag plus the supervisor's own.

Mistakes end in one line and an exit code from ``asgi_worker.exitcodes``: a bad flag 2, a bad
setting or unloadable app 1, a socket that cannot be bound or a worker that cannot boot 3.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from asgi_worker.cli import fail, parse_config_kwargs
from asgi_worker.config import OPTIONS, Config
from asgi_worker.errors import AppLoadError, ConfigError, StartupError
from asgi_worker.exitcodes import BOOT_ERROR, CONFIG_ERROR
from supervisor.arbiter import Supervisor
from supervisor.config import SUPERVISOR_OPTIONS, SupervisorConfig

__all__ = ["PROG", "main"]

PROG = "asgi-supervise"
_OWN = {option.name for option in SUPERVISOR_OPTIONS}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the supervisor; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        app, kwargs = parse_config_kwargs(argv, prog=PROG, options=(*OPTIONS, *SUPERVISOR_OPTIONS))
        own = {name: kwargs.pop(name) for name in list(kwargs) if name in _OWN}
        workers = kwargs.pop("workers", None)
        workers = 1 if workers is None else workers
        settings = SupervisorConfig(workers=workers, **own)
        config = Config(app, **kwargs)
        config.configure_logging()
        if settings.preload:
            config.load()  # imported once, here; the forked workers share it
        return Supervisor(config, settings).run()
    except (AppLoadError, ConfigError) as exc:
        fail(exc, PROG)
        return exc.exit_code
    except StartupError as exc:
        fail(exc, PROG)
        return BOOT_ERROR
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place (a slow --preload)
        return CONFIG_ERROR
