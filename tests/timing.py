"""The one time unit for every wait in the tests, scaled by ``ASGI_WORKER_TEST_TIMEOUT_FACTOR``.

A slow CI machine sets the factor (say 3) instead of anybody editing sleeps. Every timeout, socket
timeout and ``communicate()`` in the suite is a multiple of ``TICK``, and a test that needs some state
to be reached waits for it with ``wait_until`` instead of sleeping.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

FACTOR = float(os.environ.get("ASGI_WORKER_TEST_TIMEOUT_FACTOR", "1"))
if sys.flags.dev_mode or os.environ.get("PYTHONASYNCIODEBUG"):
    FACTOR *= 2

TICK = 0.1 * FACTOR
"""A short wait: long enough for loopback round trips on a busy machine."""

TIMEOUT = 50 * TICK
"""The most any single step of a test may take before it counts as hung (5 s at factor 1)."""


def wait_until(condition: Callable[[], object], timeout: float = TIMEOUT) -> bool:
    """Poll ``condition`` every ``TICK / 10`` until it holds; whether it did within ``timeout``.

    For a state the test cannot be told about (a flag on another thread, a process table): a wait
    on the state itself, never a fixed sleep that hopes the state has been reached.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(TICK / 10)
    return True
