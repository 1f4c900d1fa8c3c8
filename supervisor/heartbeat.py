"""The liveness channel between a worker and the arbiter: one pipe per worker, one line per message.

Why the event loop writes it: a thread answering pings would keep answering while the loop is
blocked by a handler that calls ``time.sleep``; the worker's periodic tick (``Server.on_tick``)
only runs when the loop is free, so a missing beat means exactly "this worker serves nobody".
Messages (ASCII lines):
- ``ready`` once the worker listens;
- ``beat N`` on every tick, N being the requests served so far;
- ``recycle REASON`` when the worker reached ``--limit-max-requests``;
- ``metrics JSON`` (with ``--control-bind``) at most once a second when something changed, and once
  more after the drain: everything the worker counted (``asgi_worker.metrics.counts.snapshot``),
  cumulative, so the arbiter keeps the latest and a dropped one costs nothing.
Writes never block: a full pipe (an arbiter that is behind) drops a beat or a snapshot, which is
harmless (the next one says the same and more); ``ready`` and ``recycle`` wait their turn. A
message longer than the pipe's atomic size may be written in parts: the rest is written before
any new message (``Beacon.send``), so no line is ever cut or interleaved.
"""

from __future__ import annotations

import os
import select
import time

__all__ = ["Beacon", "BeaconReader"]

# The longest unfinished line kept between reads: a metrics snapshot can be tens of KiB.
_MAX_LINE = 4 * 1024 * 1024


class Beacon:
    """The worker's end: ``send`` one message."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._unsent = b""  # the rest of the message being written
        self._queue: list[bytes] = []  # messages that must not be dropped, waiting their turn
        os.set_blocking(fd, False)

    def send(self, kind: str, value: object = "", *, droppable: bool = False) -> bool:
        """Write ``kind value``. While the pipe is full a ``droppable`` message (a beat, a cumulative
        snapshot) is dropped (False), any other waits for the next send; nothing is sent once the
        arbiter is gone."""
        line = f"{kind} {value}\n".encode("ascii")
        self._write()
        if self._unsent:
            if droppable:
                return False
            self._queue.append(line)
            return True
        self._unsent = line
        self._write()
        return True

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every message begun or queued to be written (before exiting)."""
        deadline = time.monotonic() + timeout
        self._write()
        while self._unsent and (left := deadline - time.monotonic()) > 0:
            select.select([], [self._fd], [], left)
            self._write()

    def _write(self) -> None:
        while True:
            if not self._unsent:
                if not self._queue:
                    return
                self._unsent = self._queue.pop(0)
            try:
                written = os.write(self._fd, self._unsent)
            except BlockingIOError:
                return
            except BrokenPipeError:
                self._unsent = b""
                self._queue.clear()
                return
            self._unsent = self._unsent[written:]

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
