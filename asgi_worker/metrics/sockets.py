"""What the kernel tells about a listening socket: how many connections wait in its accept queue.

Linux reports it for a TCP socket in LISTEN through ``TCP_INFO`` (the same numbers ``ss -lnt``
shows as Recv-Q and Send-Q): ``tcpi_unacked`` is the queue's length, ``tcpi_sacked`` its limit.
A queue that grows means every worker is too busy to accept: the first sign of overload, before
latency shows it. Elsewhere (another system, a UNIX socket) there is no such number: ``None``.
"""

from __future__ import annotations

import socket
import struct

from asgi_worker.metrics.families import Family

__all__ = ["accept_queue", "accept_queue_families"]

# struct tcp_info begins with eight one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_HEAD = struct.Struct("8x4x4x4x4xII")


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """``(connections waiting, queue limit)`` of a listening TCP socket, where the kernel says."""
    if _TCP_INFO is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    if len(raw) < _HEAD.size:
        return None
    waiting, limit = _HEAD.unpack_from(raw)
    return waiting, limit


def accept_queue_families(sockets: list[socket.socket], names: list[str]) -> list[Family]:
    """Gauges of each listening socket's accept queue (``names[i]`` labels ``sockets[i]``)."""
    depth = Family(
        "gauge",
        "asgi_server_accept_queue_connections",
        "Connections waiting in a listening socket's accept queue (TCP on Linux).",
        ("listener",),
    )
    limit = Family(
        "gauge",
        "asgi_server_accept_queue_limit",
        "The accept queue's length limit (the backlog).",
        ("listener",),
    )
    for sock, name in zip(sockets, names, strict=True):
        queue = accept_queue(sock) if sock.fileno() >= 0 else None
        if queue is not None:
            depth.add((name,), queue[0])
            limit.add((name,), queue[1])
    return [depth, limit]
