"""Listening sockets: bind TCP or a UNIX socket, or adopt an inherited descriptor.

Sockets are created here, not by ``loop.create_server``, so that a supervisor can bind once before
forking and every worker serves the same sockets. Binding failures become ``StartupError`` with one
readable line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Sequence
from typing import Protocol

from asgi_worker.errors import ConfigError, StartupError

__all__ = [
    "BindSettings",
    "bind_address",
    "bind_tcp",
    "bind_unix",
    "check_bind_address",
    "from_fd",
    "open_listeners",
    "socket_url",
]


def bind_tcp(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host:port``. ``host`` is an IPv4 or IPv6 address or a name.

    A name is resolved once, here, and the first address it gives is bound (``localhost`` is
    usually 127.0.0.1). ``::`` and other IPv6 addresses bind IPv6 only (``IPV6_V6ONLY``), so that
    ``--host ::`` next to ``--host 0.0.0.0`` behaves the same on every kernel setting.
    """
    address = host.strip("[]")
    try:
        family, _type, _proto, _name, sockaddr = socket.getaddrinfo(
            address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StartupError(f"could not bind to {host}:{port}: cannot resolve {host!r}: {reason}") from exc
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise StartupError(f"could not bind to {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def bind_unix(path: str, backlog: int, mode: int = 0o666) -> socket.socket:
    """A listening UNIX socket at ``path`` with permissions ``mode``.

    A stale socket file left by a dead server is replaced; any other file at ``path`` is not
    touched (binding then fails with one line), so a typo cannot delete somebody's data.
    """
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise StartupError(f"could not bind to unix socket {path}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def from_fd(fd: int) -> socket.socket:
    """Adopt an inherited listening socket (family and type are read from the descriptor)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise StartupError(f"file descriptor {fd} is not a usable socket: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def socket_url(sock: socket.socket, scheme: str) -> str:
    """How the "running on" log line names a socket, with the real port when 0 was asked for."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix socket {address}"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{address[0]}]:{address[1]}"
    return f"{scheme}://{address[0]}:{address[1]}"


class BindSettings(Protocol):
    """The settings ``open_listeners`` reads (a ``Config`` has them)."""

    host: str
    port: int
    uds: str | None
    uds_mode: int
    fd: int | None
    backlog: int


def open_listeners(config: BindSettings, binds: Sequence[str] = ()) -> list[socket.socket]:
    """Bind what the settings ask for, once: every ``binds`` entry (the supervisor's ``--bind``),
    else ``--fd``, ``--uds`` or ``--host``/``--port``. Raises ``StartupError``, or ``ConfigError``
    for a malformed bind address."""
    backlog = config.backlog
    if not binds:
        if config.fd is not None:
            return [from_fd(config.fd)]
        if config.uds is not None:
            return [bind_unix(config.uds, backlog, config.uds_mode)]
        return [bind_tcp(config.host, config.port, backlog)]
    return [bind_address(bind, backlog, config.uds_mode) for bind in binds]


_BIND_FORMS = "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N"


def check_bind_address(address: str, name: str = "--bind") -> None:
    """Raise ``ConfigError`` unless ``address`` has one of the forms ``bind_address`` takes."""
    if address.startswith(("unix:", "fd://")):
        if len(address) > 5 and (address[:5] == "unix:" or address[5:].isdigit()):
            return
    elif address.rpartition(":")[2].isdigit():
        return
    raise ConfigError(f"{name} {address!r} must be {_BIND_FORMS}")


def bind_address(address: str, backlog: int, uds_mode: int = 0o666) -> socket.socket:
    """Bind one ``--bind``-style address: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N."""
    check_bind_address(address)
    if address.startswith("unix:"):
        return bind_unix(address[5:], backlog, uds_mode)
    if address.startswith("fd://"):
        return from_fd(int(address[5:]))
    host, _, port = address.rpartition(":")
    return bind_tcp(host or "0.0.0.0", int(port), backlog)
