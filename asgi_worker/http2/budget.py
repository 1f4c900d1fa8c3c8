"""A token bucket on an injected clock: how fast a peer may send a frame kind that costs us work."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``burst`` tokens at most, ``per_second`` back each second; each frame takes one.

    The time is passed in, so tests drive it with a fake clock and the module reads no clock.
    """

    __slots__ = ("burst", "per_second", "stamp", "tokens")

    def __init__(self, burst: int, per_second: float, now: float) -> None:
        self.burst = float(burst)
        self.per_second = per_second
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend a token; False when none is left (the peer is over its budget)."""
        tokens = self.tokens + (now - self.stamp) * self.per_second
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True

    def give(self, count: float) -> None:
        """Return tokens for work that legitimately causes this frame kind (capped at ``burst``)."""
        tokens = self.tokens + count
        self.tokens = tokens if tokens < self.burst else self.burst
