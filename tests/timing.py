"""The one time unit for every wait in the tests, scaled by ``ASGI_WORKER_TEST_TIMEOUT_FACTOR``.

A slow CI machine sets the factor (say 3) instead of anybody editing sleeps. Every timeout, socket
timeout and ``communicate()`` in the suite is a multiple of ``TICK``.
"""

from __future__ import annotations

import os
import sys

FACTOR = float(os.environ.get("ASGI_WORKER_TEST_TIMEOUT_FACTOR", "1"))
if sys.flags.dev_mode or os.environ.get("PYTHONASYNCIODEBUG"):
    FACTOR *= 2

TICK = 0.1 * FACTOR
"""A short wait: long enough for loopback round trips on a busy machine."""

TIMEOUT = 50 * TICK
"""The most any single step of a test may take before it counts as hung (5 s at factor 1)."""
