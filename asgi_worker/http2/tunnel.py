"""One HTTP/2 stream as a byte stream with ``asyncio.Transport``'s interface (RFC 8441 extended CONNECT).

A WebSocket over HTTP/2 is the same frames as over TCP, carried in the DATA of one stream. So the
WebSocket side keeps its one shell (``ws.connection``) and gets, instead of the socket's transport,
an ``Http2Tunnel``; the HTTP/2 connection keeps a ``TunnelStream`` among its streams, which counts
for idleness, GOAWAY and the blocked-window timeout as any stream does, and forwards the stream's
events to the tunnel.

Rules:
- Writing: ``write`` sends DATA as far as the peer's windows allow; the rest waits here, in order,
  and leaves on ``WindowOpened``. The protocol is paused (``pause_writing``) while more than the
  high-water mark waits, or while the connection's own transport is paused; resumed below the
  low-water mark. So one tunnel holds at most its high-water mark plus the message being written.
- Reading: DATA is handed to ``data_received`` and its flow-control credit returned only then
  (``session.consumed``). While the protocol has paused reading, DATA that still arrives (the peer
  may fill the window it has) is held and its credit withheld: the stream window bounds it.
- Ends: ``close`` sends END_STREAM after the data that waits; ``abort`` resets with CANCEL. The
  peer's END_STREAM is ``eof_received`` (a false answer closes our side too); the stream dropped by
  the connection (a reset either way, our END_STREAM, the connection lost) is ``connection_lost``.
- The handshake's answer is the stream's response head (``respond``): 200 accepts (RFC 8441 5).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from asgi_worker.flow import WRITE_HIGH_WATER, WRITE_LOW_WATER
from asgi_worker.http2.connection import Http2Connection, Http2Stream
from asgi_worker.http2.events import ErrorCode

if TYPE_CHECKING:
    from asgi_worker.context import ServedConnection

__all__ = ["Http2Tunnel", "TunnelStream", "open_tunnel"]

# Below this many bytes, the pieces of one ``writelines`` leave as one DATA frame.
_JOIN_BELOW = 16384


class TunnelStream(Http2Stream):
    """The stream as its connection sees it: no ``HttpCycle``; every event goes to the tunnel.

    ``Http2Connection`` calls ``release`` exactly when it drops a stream (reset by either side,
    forgotten after our END_STREAM, the connection lost): for a tunnel, the end of the byte stream.
    """

    __slots__ = ("tunnel",)

    def __init__(self, conn: Http2Connection, stream_id: int, tunnel: Http2Tunnel) -> None:
        super().__init__(conn, stream_id)
        self.tunnel = tunnel

    def received(self, data: bytes, flow_length: int) -> None:
        self.tunnel._received(data, flow_length)

    def ended(self) -> None:
        self.tunnel._ended()

    def window_opened(self) -> None:
        self.tunnel._send_waiting()

    def release(self) -> None:
        self.tunnel._dropped()


class Http2Tunnel(asyncio.Transport):
    """The transport of a protocol served over one HTTP/2 stream (``ws.connection.WebSocketStream``)."""

    def __init__(self, conn: Http2Connection, outer: asyncio.BaseTransport, stream_id: int) -> None:
        super().__init__()
        self._conn = conn
        self._outer = outer  # the connection's transport: peername, sockname, TLS
        self.stream_id = stream_id
        self.stream = TunnelStream(conn, stream_id, self)
        self._protocol: _Receiver | None = None
        self._waiting: deque[bytes | bytearray | memoryview] = deque()  # data the peer's window has not taken
        self._waiting_size = 0
        self._high, self._low = WRITE_HIGH_WATER, WRITE_LOW_WATER
        self._writing_paused = False  # we told the protocol to pause writing
        self._end_after = False  # close() while data waits: END_STREAM goes with its last byte
        self._reading = True
        self._held: list[bytes] = []  # DATA received while reading is paused
        self._withheld = 0  # flow-controlled bytes of it, credited once delivered
        self._eof_held = False  # the peer's END_STREAM, behind the held data
        self._delivery_due = False
        self._watching_connection = False  # a waiter sits in the connection's write_waiters
        self._closing = False  # close() or abort() called, or the peer ended and we followed
        self._lost = False  # connection_lost is scheduled or done

    # asyncio.BaseTransport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._outer.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """END_STREAM, after whatever still waits for the peer's window."""
        if self._closing or self._lost:
            return
        self._closing = True
        if self._waiting:
            self._end_after = True  # _send_waiting ends the stream with the last byte
            return
        conn = self._conn
        conn.session.send_data(self.stream_id, b"", end_stream=True)
        conn.forget(self.stream)  # -> release -> connection_lost
        conn.flush_soon()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, _Receiver), "a tunnel delivers through data_received"
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol  # type: ignore[return-value]

    # asyncio.ReadTransport

    def is_reading(self) -> bool:
        return self._reading and not self.is_closing()

    def pause_reading(self) -> None:
        """Hold what arrives and withhold its credit: the peer stops once its window is spent."""
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading:
            return
        self._reading = True
        if (self._held or self._eof_held or self._withheld) and not self._delivery_due:
            self._delivery_due = True  # from the loop, as asyncio's transports do, not inside the caller
            self._conn.loop.call_soon(self._deliver_held)

    # asyncio.WriteTransport

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = WRITE_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_writing()

    def get_write_buffer_size(self) -> int:
        return self._waiting_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._closing or self._lost:
            return
        if self._waiting:  # behind what already waits for the window
            self._waiting.append(data)
            self._waiting_size += len(data)
        else:
            conn = self._conn
            sent = conn.session.send_data(self.stream_id, data)  # type: ignore[arg-type]
            if sent < len(data):
                self._waiting.append(memoryview(data)[sent:])
                self._waiting_size += len(data) - sent
                conn.blocked.add(self.stream)
                conn.update_deadline()
            conn.flush_soon()
        self._check_writing()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        pieces = list(list_of_data)
        if sum(len(piece) for piece in pieces) < _JOIN_BELOW:
            self.write(b"".join(pieces))
        else:
            for piece in pieces:
                self.write(piece)

    def can_write_eof(self) -> bool:
        return False

    def abort(self) -> None:
        """RST_STREAM CANCEL: the stream is dropped now, with whatever waits."""
        if self._lost:
            return
        self._closing = True
        self._conn.reset_stream(self.stream, ErrorCode.CANCEL)  # -> release -> connection_lost

    # The stream's response head (the handshake's answer)

    def respond(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """HEADERS with ``status``, ``headers`` and the server's default ones (``server``, ``date``,
        ``--header``); raises ``AppProtocolError`` for a bad header before anything is sent. The
        stream stays open: DATA (``write``) and the end (``close``) follow."""
        if self._closing or self._lost:
            return
        conn = self._conn
        fields = list(headers)
        server = date = False
        for name, _ in fields:
            lowered = name.lower()
            server = server or lowered == b"server"
            date = date or lowered == b"date"
        conn.session.send_head(self.stream_id, status, fields + conn.defaults.pairs(server, date))
        conn.flush_soon()

    # Called through the TunnelStream by the connection

    def _received(self, data: bytes, flow_length: int) -> None:
        if self._lost:
            return
        if not self._reading or self._held:
            self._held.append(data)
            self._withheld += flow_length
            return
        protocol = self._protocol
        assert protocol is not None
        protocol.data_received(data)
        if self._reading:
            self._credit(flow_length)
        else:  # paused by this very delivery: the credit waits for resume_reading
            self._withheld += flow_length

    def _ended(self) -> None:
        if self._lost:
            return
        if not self._reading or self._held:
            self._eof_held = True
            return
        self._eof()

    def _send_waiting(self) -> None:
        """The peer opened a window: send what waits, in order, as far as it goes."""
        conn = self._conn
        waiting = self._waiting
        session = conn.session
        while waiting:
            data = waiting[0]
            last = self._end_after and len(waiting) == 1
            sent = session.send_data(self.stream_id, data, end_stream=last)  # type: ignore[arg-type]
            self._waiting_size -= sent
            if sent < len(data):
                waiting[0] = memoryview(data)[sent:]
                break
            waiting.popleft()
        conn.flush_soon()
        if not waiting:
            conn.blocked.discard(self.stream)
            if self._end_after:  # END_STREAM went with the last byte
                conn.forget(self.stream)
                return
        self._check_writing()

    def _dropped(self) -> None:
        """The connection no longer has this stream: the protocol hears ``connection_lost`` (once)."""
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._waiting.clear()
        self._waiting_size = 0
        self._held.clear()
        self._conn.blocked.discard(self.stream)
        if self._protocol is not None:
            self._conn.loop.call_soon(self._protocol.connection_lost, None)

    # Inside

    def _credit(self, count: int) -> None:
        """Let the peer send ``count`` more bytes on this stream (and the connection)."""
        if count:
            conn = self._conn
            conn.session.consumed(self.stream_id, count)
            conn.flush_soon()

    def _deliver_held(self) -> None:
        self._delivery_due = False
        if self._lost:
            return
        protocol = self._protocol
        assert protocol is not None
        held = self._held
        while held and self._reading:
            protocol.data_received(held.pop(0))
            if self._lost:
                return
        if held or not self._reading:
            return  # paused again: the rest (and its credit) waits for the next resume_reading
        withheld, self._withheld = self._withheld, 0
        self._credit(withheld)
        if self._eof_held:
            self._eof_held = False
            self._eof()

    def _eof(self) -> None:
        protocol = self._protocol
        assert protocol is not None
        if not protocol.eof_received():
            self.close()

    def _check_writing(self) -> None:
        """Pause or resume the protocol's writing: our waiting data, and the connection's transport."""
        protocol = self._protocol
        if protocol is None or self._lost:
            return
        conn = self._conn
        if not self._writing_paused:
            if self._waiting_size > self._high or conn.write_paused:
                self._writing_paused = True
                protocol.pause_writing()
        elif self._waiting_size <= self._low and not conn.write_paused:
            self._writing_paused = False
            protocol.resume_writing()
        if conn.write_paused and not self._watching_connection:
            self._watching_connection = True
            waiter: asyncio.Future[None] = conn.loop.create_future()
            waiter.add_done_callback(self._connection_writable)
            conn.write_waiters.append(waiter)

    def _connection_writable(self, _: asyncio.Future[None]) -> None:
        """The connection's transport drained (or the connection is gone): look again."""
        self._watching_connection = False
        self._check_writing()


@runtime_checkable
class _Receiver(Protocol):
    """What a tunnel needs of its protocol: ``asyncio.Protocol``'s reading side (a
    ``BufferedProtocol`` qualifies by also having ``data_received``), and the write flow."""

    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool | None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...


def open_tunnel(connection: ServedConnection, outer: asyncio.BaseTransport, stream_id: int) -> Http2Tunnel:
    """A tunnel over stream ``stream_id`` of ``connection`` (an ``Http2Connection``: ``context``
    cannot name that type), registered among its streams."""
    assert isinstance(connection, Http2Connection)
    tunnel = Http2Tunnel(connection, outer, stream_id)
    connection.streams[stream_id] = tunnel.stream
    return tunnel
