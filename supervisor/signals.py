"""Signals in the supervisor: handlers only record; the arbiter's loop decides.

Why: a Python signal handler runs between two bytecodes of whatever the main thread was doing,
possibly in the middle of the arbiter changing its worker table. So each handler appends the
signal number to a list and nothing else; ``signal.set_wakeup_fd`` writes a byte to a pipe at the
C level, which wakes the arbiter's ``select`` even if the handler has not run yet. The loop then
takes the recorded signals in order (``take``) and maps each to a ``Command``.
``SignalInbox.close`` restores every handler it replaced and the previous wakeup fd.
"""

from __future__ import annotations

import enum
import os
import signal
from types import FrameType
from typing import Any

__all__ = ["Command", "SignalInbox", "command_for"]


class Command(enum.Enum):
    STOP = "graceful stop"
    QUICK_STOP = "quick stop"
    ROLL = "rolling restart"
    MORE = "one more worker"
    FEWER = "one fewer worker"
    REOPEN_LOGS = "reopen log files"
    CHILD = "a child changed state"


_COMMANDS = {
    signal.SIGTERM: Command.STOP,
    signal.SIGINT: Command.STOP,  # a second one is a quick stop: the arbiter knows it is stopping
    signal.SIGQUIT: Command.QUICK_STOP,
    signal.SIGHUP: Command.ROLL,
    signal.SIGTTIN: Command.MORE,
    signal.SIGTTOU: Command.FEWER,
    signal.SIGUSR1: Command.REOPEN_LOGS,
    signal.SIGCHLD: Command.CHILD,
}

HANDLED = tuple(_COMMANDS)


def command_for(signum: int) -> Command:
    """What a signal asks the supervisor to do."""
    return _COMMANDS[signal.Signals(signum)]


class SignalInbox:
    """Enqueue-only handlers for ``HANDLED`` and the pipe that wakes the loop. Main thread only."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._received: list[int] = []
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._received.append(signum)

    def take(self) -> list[int]:
        """The signals received since the last call, oldest first; drains the wakeup pipe."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        received, self._received = self._received, []
        return received

    def wake(self) -> None:
        """Wake the loop from another thread (the reload watcher) without a signal."""
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:  # the pipe is full: the loop is about to wake anyway
            pass

    def close(self) -> None:
        """Restore the previous handlers and wakeup fd; close the pipe. Idempotent."""
        if not self._previous:
            return
        signal.set_wakeup_fd(self._previous_wakeup)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()
        os.close(self.read_fd)
        os.close(self._write_fd)

    def close_in_child(self) -> None:
        """In a forked worker: put every handled signal back to its default, drop the pipe."""
        signal.set_wakeup_fd(-1)
        for signum in HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        os.close(self.read_fd)
        os.close(self._write_fd)
        self._previous.clear()
