"""The control listener's sockets: non-blocking, served by the loop of whoever owns them.

Why not asyncio: the supervisor's loop is a plain poll (it forks; no event loop, no thread),
and in a single process the app's event loop is exactly what must not be relied on (a blocked loop
would silence ``/livez``). So ``ControlListener`` only says which descriptors it waits on
(``wanted``) and acts on the ready ones (``service``); the supervisor adds them to its own
poll (``wait_ready``), a single process runs them in ``ControlThread``.

Limits, since anyone who reaches the address can connect: ``MAX_CONNECTIONS`` at once (more are
accepted and closed at once, so the backlog never fills), ``TIMEOUT`` seconds per connection from
accept to the last byte out, a head of ``protocol.MAX_HEAD`` bytes. An endpoint that raises is
logged and answered 500; nothing here raises into the owner's loop.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time

from asgi_worker.control.protocol import (
    ControlRefusal,
    Endpoints,
    answer,
    error_answer,
    parse_request,
)

__all__ = ["MAX_CONNECTIONS", "TIMEOUT", "ControlListener", "ControlThread", "wait_ready"]

logger = logging.getLogger("asgi_worker.error")

# Probes and scrapers hold one connection each for milliseconds: 32 at once is many.
MAX_CONNECTIONS = 32
# Seconds a control connection may take, from accept to its last byte: a probe's own timeout is
# 1 s (Kubernetes' default), a scrape's 10 s (Prometheus'); a slow-loris client is cut at 5.
TIMEOUT = 5.0


def wait_ready(read: list[int], write: list[int], timeout: float | None) -> set[int]:
    """The descriptors among ``read`` and ``write`` that are ready within ``timeout`` seconds
    (None: however long it takes).

    ``poll``, not ``select``: a process with a thousand client connections hands out descriptors
    past 1023, which ``select`` cannot wait on.
    """
    poller = select.poll()
    for fd in read:
        poller.register(fd, select.POLLIN)
    for fd in write:
        poller.register(fd, select.POLLOUT)
    try:
        events = poller.poll(None if timeout is None else timeout * 1000)
    except InterruptedError:
        return set()
    return {fd for fd, _event in events}


class _Client:
    __slots__ = ("deadline", "inbox", "outbox", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.inbox = b""
        self.outbox: bytes | None = None  # set once the answer is known


class ControlListener:
    """One listening socket and its connections. Not thread-safe: one owner calls ``service``."""

    def __init__(self, sock: socket.socket, endpoints: Endpoints) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._endpoints = endpoints
        self._clients: dict[int, _Client] = {}

    def wanted(self) -> tuple[list[int], list[int]]:
        """The descriptors to wait on: ``(readable, writable)``."""
        read = [self.sock.fileno()]
        write: list[int] = []
        for fd, client in self._clients.items():
            (read if client.outbox is None else write).append(fd)
        return read, write

    def service(self, ready: set[int] | list[int], now: float | None = None) -> None:
        """Act on the descriptors the poll found ready (read or write), then expire slow clients."""
        now = time.monotonic() if now is None else now
        if self.sock.fileno() in ready:
            self._accept(now)
        for fd in [fd for fd in ready if fd in self._clients]:
            client = self._clients[fd]
            if client.outbox is None:
                self._read(client)
            else:
                self._write(client)
        for client in [c for c in self._clients.values() if c.deadline <= now]:
            self._drop(client)

    def close(self) -> None:
        """Close the listener and every connection (in a forked child: only this process's copies)."""
        for client in list(self._clients.values()):
            self._drop(client)
        self.sock.close()

    def _accept(self, now: float) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                sock, _address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: try again next time
                logger.warning("Control listener cannot accept: %s", exc)
                return
            if len(self._clients) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            self._clients[sock.fileno()] = _Client(sock, now + TIMEOUT)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        if not data:  # the client gave up before its head was whole
            self._drop(client)
            return
        client.inbox += data
        try:
            request = parse_request(client.inbox)
        except ControlRefusal as refusal:
            client.outbox = error_answer(refusal.status)
        else:
            if request is None:
                return
            try:
                client.outbox = answer(request, self._endpoints)
            except Exception:
                logger.exception("Control endpoint %s failed", request.path)
                client.outbox = error_answer(500)
        client.inbox = b""
        self._write(client)

    def _write(self, client: _Client) -> None:
        assert client.outbox is not None
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        client.outbox = client.outbox[sent:]
        if not client.outbox:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock.fileno(), None)
        client.sock.close()


class ControlThread:
    """Serves a ``ControlListener`` from a thread of its own (a single process's control listener)."""

    def __init__(self, listener: ControlListener) -> None:
        self.listener = listener
        self._stop = False
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="asgi-worker-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listener (waits for the thread, briefly)."""
        self._stop = True
        os.write(self._wake_write, b"x")
        self._thread.join(TIMEOUT)
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _run(self) -> None:
        listener = self.listener
        try:
            while not self._stop:
                read, write = listener.wanted()
                # Asleep until a client comes (or stop() wakes it); awake twice a second while one
                # is connected, to cut it off at its TIMEOUT.
                timeout = 0.5 if len(read) > 1 or write else None
                listener.service(wait_ready([*read, self._wake_read], write, timeout))
        finally:
            listener.close()
