"""One periodic tick per server: the cached time, the Date header, and the connection deadline sweep.

Why one tick: uvicorn arms and cancels a timer handle per request for keep-alive. We keep a
deadline number on each connection instead and sweep them all from a single timer, which also makes
the header-read timeout free. ``Clock.now`` is the loop time as of the last tick or state change
that asked for it; deadlines are therefore exact to one tick interval, which is why the interval
shrinks when a timeout is short.
"""

from __future__ import annotations

from email.utils import formatdate

__all__ = ["Clock", "http_date", "tick_interval"]

# A deadline fires within this fraction of its timeout, and never later than one second after it.
_TICK_FRACTION = 0.2
_MAX_TICK = 1.0
_MIN_TICK = 0.02


def http_date(timestamp: float) -> bytes:
    """``timestamp`` as an IMF-fixdate (RFC 9110 5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(timestamp, usegmt=True).encode("ascii")


def tick_interval(*timeouts: float | None) -> float:
    """The sweep period for the given timeouts (None or 0 means "no timeout")."""
    active = [t for t in timeouts if t]
    if not active:
        return _MAX_TICK
    return max(_MIN_TICK, min(_MAX_TICK, min(active) * _TICK_FRACTION))


class Clock:
    """Monotonic loop time and wall-clock seconds, both as of the last ``update``."""

    __slots__ = ("now", "wall_second")

    def __init__(self) -> None:
        self.now = 0.0
        self.wall_second = 0

    def update(self, now: float, wall: float) -> bool:
        """Record the current times; True when the wall-clock second changed (refresh the Date header)."""
        self.now = now
        second = int(wall)
        if second == self.wall_second:
            return False
        self.wall_second = second
        return True
