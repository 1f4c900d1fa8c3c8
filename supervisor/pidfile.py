"""The supervisor's pidfile: written once at startup, removed at exit, never clobbering a live owner.

Rules:
- A reader never sees a half-written file: the pid goes into a temporary file in the same directory,
  which is then linked (if no file exists) or renamed (over a stale one) into place.
- An existing file that names a live process other than us is a second supervisor (or a forgotten
  one): refuse with ``PidfileError``, a ``ConfigError``, so the command exits 1 with one line and
  systemd's RestartPreventExitStatus= does not restart-loop it.
- A file naming a dead process, or holding anything but a positive integer, is stale (a crash, a
  reboot without tmpfs): replace it. "Live" means ``kill(pid, 0)`` does not report ESRCH; a pid that
  was recycled by an unrelated process therefore blocks startup, the safe side of the doubt.
- ``remove`` deletes the file only while it still holds our pid: a supervisor that lost its file to
  a successor must not delete the successor's.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from asgi_worker.errors import ConfigError

__all__ = ["Pidfile", "PidfileError"]

PIDFILE_MODE = 0o644
"""Readable by everyone, like the pidfiles of nginx and gunicorn: monitoring tools read them."""

_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}


class PidfileError(ConfigError):
    """The pidfile cannot be written, or belongs to another live process; the message says which."""


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class Pidfile:
    """A pidfile at ``path``: ``create(pid)`` at startup, ``remove()`` at exit."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._pid: int | None = None

    def read(self) -> int | None:
        """The pid in the file, or None if the file is missing, unreadable or not a positive integer."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        try:
            pid = int(text.strip())
        except ValueError:
            return None
        return pid if pid > 0 else None

    def create(self, pid: int) -> None:
        """Write ``pid`` atomically. Replaces a stale file; rewriting our own pid is allowed.

        Raises ``PidfileError`` when the file names another live process, or cannot be written.
        """
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        except OSError as exc:
            raise PidfileError(f"cannot write pidfile {self.path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(f"{pid}\n")
            os.chmod(tmp, PIDFILE_MODE)
            try:
                os.link(tmp, self.path)  # atomic create-if-absent: of two starters, one gets here
            except FileExistsError:
                self._check_stale(pid)
                os.replace(tmp, self.path)
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                self._check_stale(pid)  # a filesystem without hard links: check, then rename
                os.replace(tmp, self.path)
        except OSError as exc:
            raise PidfileError(f"cannot write pidfile {self.path}: {exc.strerror}") from None
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        self._pid = pid

    def _check_stale(self, pid: int) -> None:
        existing = self.read()
        if existing is not None and existing not in (pid, os.getpid()) and _is_alive(existing):
            raise PidfileError(f"pidfile {self.path} names process {existing}, which is still running")

    def remove(self) -> None:
        """Delete the file if it still holds the pid we wrote (or ours, if ``create`` was not called).

        Idempotent; never raises for a missing or foreign file.
        """
        owner = os.getpid() if self._pid is None else self._pid
        if self.read() != owner:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
