"""The supervisor's own settings, declared in the same table form as asgi_worker's options.

``asgi-supervise`` accepts every ``python -m asgi_worker`` flag (they configure each worker) plus
these. Defaults and their precedents:
- ``--workers``: ``$WEB_CONCURRENCY`` or 1, as uvicorn reads it.
- ``--timeout-worker-healthcheck`` 30 s: gunicorn's ``--timeout`` default; a worker whose event
  loop has not ticked for this long is blocked, and is replaced after its stack is logged.
- the graceful stop: ``--timeout-graceful-shutdown`` bounds each worker's own drain; unset, the
  supervisor allows gunicorn's 30 s before it kills what is left.
- ``--reload-delay`` 0.25 s: uvicorn's.
"""

from __future__ import annotations

from dataclasses import dataclass

from asgi_worker.errors import ConfigError
from asgi_worker.options import Option, options_of, setting

__all__ = [
    "DEFAULT_GRACEFUL_TIMEOUT",
    "DEFAULT_HEALTHCHECK_TIMEOUT",
    "SUPERVISOR_OPTIONS",
    "SupervisorConfig",
]

DEFAULT_HEALTHCHECK_TIMEOUT = 30.0
DEFAULT_GRACEFUL_TIMEOUT = 30.0
DEFAULT_RELOAD_DELAY = 0.25


@dataclass
class SupervisorConfig:
    """What the supervisor itself needs; the workers' settings stay in their ``Config``.

    Each field declared with ``setting`` is also a flag of ``asgi-supervise`` (``SUPERVISOR_OPTIONS``).
    """

    workers: int = 1  # the --workers flag is asgi_worker's own (its Config declares it)
    preload: bool = setting(
        False,
        "Import the app in the supervisor before forking, so that workers share its memory.",
        kind="flag",
    )
    timeout_worker_healthcheck: float = setting(
        DEFAULT_HEALTHCHECK_TIMEOUT,
        "Replace a worker whose event loop has not ticked for this many seconds (its stack is logged).",
    )
    max_worker_memory: float | None = setting(
        None, "Recycle a worker whose resident memory passes this many MB.", metavar="MB"
    )
    pid: str | None = setting(None, "Write the supervisor's pid to this file.", metavar="FILE")
    binds: list[str] = setting(
        [],
        "Listen on HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N; repeatable (instead of --host/--port).",
        flag="--bind",
        metavar="ADDRESS",
    )
    reload: bool = setting(False, "Restart the workers when a watched file changes.", kind="flag")
    reload_dirs: list[str] = setting(
        [],
        "Directory to watch with --reload (repeatable). [default: the current one]",
        flag="--reload-dir",
        metavar="DIR",
    )
    reload_includes: list[str] = setting(
        [],
        "Glob of files to watch with --reload (repeatable). [default: *.py]",
        flag="--reload-include",
        metavar="GLOB",
    )
    reload_excludes: list[str] = setting(
        [], "Glob of files to ignore with --reload (repeatable).", flag="--reload-exclude", metavar="GLOB"
    )
    reload_delay: float = setting(
        DEFAULT_RELOAD_DELAY, "Seconds between polls of the watched files (and the debounce of a change)."
    )

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be a whole number of at least 1, not {self.workers!r}")
        if self.timeout_worker_healthcheck <= 0:
            raise ConfigError("timeout_worker_healthcheck must be more than 0 seconds")
        if self.max_worker_memory is not None and self.max_worker_memory <= 0:
            raise ConfigError("max_worker_memory must be more than 0 MB")
        if self.reload_delay <= 0:
            raise ConfigError("reload_delay must be more than 0 seconds")
        self.binds = list(self.binds or [])
        self.reload_dirs = list(self.reload_dirs or [])
        self.reload_includes = list(self.reload_includes or [])
        self.reload_excludes = list(self.reload_excludes or [])


# The supervisor's own flags, from the declarations above (asgi-supervise adds them to asgi_worker's).
SUPERVISOR_OPTIONS: tuple[Option, ...] = options_of(SupervisorConfig)
