"""Write-side flow control shared by the HTTP and WebSocket connection shells.

asyncio calls ``pause_writing`` when a transport's buffer passes its high-water mark and
``resume_writing`` when it drains below the low-water mark. A sender that would add more awaits
``wait_writable``; its waiter is created only then, so the common case (never paused) costs one
attribute read (``write_paused``). When the connection is lost every waiter is released, and the
sender then finds the connection gone.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

__all__ = ["WRITE_HIGH_WATER", "WRITE_LOW_WATER", "WriteFlow", "writelines_of"]

# Set explicitly on every transport: uvloop's default low-water mark is 16 bytes, which wakes a
# paused writer for every few bytes drained. 64 KiB / 16 KiB are asyncio's own defaults.
WRITE_HIGH_WATER = 65536
WRITE_LOW_WATER = 16384


# CPython's selector transport got its own ``writelines`` in 3.12 (a ``sendmsg``), which until
# 3.12.9 and 3.13.2 never paused the protocol (gh-127655): a sender would never be told to wait.
_STDLIB_WRITELINES_PAUSES = sys.version_info < (3, 12) or (
    sys.version_info >= (3, 13, 2) if sys.version_info >= (3, 13) else sys.version_info >= (3, 12, 9)
)


def writelines_of(transport: asyncio.Transport) -> Callable[[list[bytes]], None]:
    """The transport's ``writelines`` (uvloop: one ``writev``, the pieces uncopied) where it pauses
    the protocol as ``write`` does; otherwise the pieces joined and written once."""
    if _STDLIB_WRITELINES_PAUSES or type(transport).__module__.startswith("uvloop"):
        return transport.writelines
    write = transport.write
    return lambda pieces: write(b"".join(pieces))


class WriteFlow:
    """Mixin for an ``asyncio.Protocol`` with a ``_transport``; call ``_release_writers`` when lost."""

    _transport: asyncio.Transport

    def __init__(self) -> None:
        self.write_paused = False
        self._write_waiters: list[asyncio.Future[None]] = []

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()

    async def wait_writable(self) -> None:
        """Return once the transport is below its low-water mark, or the connection is gone."""
        while self.write_paused and not self._transport.is_closing():
            waiter = asyncio.get_running_loop().create_future()
            self._write_waiters.append(waiter)
            await waiter

    def _release_writers(self) -> None:
        """The connection is gone: no sender may wait any longer."""
        self.write_paused = False
        self._wake_writers()

    def _wake_writers(self) -> None:
        waiters, self._write_waiters = self._write_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
