"""Process exit codes: the contract between a worker process and whatever supervises it.

The supervisor and the gunicorn worker import these rather than repeating numbers. The values follow
uvicorn (1 for a bad app or config, 3 for a startup failure) and gunicorn (3 is its WORKER_BOOT_ERROR),
so scripts written for either keep working.
"""

from __future__ import annotations

__all__ = ["BOOT_ERROR", "CONFIG_ERROR", "OK", "USAGE_ERROR"]

OK = 0
"""Clean exit: a graceful stop, or a recycle after ``limit_max_requests``."""

CONFIG_ERROR = 1
"""A setting, an unreadable file or an application that cannot be imported. Restarting will not help."""

USAGE_ERROR = 2
"""A command-line flag that does not parse (argparse's own convention)."""

BOOT_ERROR = 3
"""Lifespan startup failed or a socket could not be bound. Restarting in a loop will not help."""
