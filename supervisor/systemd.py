"""systemd's two process handshakes: readiness notification and socket activation.

Rules:
- Notification is best effort. systemd may be gone, the socket queue full, or ``NOTIFY_SOCKET`` meant
  for a process that exec'd us: a failed ``send`` is logged once at debug and ignored, never raised,
  and never blocks (the socket is non-blocking; sd_notify(3) gives no reply to wait for anyway).
- Only ``/path`` and abstract ``@name`` addresses are understood (sd_notify(3)); anything else (such as
  ``vsock:``) leaves the notifier disabled rather than guessing.
- One datagram per call, with newlines in free text replaced by spaces: a newline inside STATUS= would
  otherwise start a second assignment that systemd would obey.
- The environment is read once, then forgotten: forked workers must not notify or adopt sockets of
  their own (with NotifyAccess=main systemd would drop their messages, but a worker that execs a
  tool would hand the variables on). ``Notifier.forget_environment`` and ``listen_fds(unset=True)``
  remove them from ``os.environ``.
- ``listen_fds`` follows sd_listen_fds(3): the variables count only when LISTEN_PID is our pid; a pid
  mismatch or no variables means "not socket-activated" ([]). Numbers that do not parse, or fds that
  are not sockets, are an operator's mistake (an edited unit, a wrapper that closed fds): that is a
  one-line ``ConfigError`` (a ``ValueError``), because silently binding the default port instead
  would serve on the wrong socket.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from collections.abc import Mapping

from asgi_worker.errors import ConfigError

__all__ = ["LISTEN_FDS_START", "Notifier", "listen_fds"]

logger = logging.getLogger("asgi_worker.error")

LISTEN_FDS_START = 3
"""The first fd systemd passes (SD_LISTEN_FDS_START in sd-daemon.h)."""

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def _notify_address(value: str) -> bytes | None:
    """The sockaddr for NOTIFY_SOCKET, or None when it is unset or a kind we do not speak."""
    if value.startswith("/"):
        return os.fsencode(value)
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    return None


class Notifier:
    """Sends sd_notify(3) messages to the service manager named by ``NOTIFY_SOCKET``.

    Build it once in the supervisor, before forking, from ``environ`` (default ``os.environ``); then
    call ``forget_environment()``. Every method is safe to call when systemd is absent: with
    ``enabled`` False they do nothing. No method raises.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _notify_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._error_logged = False

    @property
    def enabled(self) -> bool:
        """True when NOTIFY_SOCKET names a path or an abstract socket."""
        return self._address is not None

    def send(self, *assignments: str) -> None:
        """Send ``assignments`` (``"READY=1"``, ...) as one datagram; never raises, never blocks."""
        if self._address is None or not assignments:
            return
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._error_logged:
                self._error_logged = True
                logger.debug("systemd notification failed (further failures not logged): %s", exc)

    def ready(self, status: str | None = None) -> None:
        """Tell systemd that startup (or a reload) is complete; with Type=notify this ends activation."""
        self.send("READY=1", *([] if status is None else [_status(status)]))

    def reloading(self) -> None:
        """Tell systemd a reload began; follow with ``ready()`` when it is done (systemd >= 253 wants
        MONOTONIC_USEC, the CLOCK_MONOTONIC time of the request, with RELOADING=1)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """Tell systemd a stop began, so ``systemctl status`` shows "deactivating" meanwhile."""
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        """Set the one-line status ``systemctl status`` shows; newlines become spaces."""
        self.send(_status(text))

    def watchdog(self) -> None:
        """Keep the watchdog (WatchdogSec=) fed; call every ``watchdog_interval()`` seconds."""
        self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """How often to call ``watchdog()``, in seconds (half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
        advises), or None when there is no watchdog for this process (unset, zero, unparsable, or
        WATCHDOG_PID naming another process)."""
        if self._watchdog_pid is not None and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            usec = int(self._watchdog_usec or "")
        except ValueError:
            return None
        return usec / 2_000_000 if usec > 0 else None

    def forget_environment(self) -> None:
        """Remove NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from ``os.environ`` (this object keeps
        what it read), so that forked workers and their children do not notify systemd."""
        for name in NOTIFY_VARIABLES:
            os.environ.pop(name, None)


def _status(text: str) -> str:
    return "STATUS=" + text.replace("\r", " ").replace("\n", " ")


def listen_fds(environ: Mapping[str, str] | None = None, unset: bool = True) -> list[socket.socket]:
    """The sockets systemd passed us (socket activation), as non-blocking socket objects, in fd order.

    Returns [] when the process was not socket-activated: no LISTEN_PID/LISTEN_FDS, or a LISTEN_PID
    that is not ``os.getpid()`` (the variables were meant for a parent). LISTEN_FDNAMES is ignored.
    With ``unset`` the three variables are removed from ``os.environ`` in every case, as
    sd_listen_fds(3) does, so that workers do not adopt them again.

    Raises ``ConfigError`` (a ``ValueError``) with a one-line message when LISTEN_PID or LISTEN_FDS do
    not parse, or when one of the announced fds is not an open socket.
    """
    env = os.environ if environ is None else environ
    pid_text, count_text = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    if unset:
        for name in LISTEN_VARIABLES:
            os.environ.pop(name, None)
    if pid_text is None or count_text is None:
        return []
    try:
        pid, count = int(pid_text), int(count_text)
    except ValueError:
        raise ConfigError(
            f"bad systemd socket activation variables: LISTEN_PID={pid_text!r} LISTEN_FDS={count_text!r}"
        ) from None
    if pid != os.getpid():
        return []
    if count < 0:
        raise ConfigError(f"bad systemd socket activation variables: LISTEN_FDS={count} is negative")
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + count)
    for fd in fds:  # check them all before wrapping any, so a failure leaves every fd as it was
        try:
            is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
        except OSError as exc:
            raise ConfigError(f"LISTEN_FDS={count} but fd {fd} is not open: {exc.strerror}") from None
        if not is_socket:
            raise ConfigError(f"LISTEN_FDS={count} but fd {fd} is not a socket")
    sockets = [socket.socket(fileno=fd) for fd in fds]  # family and type are read from the fd
    for sock in sockets:
        sock.setblocking(False)
    return sockets
