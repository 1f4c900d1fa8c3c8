"""asgi_worker: a fast, hard-to-break ASGI server with uvicorn's API and flags.

Public API: ``Config``, ``Server``, ``run`` (as in uvicorn), and the gunicorn worker classes
``Worker`` and ``H11Worker`` (``gunicorn -k asgi_worker.Worker``), resolved on first use so that
``import asgi_worker`` never imports gunicorn. Nothing here imports an optional dependency.
"""

from __future__ import annotations

from typing import Any

from asgi_worker.config import Config
from asgi_worker.server import Server, run
from asgi_worker.version import __version__

__all__ = ["Config", "H11Worker", "Server", "Worker", "__version__", "run"]


def __getattr__(name: str) -> Any:
    if name in ("Worker", "H11Worker"):
        from asgi_worker import gunicorn_worker

        return getattr(gunicorn_worker, name)
    raise AttributeError(f"module 'asgi_worker' has no attribute {name!r}")
