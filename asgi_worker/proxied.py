"""Listening with the PROXY protocol: each trusted peer's header read exactly, then HTTP (or TLS).

Why our own accept loop instead of ``loop.create_server``: the header comes before everything else
on the connection, TLS included, and asyncio starts a TLS handshake on the first bytes it reads.
So a connection is accepted here, its header is read to its last byte and no further (bytes are
peeked, and only those known to be the header's are consumed), and then the socket is handed to
asyncio with ``connect_accepted_socket`` (and the TLS context, if any): the protocol it starts sees
the connection as if the client had connected directly, with the header's address as its peer.

Rules (HAProxy's proxy-protocol.txt; gunicorn's setting names):
- Only peers in ``--proxy-allow-from`` may send a header, and from them one is required: a peer
  that may not is served as a plain connection (a header it sends is then a bad request line, 400).
  A trusted peer whose header is malformed, or that says nothing within the head timeout, is
  closed without an answer: it is a proxy, not a client to explain things to.
- ``PROXY`` with addresses: the source is the client (``scope["client"]``, the access log). v2
  ``LOCAL`` (the proxy's own health check) and v1 ``UNKNOWN`` keep the peer's own address.
- At most ``MAX_ADMITTING`` connections may be between accept and their header at once; more are
  closed at once, so connections that never send a header cannot pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from asgi_worker.errors import MalformedRequest
from asgi_worker.http.proxy import ProxyTrust
from asgi_worker.http.proxy_protocol import MAX_V1_LENGTH, MAX_V2_TLV_BYTES, parse_proxy_header

__all__ = ["MAX_ADMITTING", "ProxiedListener"]

logger = logging.getLogger("asgi_worker.error")

# Connections accepted and still waiting for their header. A proxy opens connections as clients
# come and sends each header at once; a backlog of this many silent ones is an attack or a
# misconfiguration, and closing the newest keeps the worker serving the rest.
MAX_ADMITTING = 256

# The most a header can take: v2's 16 fixed bytes, the largest address block (two UNIX paths of 108
# bytes each) and the TLVs we allow; v1 is shorter.
_MAX_HEADER = 16 + 216 + MAX_V2_TLV_BYTES
assert _MAX_HEADER > MAX_V1_LENGTH

ClientAddress = tuple[str, int]


class ProxiedListener:
    """Serves one listening socket whose trusted peers speak the PROXY protocol first.

    ``factory(client)`` makes the protocol of one connection; ``client`` is the header's source
    address, or None to keep the socket's own peer. Has the shape of an ``asyncio.Server`` that the
    server's shutdown needs: ``close()`` and ``wait_closed()``.
    """

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[ClientAddress | None], asyncio.Protocol],
        accept: str,
        trust: ProxyTrust,
        header_timeout: float,
        tls: ssl.SSLContext | None,
        tls_timeout: float | None,
    ) -> None:
        self.sockets = [sock]
        self._sock = sock
        self._factory = factory
        self._accept = accept
        self._trust = trust
        self._header_timeout = header_timeout or None
        self._tls = tls
        self._tls_timeout = tls_timeout
        self._loop = asyncio.get_running_loop()
        self._admitting: dict[asyncio.Task[None], socket.socket] = {}  # before their header
        self._closed = False
        # Accepted in a reader callback rather than by awaiting sock_accept: a task cancelled at
        # the stop would drop a socket it had just accepted, unclosed.
        self._loop.add_reader(sock.fileno(), self._accept_ready)

    def close(self) -> None:
        """Stop accepting; connections still sending their header are dropped."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        for task in list(self._admitting):
            task.cancel()  # its socket is closed by _forget, even if it never ran
        self._sock.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._admitting, return_exceptions=True)

    def _accept_ready(self) -> None:
        for _ in range(MAX_ADMITTING):  # what is queued now, bounded: other callbacks get their turn
            try:
                conn, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the next wake-up may do better
                logger.warning("accept failed: %s", exc)
                return
            if len(self._admitting) >= MAX_ADMITTING:
                conn.close()
                continue
            task = self._loop.create_task(self._admit(conn, address))
            self._admitting[task] = conn
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        conn = self._admitting.pop(task, None)
        if conn is not None and task.cancelled():  # stopped before the hand-over
            conn.close()

    async def _admit(self, conn: socket.socket, address: Any) -> None:
        conn.setblocking(False)
        peer = address[0] if isinstance(address, tuple) else None
        client: ClientAddress | None = None
        if self._trust.trusts(peer if peer is not None else str(conn.getsockname())):
            try:
                client = await asyncio.wait_for(self._read_header(conn), self._header_timeout)
            except (MalformedRequest, OSError, asyncio.TimeoutError, ConnectionError) as exc:
                logger.debug(
                    "PROXY header refused from %s: %s", peer, getattr(exc, "detail", exc) or "timeout"
                )
                conn.close()
                return
            except asyncio.CancelledError:
                conn.close()
                raise
        try:
            await self._loop.connect_accepted_socket(
                lambda: self._factory(client),
                sock=conn,
                ssl=self._tls,
                ssl_handshake_timeout=self._tls_timeout if self._tls is not None else None,
            )
        except (OSError, ssl.SSLError) as exc:
            logger.debug("connection from %s lost before it was served: %s", peer, exc)
            with contextlib.suppress(OSError):
                conn.close()

    async def _read_header(self, conn: socket.socket) -> ClientAddress | None:
        """Consume exactly the header; the client address it gives, or None (LOCAL, UNKNOWN).

        Bytes are peeked; while the header is unfinished, every byte seen so far is one of its own,
        so those are consumed and the next wait is for new bytes (no busy loop); once it is whole,
        only the rest of it is consumed, and what follows stays for HTTP or TLS.
        """
        taken = b""
        while True:
            await self._readable(conn)
            peeked = conn.recv(_MAX_HEADER - len(taken), socket.MSG_PEEK)
            if not peeked:
                raise ConnectionError("closed before its PROXY header")
            header = parse_proxy_header(taken + peeked, self._accept)
            if header is None:
                taken += conn.recv(len(peeked))
                continue
            rest = header.length - len(taken)
            while rest:
                chunk = conn.recv(rest)  # already received: peeked above
                if not chunk:
                    raise ConnectionError("closed inside its PROXY header")
                rest -= len(chunk)
            if header.command == "PROXY" and header.source is not None:
                return header.source
            return None

    async def _readable(self, conn: socket.socket) -> None:
        waiter = self._loop.create_future()
        fd = conn.fileno()

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        self._loop.add_reader(fd, ready)
        try:
            await waiter
        finally:
            self._loop.remove_reader(fd)
