"""The asyncio shell of one WebSocket: bytes in -> websockets' frames -> session; session -> bytes out.

Rules:
- The HTTP connection hands over its transport (``set_protocol``) after a handshake request; from
  then on every byte goes to the websockets library's sans-I/O ``Protocol`` (``wire.ServerFrames``,
  which the event loop reads into directly: a ``BufferedProtocol``; or ``wire.StockFrames``, after
  one warning, if the installed websockets changed what wire.py relies on). It answers pings and close
  frames itself; after every call we write ``data_to_send()`` (an empty chunk there means "close
  the TCP connection", which the server side does first, RFC 6455 7.1.1). We close by sending our
  FIN and reading, dropped, until the client's, for up to ``LINGER_SECONDS`` (as HTTP refusals
  do): a client still sending when the library failed the connection (the rest of a message over
  ``--ws-max-size``, say) then reads our close frame instead of a reset. Where there is no
  half-close (TLS, an HTTP/2 stream) the transport closes at once.
- Frames are reassembled here into messages for the session; the library bounds their size
  (``--ws-max-size``: 1009) and checks the framing (1002). Text that is not UTF-8 is 1007.
- Timers are deadlines swept by the server's tick, like HTTP keep-alive: the next ping, the pong it
  waits for (``--ws-ping-timeout``: 1011), and the close handshake (``CLOSE_TIMEOUT``: a peer that
  never answers our close is cut off). No timer handle per connection.
- Backpressure both ways: reading pauses while the session's queue is full; ``send`` waits while
  the transport is above its write high-water mark.
- Graceful stop: an open WebSocket gets close 1012 and the app ``websocket.disconnect`` 1012; one
  still in its handshake gets 503.
- Over HTTP/2 (RFC 8441, ``WebSocketStream``) all of the above holds on an ``http2.tunnel``
  transport; only the handshake's answers differ: the stream's response head instead of bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any, cast

from websockets.extensions import Extension
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from asgi_worker.context import start_in_fresh_context
from asgi_worker.flow import WRITE_HIGH_WATER, WRITE_LOW_WATER, WriteFlow, writelines_of
from asgi_worker.http.connection import LINGER_SECONDS
from asgi_worker.http.response import (
    CHUNKED,
    CHUNKED_END,
    encode_chunk,
    encode_error_response,
    plan_response,
    reason_phrase,
)
from asgi_worker.http.scope import build_websocket_scope
from asgi_worker.log import escape_controls, peer_text
from asgi_worker.ws.handshake import Handshake, StreamHandshake, protocol_logger
from asgi_worker.ws.session import WsSession
from asgi_worker.ws.wire import LARGE_PAYLOAD, ReadMemory, StockFrames, frames_type

if TYPE_CHECKING:
    from asgi_worker.context import ServedConnection, ServerContext
    from asgi_worker.http.events import RequestHead
    from asgi_worker.http.scope import ConnectionFacts
    from asgi_worker.http2.events import StreamOpened
    from asgi_worker.http2.tunnel import Http2Tunnel

__all__ = ["CLOSE_TIMEOUT", "WebSocketConnection", "WebSocketStream", "WsSettings"]

logger = logging.getLogger("asgi_worker.error")

# Seconds a peer gets to answer our close frame before the TCP connection is aborted: the
# websockets library's own default close_timeout (uvicorn inherits it).
CLOSE_TIMEOUT = 10.0
# Bytes a client may send before its handshake is answered (it must wait for the 101, RFC 6455
# 4.1); past this, reading pauses until the app accepts.
_EARLY_LIMIT = 65536

_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
_OPEN, _CLOSED = State.OPEN, State.CLOSED


class WsSettings:
    """The ``--ws-*`` settings of one server, read by every WebSocket connection."""

    __slots__ = ("deflate", "max_queue", "max_size", "memory", "ping_interval", "ping_timeout")

    def __init__(
        self, max_size: int, max_queue: int, ping_interval: float, ping_timeout: float, deflate: bool
    ) -> None:
        self.max_size = max_size
        self.max_queue = max_queue
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.deflate = deflate
        self.memory = ReadMemory()  # one per server: one event loop

    def take_over(
        self,
        ctx: ServerContext,
        transport: asyncio.Transport,
        head: RequestHead,
        facts: ConnectionFacts,
        rest: bytes,
    ) -> None:
        """Switch ``transport`` from HTTP to a new ``WebSocketConnection`` for ``head``."""
        connection = WebSocketConnection(ctx, self, transport)
        transport.set_protocol(connection)
        connection.start(head, facts, rest)

    def take_over_stream(
        self,
        ctx: ServerContext,
        connection: ServedConnection,
        transport: asyncio.BaseTransport,
        opened: StreamOpened,
        facts: ConnectionFacts,
    ) -> None:
        """Serve an HTTP/2 extended CONNECT (RFC 8441) as a new ``WebSocketStream``."""
        from asgi_worker.http2.tunnel import open_tunnel  # imports h2: only HTTP/2 connections get here

        tunnel = open_tunnel(connection, transport, opened.stream_id)
        websocket = WebSocketStream(ctx, self, tunnel)
        tunnel.set_protocol(websocket)
        assert opened.protocol is not None
        websocket.start_stream(opened.head, opened.protocol, facts)


class WebSocketConnection(WriteFlow, asyncio.BufferedProtocol):
    """One upgraded connection. Registered in ``ctx.connections`` like an HTTP one."""

    def __init__(self, ctx: ServerContext, settings: WsSettings, transport: asyncio.Transport) -> None:
        self._ctx = ctx
        self._settings = settings
        self._transport = transport
        self._writelines = writelines_of(transport)
        WriteFlow.__init__(self)
        self.deadline = 0.0
        self._next_ping = self._pong_due = self._close_due = 0.0
        self._handshake: Handshake | None = None
        self._protocol: StockFrames | None = None  # set once the app accepts
        self._session: WsSession | None = None
        self._early = b""
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._denial_chunked = False
        self._flush_scheduled = False
        self._unflushed = 0  # payload bytes queued in the library since the last write
        self._reading_paused = False
        self._gone = False
        self._told = False  # the session has heard how the WebSocket ended
        self._counted = False  # accepted, so counted in ``counts.ws_open``
        self._label = ""

    def start(self, head: RequestHead, facts: ConnectionFacts, rest: bytes) -> None:
        """Check the handshake request; answer a bad one, or start the app on a good one."""
        ctx = self._ctx
        ctx.connections.add(self)
        self._transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        handshake = self._handshake = Handshake(head, self._settings.deflate)
        scope = build_websocket_scope(head, facts, handshake.offered_subprotocols)
        self._label = f'{peer_text(scope.get("client"))} - "WebSocket {scope["raw_path"].decode("latin-1")}"'
        if not handshake.accepted:  # a bad handshake: one line, no traceback; the app never runs
            status = handshake.response.status_code
            logger.info("%s %d %s", self._label, status, escape_controls(handshake.reason))
            self._transport.write(handshake.refusal(ctx.defaults))
            self._transport.close()
            return
        self._run_app(scope)
        self._early = rest
        self._set_reading(len(rest) <= _EARLY_LIMIT)

    def _run_app(self, scope: dict[str, Any]) -> None:
        ctx = self._ctx
        session = self._session = WsSession(self, scope, self._settings.max_queue)
        coro = session.run_asgi(ctx.app, ctx)
        task = session.task = (
            start_in_fresh_context(ctx.loop, coro) if ctx.reset_contextvars else ctx.loop.create_task(coro)
        )
        ctx.tasks.add(task)

    # asyncio.BufferedProtocol

    def get_buffer(self, sizehint: int) -> memoryview:
        protocol = self._protocol
        return self._settings.memory.scratch if protocol is None else protocol.receive_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        protocol = self._protocol
        if protocol is None:
            self._keep_early(self._settings.memory.scratch[:nbytes])
            return
        protocol.received(nbytes)
        self._process()

    def data_received(self, data: bytes) -> None:
        """Bytes handed over rather than read in place (the ones that came with the handshake).

        Also what keeps uvloop from holding the HTTP connection: its transport caches the
        protocol's ``data_received`` and keeps the old one if the new protocol has none.
        """
        protocol = self._protocol
        if protocol is None:
            self._keep_early(data)
            return
        protocol.receive_data(data)
        self._process()

    def _keep_early(self, data: bytes | memoryview) -> None:
        """Still in the handshake: keep the bytes for after the 101."""
        self._early += data
        if len(self._early) > _EARLY_LIMIT:
            self._set_reading(False)

    def eof_received(self) -> bool | None:
        if self._protocol is not None:
            self._protocol.receive_eof()
            self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._ctx.connection_closed(self)
        if self._counted:
            self._counted = False
            self._ctx.counts.ws_open -= 1
        if self._session is not None and not self._told:
            self._told = True
            self._session.dropped()
        self._release_writers()

    # Incoming frames

    def _process(self) -> None:
        protocol = self._protocol
        assert protocol is not None and self._session is not None
        for event in protocol.events_received():
            frame = cast(Frame, event)  # with the state born OPEN, the library yields frames only
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if frame.fin:
                    if not self._deliver(opcode is _TEXT, bytes(frame.data)):
                        break  # failed (1007): frames parsed after the bad one are not processed
                else:
                    self._fragment_text = opcode is _TEXT
                    self._fragments = [bytes(frame.data)]
            elif opcode is _CONT:
                self._fragments.append(bytes(frame.data))
                if frame.fin:
                    data, self._fragments = b"".join(self._fragments), []
                    if not self._deliver(self._fragment_text, data):
                        break
            elif opcode is _PONG:
                self._pong_due = 0.0
                self._update_deadline()
        self._flush()
        if not self._told:
            close = protocol.close_rcvd or (protocol.close_sent if protocol.state is not _OPEN else None)
            if close is not None:  # the client closed, or the library failed the connection (1002, 1009)
                self._told = True
                self._session.disconnected(close.code, close.reason)
        if self._session.queue_full:
            self._set_reading(False)

    def _deliver(self, text: bool, data: bytes) -> bool:
        """Hand a complete message to the session; False when it failed the connection instead."""
        if text:
            try:
                message: str | bytes = data.decode("utf-8")
            except UnicodeDecodeError:
                assert self._protocol is not None
                self._protocol.fail(1007, "invalid UTF-8 in text message")
                return False
        else:
            message = data
        assert self._session is not None
        self._session.feed_message(message)
        return True

    def _flush(self) -> None:
        assert self._protocol is not None
        self._flush_scheduled = False
        unflushed, self._unflushed = self._unflushed, 0
        chunks = self._protocol.data_to_send()
        if not chunks:
            return
        eof = not chunks[-1]  # the library's "send EOF": the close handshake is done (or failed)
        if len(chunks) == 1 or unflushed < LARGE_PAYLOAD:
            data = b"".join(chunks)  # small messages: one contiguous write
            if data:
                self._transport.write(data)
        else:
            self._writelines(chunks)  # large payloads go out as the app's own objects
        if eof:
            self._end_output()

    def _end_output(self) -> None:
        """The library has sent all it will (module docstring: the FIN, then reading until the
        client's; ``eof_received`` or the deadline ends it)."""
        transport = self._transport
        if self._gone or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # asyncio's shutdown() on a socket the peer has reset already
            transport.close()
            return
        self._set_reading(True)  # a full queue paused reading; what comes now is dropped
        self._close_due = self._ctx.loop.time() + LINGER_SECONDS
        self._update_deadline()

    # WsHost: called by the session.

    def accept(self, subprotocol: str | None, headers: Any) -> None:
        """Write the 101 and start speaking WebSocket frames."""
        if self._gone:
            return
        extensions = self._answer_accept(subprotocol, headers)
        counts = self._ctx.counts
        counts.ws_total += 1
        counts.ws_open += 1
        self._counted = True
        settings = self._settings
        # ServerFrames, or the stock protocol if the installed websockets changed (one warning).
        frames = frames_type()
        protocol = self._protocol = frames(settings.max_size, protocol_logger, settings.memory)
        protocol.extensions = extensions
        logger.info("%s [accepted]", self._label)
        if settings.ping_interval:
            self._next_ping = self._ctx.loop.time() + settings.ping_interval
            self._update_deadline()
        early, self._early = self._early, b""
        self._set_reading(True)
        if early:
            self.data_received(early)

    def _answer_accept(self, subprotocol: str | None, headers: Any) -> list[Extension]:
        """Write the handshake's success (the 101); the negotiated extensions."""
        handshake = self._handshake
        assert handshake is not None
        self._transport.write(handshake.switching_head(subprotocol, headers, self._ctx.defaults))
        self._handshake = None
        return handshake.extensions

    def refuse(self, status: int) -> None:
        """Answer the handshake with a plain error response (403 for close-before-accept, 500)."""
        if not self._gone:
            logger.info("%s %d", self._label, status)
            self._answer_error(status)

    def _answer_error(self, status: int) -> None:
        """A plain-text error response instead of the handshake's success, then the end."""
        self._transport.write(encode_error_response(status, self._ctx.defaults))
        self._transport.close()

    def deny(self, status: int, headers: Any, body: bytes, more_body: bool) -> None:
        """Write part of a denial response (``websocket.http.response.*``); close after the last part."""
        if self._gone:
            return
        if self._handshake is not None:  # the first body message carries the head
            plan = plan_response(
                status, headers, self._ctx.defaults, None if more_body else len(body), False, False, False
            )
            self._handshake = None
            self._denial_chunked = plan.framing == CHUNKED
            self._transport.write(plan.head)
        if self._denial_chunked:
            body = (encode_chunk(body) if body else b"") + (b"" if more_body else CHUNKED_END)
        if body:
            self._transport.write(body)
        if not more_body:
            self._transport.close()

    def send_data(self, data: str | bytes) -> None:
        """Send one message (text or binary) now."""
        protocol = self._protocol
        if protocol is None or protocol.state is not _OPEN:
            return
        text = type(data) is str
        payload = cast(str, data).encode("utf-8") if text else cast(bytes, data)
        protocol.send_message(text, payload)
        # Messages sent in one loop iteration leave in one write (an echo of a burst is one
        # syscall, not fifty); past the high-water mark we write at once, so that
        # ``write_paused`` keeps telling the truth to an app that sends without ever waiting.
        self._unflushed += len(payload)
        if self._unflushed >= WRITE_HIGH_WATER:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._ctx.loop.call_soon(self._flush_if_open)

    def _flush_if_open(self) -> None:
        if self._flush_scheduled and self._protocol is not None and not self._gone:
            self._flush()

    def close(self, code: int, reason: str) -> None:
        """Start the close handshake (the app's ``websocket.close`` or its end)."""
        protocol = self._protocol
        if protocol is None:
            self._transport.close()
            return
        if protocol.state is _OPEN:
            protocol.send_close(code, reason)
            self._flush()
        due = self._ctx.loop.time() + CLOSE_TIMEOUT
        if not self._close_due or due < self._close_due:  # never later than a linger already set
            self._close_due = due
        self._update_deadline()

    def queue_drained(self) -> None:
        """The app took a message from a full queue: read again."""
        self._set_reading(True)

    def _set_reading(self, on: bool) -> None:
        if self._gone or on != self._reading_paused:
            return
        self._reading_paused = not on
        if on:
            self._transport.resume_reading()
        else:
            self._transport.pause_reading()

    # Deadlines (swept by the server's tick) and shutdown

    def _update_deadline(self) -> None:
        due = [t for t in (self._next_ping, self._pong_due, self._close_due) if t]
        self.deadline = min(due) if due else 0.0

    def deadline_passed(self) -> None:
        """Called by the server's sweep when ``deadline`` is in the past."""
        now = self._ctx.loop.time()
        protocol = self._protocol
        if self._close_due and now >= self._close_due:
            self._transport.abort()  # the peer never finished the close handshake
            self.deadline = 0.0
            return
        if protocol is not None and self._pong_due and now >= self._pong_due:
            self._pong_due = self._next_ping = 0.0
            protocol.fail(1011, "keepalive ping timeout")
            self._flush()
            self._process()
            self._close_due = now + CLOSE_TIMEOUT
        elif protocol is not None and self._next_ping and now >= self._next_ping:
            if protocol.state is _OPEN:
                protocol.send_ping(os.urandom(4))
                self._flush()
                settings = self._settings
                self._next_ping = now + settings.ping_interval
                if settings.ping_timeout and not self._pong_due:
                    self._pong_due = now + settings.ping_timeout
            else:
                self._next_ping = 0.0
        self._update_deadline()

    def shutdown(self) -> None:
        """Graceful stop: close 1012 (the app hears 1012 too); 503 if still in the handshake."""
        session = self._session
        if session is not None and not self._told:
            self._told = True
            session.disconnected(1012, "")
        if self._protocol is None:
            if not self._gone:
                self._answer_error(503)
            return
        self.close(1012, "")

    def abort(self) -> None:
        """Forced stop: drop the connection now."""
        self._transport.abort()


class WebSocketStream(WebSocketConnection):
    """A WebSocket over one HTTP/2 stream (RFC 8441): the same frames, limits and deadlines over an
    ``http2.tunnel.Http2Tunnel``; the handshake is answered by the stream's response head (200, or
    the refusal HTTP/1.1 would give) instead of HTTP/1.1 bytes. The HTTP/2 connection stays one
    connection of its own: a WebSocket's end is its stream's (END_STREAM, or RST_STREAM)."""

    def __init__(self, ctx: ServerContext, settings: WsSettings, tunnel: Http2Tunnel) -> None:
        super().__init__(ctx, settings, tunnel)
        self._tunnel = tunnel
        self._stream_handshake: StreamHandshake | None = None

    def start_stream(self, head: RequestHead, protocol: bytes, facts: ConnectionFacts) -> None:
        """Check the extended CONNECT; answer a bad one, or start the app on a good one."""
        self._ctx.connections.add(self)
        tunnel = self._tunnel
        tunnel.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        handshake = self._stream_handshake = StreamHandshake(head, protocol, self._settings.deflate)
        scope = build_websocket_scope(head, facts, handshake.offered_subprotocols)
        scope["extensions"].pop("http.response.trailers", None)  # the HTTP/2 streams' offer, not ours
        self._label = f'{peer_text(scope.get("client"))} - "WebSocket {scope["raw_path"].decode("latin-1")}"'
        if not handshake.accepted:  # a bad handshake: one line, no traceback; the app never runs
            status, fields, body = handshake.refusal()
            logger.info("%s %d %s", self._label, status, escape_controls(handshake.reason))
            tunnel.respond(status, fields)
            tunnel.write(body)
            tunnel.close()
            return
        self._run_app(scope)

    def _answer_accept(self, subprotocol: str | None, headers: Any) -> list[Extension]:
        handshake = self._stream_handshake
        assert handshake is not None
        self._tunnel.respond(200, handshake.accept_fields(subprotocol, headers))
        self._stream_handshake = None
        return handshake.extensions

    def _answer_error(self, status: int) -> None:
        body = reason_phrase(status).encode()
        fields = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        self._tunnel.respond(status, fields)
        self._tunnel.write(body)
        self._tunnel.close()

    def deny(self, status: int, headers: Any, body: bytes, more_body: bool) -> None:
        """Part of a denial response (``websocket.http.response.*``): its head first, then DATA."""
        if self._gone:
            return
        tunnel = self._tunnel
        if self._stream_handshake is not None:  # the first body message carries the head
            tunnel.respond(status, headers)  # a bad head raises here, unsent
            self._stream_handshake = None
        if body:
            tunnel.write(body)
        if not more_body:
            tunnel.close()

    def close(self, code: int, reason: str) -> None:
        if self._protocol is None and self._stream_handshake is None:  # a denial cut short: say so
            self._tunnel.abort()
            return
        super().close(code, reason)
