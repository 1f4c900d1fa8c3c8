"""asgi_worker: a fast, hard-to-break ASGI server with uvicorn's API and flags.

Public API: ``Config``, ``Server``, ``run`` (as in uvicorn). Nothing here imports an optional
dependency: uvloop, httptools and h11 are chosen when a server loads its config.
"""

from __future__ import annotations

__version__ = "0.1.0"

from asgi_worker.config import Config
from asgi_worker.server import Server, run

__all__ = ["Config", "Server", "__version__", "run"]
