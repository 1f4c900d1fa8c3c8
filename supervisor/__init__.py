"""supervisor: ``asgi-supervise``, the pre-fork supervisor of asgi_worker servers.

Public API: ``Supervisor`` (runs until stopped, returns the exit code) and ``main`` (the command).
``IS_ASGI_WORKER_SUPERVISOR`` marks this package: the import name ``supervisor`` is also
supervisord's, and ``asgi-supervise`` checks the mark before anything else.
"""

from __future__ import annotations

IS_ASGI_WORKER_SUPERVISOR = True

from supervisor.arbiter import Supervisor  # noqa: E402  (the mark first: see asgi_supervise.py)
from supervisor.cli import main  # noqa: E402

__all__ = ["IS_ASGI_WORKER_SUPERVISOR", "Supervisor", "main"]
