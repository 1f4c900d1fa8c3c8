"""The asyncio shell of one HTTP/2 connection: bytes in -> ``Http2Session`` events -> one ``HttpCycle``
per stream; the cycles' responses -> HEADERS and DATA frames out.

Rules:
- The HTTP/1.1 connection hands its transport over (``take_over``): after an ALPN ``h2`` handshake,
  or when a cleartext connection opened with the HTTP/2 client preface (prior knowledge).
- Every stream runs the same ``HttpCycle`` as HTTP/1.1 (states, lengths, app faults); an
  ``Http2Stream`` is both its host (flow control, completion) and its writer (framing).
- Flow control both ways: request body is acknowledged to the peer only once the app has taken it
  (``body_consumed``), so each stream and the connection buffer at most their receive windows;
  ``send`` waits while a stream's data waits for the peer's window, or while the transport is above
  its high-water mark. Streams are independent: one waiting for its window stalls no other.
- Everything the session queues leaves in one write per loop iteration (``_flush_soon``).
- Timeouts are deadlines swept by the server's tick: an idle connection (no open stream) closes
  after the keep-alive timeout with GOAWAY; a stream whose data has waited for the peer's window
  longer than the request-body timeout is reset (a peer that never opens its window); a request
  body that stops arriving while the app waits for it (the app holds none of it unread, no
  100 Continue is awaited) is answered 408 after the request-body timeout, as in HTTP/1.1.
- Graceful stop: GOAWAY NO_ERROR with the last stream id; open streams finish, then the connection
  closes. Abort: the transport is closed at once.
- The session's refusals (``Http2Session.counts``) reach the server's counts as they happen: after
  each feed, one comparison of the session's ``refusals`` total; only when it moved are the kinds
  that moved added (``_count_refusals``), so nothing is counted twice and nothing per request.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from asgi_worker.errors import AppProtocolError
from asgi_worker.flow import WRITE_HIGH_WATER, WRITE_LOW_WATER, WriteFlow
from asgi_worker.http.cycle import CycleState, HttpCycle
from asgi_worker.http.response import (
    CONTENT_LENGTH,
    NO_BODY,
    ResponsePlan,
    check_length,
    reason_phrase,
)
from asgi_worker.http.scope import build_http_scope
from asgi_worker.http2.events import (
    ConnectionEnded,
    ErrorCode,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamRefused,
    StreamReset,
    WindowOpened,
)
from asgi_worker.http2.session import Http2Session

if TYPE_CHECKING:
    from asgi_worker.context import ServerContext, StreamTunnel
    from asgi_worker.http.scope import ConnectionFacts

__all__ = ["Http2Connection", "Http2Stream", "take_over"]

logger = logging.getLogger("asgi_worker.error")

_DONE = CycleState.DONE

# Framing of a response without the app's Content-Length: DATA frames ended by END_STREAM.
_STREAM = 4


def _plan(status: int, headers: Any, body_length: int | None, head_only: bool) -> tuple[ResponsePlan, bool]:
    """``(plan, server_or_date_given)``: the framing an HTTP/2 response has, from the app's head."""
    content_length = -1
    given = False
    for name, value in headers:
        lname = name.lower() if not name.islower() else name
        if lname == b"content-length":
            if not value.strip().isdigit():
                raise AppProtocolError(f"invalid content-length {value!r}")
            content_length = int(value)
        elif lname == b"server" or lname == b"date":
            given = True
    if head_only or status < 200 or status == 204 or status == 304:
        framing = NO_BODY
    elif content_length >= 0:
        framing = CONTENT_LENGTH
    else:
        framing = _STREAM
    return ResponsePlan(b"", framing, content_length, True), given


class Http2Stream:
    """One request stream: the host and the writer of its ``HttpCycle``."""

    __slots__ = (
        "_conn",
        "_pending",
        "_pending_end",
        "_trailer_fields",
        "_trailers_ready",
        "_unacked",
        "_waiters",
        "cycle",
        "stream_id",
        "waiting_since",
        "write_paused",
    )

    def __init__(self, conn: Http2Connection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.cycle: HttpCycle | None = None
        self.write_paused = False
        self._pending = b""  # response data waiting for the peer's window
        self._pending_end = False
        self._trailer_fields: list[tuple[bytes, bytes]] | None = None  # trailers of the app's, so far
        self._trailers_ready = False  # all of them: they go once the pending data has left
        self._unacked = 0  # request body bytes (flow-controlled length) the app has not taken yet
        self._waiters: list[asyncio.Future[None]] = []
        self.waiting_since = 0.0  # loop time since which the app has waited for more body; 0: it does not

    # CycleHost

    async def wait_writable(self) -> None:
        conn = self._conn
        while (self.write_paused or conn.write_paused) and not conn.gone and self.stream_id in conn.streams:
            waiter = conn.loop.create_future()
            if self.write_paused:
                self._waiters.append(waiter)
            else:
                conn.write_waiters.append(waiter)
            await waiter

    def body_consumed(self) -> None:
        if self._unacked:
            conn = self._conn
            conn.session.consumed(self.stream_id, self._unacked)
            self._unacked = 0
            if self in conn.receiving:  # the window is open again: the client's turn to send
                self.waiting_since = conn.loop.time()
                conn.update_deadline()
            conn.flush_soon()

    def response_complete(self, cycle: HttpCycle, keep_alive: bool) -> None:
        self._conn.response_complete(self, cycle)

    def abort(self) -> None:
        self._conn.reset_stream(self, ErrorCode.INTERNAL_ERROR)

    # ResponseWriter

    def start(
        self,
        status: int,
        headers: Any,
        body: bytes,
        more: bool,
        scope: dict[str, Any],
        request_keeps: bool,
        draining: bool,
        body_complete: bool,
    ) -> ResponsePlan:
        size = len(body)
        plan, given = _plan(status, headers, None if more else size, scope["method"] == "HEAD")
        if plan.framing == CONTENT_LENGTH:
            check_length(plan, size, more)
        conn = self._conn
        fields = list(headers)
        if plan.framing == _STREAM and not more:  # the whole body is here: say how long it is
            fields.append((b"content-length", b"%d" % size))
        fields += conn.defaults.pairs(given, given)
        no_data = plan.framing == NO_BODY or (not more and not size)
        conn.session.send_head(self.stream_id, status, fields, end_stream=no_data and not more)
        if not no_data or more:
            self.body(plan, body, more)
        else:
            conn.flush_soon()
        return plan

    def body(self, plan: ResponsePlan, body: bytes, more: bool) -> None:
        if plan.framing == NO_BODY:
            body = b""
        conn = self._conn
        if self._pending:  # still waiting for a window: this message queues behind it (send waits next)
            self._pending += body
            self._pending_end = not more
        else:
            sent = conn.session.send_data(self.stream_id, body, end_stream=not more)
            if sent < len(body):
                self._pending = body[sent:]
                self._pending_end = not more
                self.write_paused = True
                conn.blocked.add(self)
                conn.update_deadline()
        conn.flush_soon()

    def trailers(self, plan: ResponsePlan, headers: Any, more: bool) -> None:
        """Trailer fields (the ASGI trailers extension): a HEADERS frame that ends the stream, after
        any data still waiting for the peer's window."""
        fields = self._trailer_fields
        if fields is None:
            fields = self._trailer_fields = []
        fields += headers
        if more:
            return
        if self._pending:
            self._trailers_ready = True  # sent by window_opened once the data has left
            return
        self._trailer_fields = None
        self._conn.session.send_trailers(self.stream_id, fields)
        self._conn.flush_soon()

    def interim_continue(self) -> None:
        self._conn.session.send_head(self.stream_id, 100, (), end_stream=False)
        self._conn.flush_soon()

    def error(self, status: int) -> None:
        self._conn.answer(self.stream_id, status)

    def flush(self) -> None:
        self._conn.flush()

    # The connection's side

    def window_opened(self) -> None:
        """Send what waited for the window; wake the app's ``send`` once nothing waits any more."""
        if self._pending:
            data = self._pending
            sent = self._conn.session.send_data(self.stream_id, data, end_stream=self._pending_end)
            self._pending = data[sent:]
        if not self._pending:
            conn = self._conn
            fields = self._trailer_fields
            if fields is not None and self._trailers_ready:  # the trailers waited behind the data
                self._trailer_fields = None
                conn.session.send_trailers(self.stream_id, fields)
            conn.blocked.discard(self)
            self.write_paused = False
            self.release()
            cycle = self.cycle
            if cycle is not None and cycle.state is _DONE:  # its last data has left: the stream is over
                conn.forget(self)

    def release(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Http2Connection(WriteFlow, asyncio.Protocol):
    """One HTTP/2 connection, taken over from an ``HttpConnection``."""

    def __init__(self, ctx: ServerContext, transport: asyncio.Transport, facts: ConnectionFacts) -> None:
        assert ctx.http2 is not None
        WriteFlow.__init__(self)
        self._ctx = ctx
        self.loop = ctx.loop
        self.defaults = ctx.defaults
        self._transport = transport
        self._facts = facts.with_extension("http.response.trailers")  # every stream can end with them
        self.session = Http2Session(ctx.limits, ctx.http2, ctx.loop.time)
        self.streams: dict[int, Http2Stream] = {}
        self.blocked: set[Http2Stream] = set()  # streams whose response waits for the peer's window
        self.receiving: set[Http2Stream] = set()  # streams whose request body has not ended
        self.write_waiters = self._write_waiters
        self.gone = False
        self.deadline = 0.0
        self._flush_due = False
        self._closing = False
        self._refusals = 0  # the session's ``refusals`` already in the server's counts
        self._refused: dict[str, int] | None = None  # ... and its ``counts`` then (None: all 0)

    def take_over(self, received: bytes) -> None:
        """Serve the transport from now on; ``received`` are the bytes the HTTP/1.1 side already read."""
        ctx = self._ctx
        ctx.connections.add(self)
        transport = self._transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        transport.set_protocol(self)
        self._handle(self.session.start(received))
        if ctx.state.draining:
            self.shutdown()
        self.flush()

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._handle(self.session.feed(data))
        self.flush()

    def eof_received(self) -> bool:
        return False  # the peer will send nothing more: close (in-flight streams lose their client)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self._closing = True
        self._ctx.connection_closed(self)
        if self.session.refusals != self._refusals:
            self._count_refusals()
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if stream.cycle is not None:
                stream.cycle.disconnect()
            stream.release()
        self._release_writers()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._transport.pause_reading()  # no more frames (and their ACKs) while the peer does not read

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self._closing:
            self._transport.resume_reading()

    # Session events

    def _handle(self, events: list[Any]) -> None:
        if self.session.refusals != self._refusals:  # rare: something was refused in this feed
            self._count_refusals()
        streams = self.streams
        for event in events:
            kind = type(event)
            if kind is StreamData:
                stream = streams.get(event.stream_id)
                if stream is not None and stream.cycle is not None:
                    stream._unacked += event.flow_length
                    stream.waiting_since = 0.0  # the app's turn: the client is not late meanwhile
                    stream.cycle.feed_body(event.data)
                elif stream is not None and type(stream) is not Http2Stream:  # RFC 8441 (http2/tunnel.py)
                    cast("StreamTunnel", stream).received(event.data, event.flow_length)
                else:  # the app is gone: the window still has to reopen
                    self.session.consumed(event.stream_id, event.flow_length)
            elif kind is StreamOpened:
                try:
                    self._open(event)
                except Exception:  # a fault of ours on one stream: its 500, not the connection's end
                    self._open_failed(event)
            elif kind is StreamEnded:
                stream = streams.get(event.stream_id)
                if stream is not None and stream.cycle is not None:
                    self.receiving.discard(stream)
                    stream.cycle.end_body()
                elif stream is not None and type(stream) is not Http2Stream:  # RFC 8441 (http2/tunnel.py)
                    cast("StreamTunnel", stream).ended()
            elif kind is WindowOpened:
                if event.stream_id == 0:
                    for blocked in list(self.blocked):
                        blocked.window_opened()
                else:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream.window_opened()
            elif kind is StreamReset:
                stream = streams.pop(event.stream_id, None)
                if stream is not None:
                    self.blocked.discard(stream)
                    self.receiving.discard(stream)
                    if stream.cycle is not None:
                        stream.cycle.disconnect()
                    stream.release()
            elif kind is StreamRefused:
                logger.debug("HTTP/2 request refused: %s", event.reason)
                self._ctx.counts.refused_malformed(event.status)
                self._refuse(event)
            elif kind is ConnectionEnded:
                logger.debug("HTTP/2 connection ended (%s): %s", event.error_code, event.reason)
                self.flush()
                self._close()
                return
        self.update_deadline()

    def _count_refusals(self) -> None:
        """Add what the session refused since the last call to the server's counts, by kind."""
        session = self.session
        before = self._refused
        now = self._refused = dict(session.counts)
        self._refusals = session.refusals
        counts = self._ctx.counts
        for kind, n in now.items():
            added = n - before[kind] if before is not None else n
            if added:
                counts.refused_http2(kind, added)

    def _open(self, event: StreamOpened) -> None:
        ctx = self._ctx
        if event.protocol is not None:  # RFC 8441 extended CONNECT: a WebSocket, served by ws/ through
            assert ctx.ws is not None  # http2/tunnel.py (the setting is offered only with WebSockets on)
            ctx.ws.take_over_stream(ctx, self, self._transport, event, self._facts)
            return
        head = event.head
        stream = self.streams[event.stream_id] = Http2Stream(self, event.stream_id)
        cycle = stream.cycle = HttpCycle(
            stream,
            stream,
            build_http_scope(head, self._facts),
            True,
            head.expect_continue,
            perf_counter() if ctx.timed else 0.0,
        )
        if not head.body_length:
            cycle.end_body()
        else:
            stream.waiting_since = self.loop.time()
            self.receiving.add(stream)
        if ctx.limited:
            ctx.request_started()
            if ctx.over_concurrency():
                ctx.counts.refused += 1
                cycle.status = 503
                self.answer(event.stream_id, 503)
                return
        else:
            ctx.state.total_requests += 1
        if ctx.state.draining or self.session.draining:
            cycle.close_after()
        hooks = ctx.hooks
        if hooks is not None:
            hooks.started(cycle)
        ctx.batch.apps_ready += 1  # taken back by run_asgi's first step (response_batch.py)
        task = cycle.task = ctx.loop.create_task(cycle.run_asgi(ctx.app, ctx))
        ctx.tasks.add(task)

    def _open_failed(self, event: StreamOpened) -> None:
        """A server fault while opening a stream (a scope it could not build, say): logged with its
        traceback, answered 500 on that stream alone, as an app fault before its head is."""
        logger.exception("Exception opening HTTP/2 stream %d", event.stream_id)
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.cycle is not None and stream.cycle.task is not None:
            return  # its app runs already: the cycle answers
        self.answer(event.stream_id, 500)

    def _refuse(self, event: StreamRefused) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            self._end_request(stream, event.status)
        else:
            self.answer(event.stream_id, event.status)

    def _end_request(self, stream: Http2Stream, status: int) -> None:
        """A request refused while its app runs (body too large or too late): the app sees
        ``http.disconnect``; the client gets ``status``, or RST_STREAM CANCEL once a response began."""
        self.receiving.discard(stream)
        if stream.cycle is not None and not stream.cycle.abandon():
            self.reset_stream(stream, ErrorCode.CANCEL)
        else:
            self.answer(stream.stream_id, status)

    # Called by the streams

    def response_complete(self, stream: Http2Stream, cycle: HttpCycle) -> None:
        access_log = self._ctx.access_log
        if access_log.enabled:
            access_log.log(cycle, perf_counter() - cycle.start_time)
        if not stream._pending:
            self.forget(stream)
        # else: forgotten once its last data leaves (window_opened -> _sent_all)

    def reset_stream(self, stream: Http2Stream, code: int) -> None:
        self.session.reset(stream.stream_id, code)
        self.forget(stream)
        self.flush_soon()

    def answer(self, stream_id: int, status: int) -> None:
        """The server's own response on a stream: a refused request, or a 500 before the app's head."""
        body = reason_phrase(status).encode()
        fields = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        session = self.session
        session.send_head(stream_id, status, fields + self.defaults.pairs(False, False), end_stream=not body)
        if body:
            session.send_data(stream_id, body, end_stream=True)
        stream = self.streams.get(stream_id)
        if stream is not None:
            self.forget(stream)
        self.flush_soon()

    def forget(self, stream: Http2Stream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            self.blocked.discard(stream)
            self.receiving.discard(stream)
            stream.release()
            if not self.streams and not self._closing:
                if self.session.draining or self.session.ended:
                    self.flush()
                    self._close()
                else:
                    self.update_deadline()

    # Output

    def flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_due = False
        self.flush()

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and not self.gone:
            self._transport.write(data)

    # Deadlines and the server's stop

    def update_deadline(self) -> None:
        """Idle (no stream): the keep-alive timeout. Streams waiting for the peer (its window, or
        more request body): the body timeout, from the earliest wait. Otherwise none: the app's
        time is its own."""
        if self._closing:
            return
        ctx = self._ctx
        if not self.streams:
            timeout = ctx.timeout_keep_alive
        elif (self.blocked or self.receiving) and ctx.timeout_request_body:
            if self.deadline:
                return  # already armed, from the earliest wait (deadline_passed re-arms exactly)
            timeout = ctx.timeout_request_body
        else:
            timeout = 0.0
        self.deadline = self.loop.time() + timeout if timeout else 0.0

    def deadline_passed(self) -> None:
        self.deadline = 0.0
        if not self.streams:
            self._ctx.counts.timeouts["keep_alive"] += 1
            self.session.goaway()
            self.flush()
            self._close()
            return
        limit = self._ctx.timeout_request_body
        if not limit:  # armed when the connection was idle; nothing times out now
            self.update_deadline()
            return
        now = self.loop.time()
        earliest = now
        for stream in list(self.blocked):
            since = self.session.blocked_since(stream.stream_id)
            if since is None:
                continue
            if now - since < limit:
                earliest = min(earliest, since)
                continue
            logger.debug("HTTP/2 stream %d: no send window for %g s", stream.stream_id, limit)
            if stream.cycle is not None:
                stream.cycle.disconnect()
            self.reset_stream(stream, ErrorCode.CANCEL)
        for stream in list(self.receiving):
            since = stream.waiting_since
            cycle = stream.cycle
            if not since or (cycle is not None and cycle.awaiting_continue):
                continue  # the app holds body it has not read, or has not asked for the body yet
            if now - since < limit:
                earliest = min(earliest, since)
                continue
            logger.debug("HTTP/2 stream %d: request body timed out (%g s)", stream.stream_id, limit)
            self._ctx.counts.timeouts["request_body"] += 1
            self._end_request(stream, 408)
        self.update_deadline()
        if self.deadline and (self.blocked or self.receiving) and earliest < now:
            self.deadline = earliest + limit

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY with the last stream id; open streams finish, then the connection closes."""
        self.session.goaway()
        for stream in self.streams.values():
            if stream.cycle is not None:
                stream.cycle.close_after()
        self.flush()
        if not self.streams:
            self._close()

    def abort(self) -> None:
        self._close()

    def _close(self) -> None:
        if not self._closing:
            self._closing = True
            self.deadline = 0.0
            self._transport.close()


def take_over(
    ctx: ServerContext, transport: asyncio.Transport, facts: ConnectionFacts, received: bytes
) -> None:
    """Serve ``transport`` as HTTP/2 from now on (ALPN ``h2``, or the cleartext preface in ``received``)."""
    Http2Connection(ctx, transport, facts).take_over(received)
