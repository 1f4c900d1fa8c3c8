"""Process exit codes: the contract between a worker process and whatever supervises it.

The supervisor and the gunicorn worker import these rather than repeating numbers. The values follow
uvicorn (3, its STARTUP_FAILURE, for an app it cannot load, a socket it cannot bind and a failed
lifespan startup) and gunicorn (3 is its WORKER_BOOT_ERROR), so scripts written for either keep
working.
"""

from __future__ import annotations

__all__ = ["BOOT_ERROR", "CONFIG_ERROR", "OK", "USAGE_ERROR"]

OK = 0
"""Clean exit: a graceful stop, or a recycle after ``limit_max_requests``."""

CONFIG_ERROR = 1
"""A setting with a value the server cannot use, or an unreadable file. Restarting will not help."""

USAGE_ERROR = 2
"""A command-line flag that does not parse (argparse's own convention)."""

BOOT_ERROR = 3
"""The app could not be loaded, lifespan startup failed or a socket could not be bound. Restarting in a
loop will not help."""
