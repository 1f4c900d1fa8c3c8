"""``asgi-supervise APP [flags]``: every ``python -m asgi_worker`` flag plus the supervisor's own.

Mistakes end in one line and an exit code from ``asgi_worker.exitcodes``: a bad flag 2, a bad
setting or unloadable app 1, a socket that cannot be bound or a worker that cannot boot 3.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from asgi_worker.cli import fail, format_settings, resolve_settings
from asgi_worker.config import OPTIONS, Config
from asgi_worker.errors import AppLoadError, ConfigError, StartupError
from asgi_worker.exitcodes import BOOT_ERROR, CONFIG_ERROR, OK
from supervisor.arbiter import Supervisor
from supervisor.config import SUPERVISOR_OPTIONS, SupervisorConfig
from supervisor.cpus import usable_cpus
from supervisor.signals import SignalInbox

__all__ = ["PROG", "main"]

PROG = "asgi-supervise"
_OWN = {option.name for option in SUPERVISOR_OPTIONS}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the supervisor; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = (*OPTIONS, *SUPERVISOR_OPTIONS)
        given = resolve_settings(argv, prog=PROG, options=options)
        kwargs = dict(given.values)
        own = {name: kwargs.pop(name) for name in list(kwargs) if name in _OWN}
        workers = kwargs.pop("workers", None)
        workers_from = ""
        if workers == "auto":
            workers, workers_from = usable_cpus()
        settings = SupervisorConfig(workers=1 if workers is None else workers, **own)
        config = Config(given.app, **kwargs)
        if given.print_config:  # checked by both classes first: a refused value still exits 1
            sys.stdout.write(format_settings(given, options, defaults={"workers": 1}))
            return OK
        config.configure_logging()
        if workers_from:
            logging.getLogger("asgi_worker.supervisor").info(
                "--workers auto: %d, from %s", settings.workers, workers_from
            )
        # Handlers first, before anything slow (the app's import under --preload, binding): as a
        # container's PID 1 a signal with no handler is dropped by the kernel, so an early SIGTERM
        # would be lost; recorded here, it stops the supervisor before any worker is forked.
        inbox = SignalInbox()
        try:
            if settings.preload:
                config.load()  # imported once, here; the forked workers share it
        except BaseException:
            inbox.close()
            raise
        return Supervisor(config, settings, inbox).run()
    except (AppLoadError, ConfigError) as exc:
        fail(exc, PROG)
        return exc.exit_code
    except StartupError as exc:
        fail(exc, PROG)
        return BOOT_ERROR
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place (still parsing)
        return CONFIG_ERROR
