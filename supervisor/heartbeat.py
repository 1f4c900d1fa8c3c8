"""The liveness channel between a worker and the arbiter: one pipe per worker, one line per message.

Why the event loop writes it: a thread answering pings would keep answering while the loop is
blocked by a handler that calls ``time.sleep``; the worker's periodic tick (``Server.on_tick``)
only runs when the loop is free, so a missing beat means exactly "this worker serves nobody".
Messages (ASCII lines):
- ``ready`` once the worker listens;
- ``beat N`` on every tick, N being the requests served so far;
- ``recycle REASON`` when the worker reached ``--limit-max-requests``.
Writes never block: a full pipe (an arbiter that is behind) drops a beat, which is harmless.
"""

from __future__ import annotations

import os

__all__ = ["Beacon", "BeaconReader"]

_MAX_LINE = 256


class Beacon:
    """The worker's end: ``send`` one message."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        os.set_blocking(fd, False)

    def send(self, kind: str, value: object = "") -> None:
        """Write ``kind value``; dropped silently if the pipe is full or the arbiter is gone."""
        try:
            os.write(self._fd, f"{kind} {value}\n".encode("ascii"))
        except (BlockingIOError, BrokenPipeError):
            pass

    def close(self) -> None:
        os.close(self._fd)


class BeaconReader:
    """The arbiter's end for one worker: complete messages out, partial lines kept for later."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._partial = b""
        self.closed = False  # the worker's end is closed (it exited)

    def read(self) -> list[tuple[str, str]]:
        """Every complete message waiting, as ``(kind, value)``; sets ``closed`` at EOF."""
        data = self._partial
        try:
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    self.closed = True
                    break
                data += chunk
        except BlockingIOError:
            pass
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > _MAX_LINE:
            self._partial = b""
        messages = []
        for line in lines:
            kind, _, value = line.decode("ascii", "replace").partition(" ")
            messages.append((kind, value))
        return messages

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
