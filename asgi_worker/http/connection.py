"""The asyncio shell around one HTTP/1.1 connection: bytes in, parser events, cycles, bytes out.

Rules:
- Requests are answered strictly in order. A head that arrives while a response is in progress
  (pipelining) gets its cycle created and queued, and reading pauses until the queue drains, so a
  client cannot make us buffer more than one read ahead.
- What a connection does after each response (serve the next request, linger, close) is one pure
  rule, ``keepalive.after_response``; under a supervisor (``drain_idle_grace``) a draining
  connection whose last response promised keep-alive waits briefly for the client's next request
  and answers it with ``connection: close``.
- Reading also pauses while more than ``READ_HIGH_WATER`` bytes of body wait for the app; ``send``
  waits while the transport is above its write high-water mark.
- Timeouts are deadlines swept by the server's tick (see ``clock.py``): one for a head that is
  being received (or a new connection that says nothing), one for an idle keep-alive connection,
  one for a request body that stops arriving (re-armed by every read). None runs while the app is
  working on a request and its body is whole; the body's does not run while reading is paused for
  the app, nor while the client waits for our ``100 Continue``.
- A bad request is answered with its own status (``RequestError.status``) after the requests
  before it, then the connection closes. When the request being served turns bad or stalls mid-body
  (malformed, past ``--limit-request-body``, past ``--timeout-request-body``), its app sees
  ``http.disconnect`` and the client gets the status (400, 413, 408) if no response byte was
  written, else the connection closes. Each refusal is one debug line: clients choose them.
- After a refusal the connection lingers (``LINGER_SECONDS``): it sends its FIN after the answer,
  reads and drops what the client still sends, and closes when the client does. Closing at once
  with the client's bytes unread would reset the connection and could destroy the answer (a 413
  to a client that sends its upload anyway).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Coroutine
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from asgi_worker.context import start_in_fresh_context
from asgi_worker.errors import RequestError
from asgi_worker.flow import WRITE_HIGH_WATER, WRITE_LOW_WATER, WriteFlow, writelines_of
from asgi_worker.http.cycle import HttpCycle
from asgi_worker.http.events import BodyChunk, RequestHead
from asgi_worker.http.h1_writer import Http1Writer
from asgi_worker.http.keepalive import Next, after_response
from asgi_worker.http.scope import ConnectionFacts, build_http_scope
from asgi_worker.http2.frames import PREFACE
from asgi_worker.log import TRACE_LOG_LEVEL, peer_text

if TYPE_CHECKING:
    from asgi_worker.context import ServerContext

__all__ = ["READ_HIGH_WATER", "HttpConnection"]

logger = logging.getLogger("asgi_worker.error")

# Request body buffered for the app before we stop reading from the socket.
READ_HIGH_WATER = 65536


# After a refusal the client may still be sending (the body we refused, say). Closing with its bytes
# unread makes the kernel answer them with a reset, which can destroy our answer before the client
# has read it. So a refused connection shuts its sending side, reads and drops what still comes for
# up to this long (or until the client closes), then closes: nginx's lingering close.
LINGER_SECONDS = 2.0


class Deadline(enum.Enum):
    """What ``HttpConnection.deadline``, when it passes, means."""

    NONE = "no deadline"
    HEAD = "a request head must be complete (408 if one has begun)"
    IDLE = "an idle keep-alive connection closes"
    BODY = "the running request's body must keep arriving (408 if no response has started)"
    LINGER = "a refused connection has drained long enough and closes"


_NO_DEADLINE, _HEAD_DEADLINE, _IDLE_DEADLINE = Deadline.NONE, Deadline.HEAD, Deadline.IDLE
_BODY_DEADLINE, _LINGER_DEADLINE = Deadline.BODY, Deadline.LINGER
_CLOSE, _LINGER = Next.CLOSE, Next.LINGER


class HttpConnection(WriteFlow, asyncio.Protocol):
    """One client connection speaking HTTP/1.1. Created by the server's protocol factory."""

    def __init__(self, ctx: ServerContext, client: tuple[str, int] | None = None) -> None:
        self._ctx = ctx
        self._proxied_client = client  # the client a PROXY header named (``proxied.py``), else None
        self.defaults = ctx.defaults
        WriteFlow.__init__(self)
        self.deadline = 0.0
        self._deadline_kind = _NO_DEADLINE
        self._current: HttpCycle | None = None  # the cycle whose app is running
        self._receiving: HttpCycle | None = None  # the cycle body events go to
        self._pending: deque[HttpCycle | RequestError] = deque()
        self._reading_paused = False
        self._closing = False
        self._peer_eof = False
        self._upgrade: RequestHead | None = None  # a WebSocket handshake waiting for its turn
        self._upgrade_rest = b""  # bytes that followed it, for the WebSocket side
        self._body_excused = False  # the BODY deadline was armed while the client awaited 100 Continue
        self._lingering = False  # refused: reading and dropping until the client closes (LINGER_SECONDS)
        self._grace_armed = False  # the running app call is due to be cancelled (disconnect grace)
        self._deferred: tuple[HttpCycle, Coroutine[Any, Any, None]] | None = None  # see _run_deferred
        self._sniff: bytes | None = None  # --http2 in cleartext: the first bytes, until they decide

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        ctx = self._ctx
        self._transport = transport
        self._writer = Http1Writer(transport.write, writelines_of(transport), self.defaults, ctx.batch)
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        ctx.connections.add(self)
        ctx.counts.accepted += 1
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        if self._proxied_client is not None:
            client = self._proxied_client
        proxy = ctx.proxy
        tls = ctx.tls
        self._facts = ConnectionFacts(
            client=client,
            server=(sock[0], sock[1]) if isinstance(sock, tuple) else (str(sock), None) if sock else None,
            scheme="https" if tls is not None else "http",
            root_path=ctx.root_path,
            state=ctx.lifespan_state,
            # Trust depends on the peer only: decided here, once per connection.
            proxy=proxy if proxy is not None and proxy.trusts(client[0] if client else sock) else None,
            # The handshake is done by now (asyncio calls connection_made after it): the peer's
            # certificate and the cipher hold for every request on this connection.
            extensions=None
            if tls is None
            else {"tls": tls.extension(transport.get_extra_info("ssl_object"))},
        )
        self._parser = ctx.parser_class(ctx.limits, ctx.ws is not None)
        self._set_deadline(_HEAD_DEADLINE, ctx.timeout_request_header)
        if ctx.http2 is not None:
            if tls is None:
                self._sniff = b""  # cleartext: the first bytes say whether the client speaks HTTP/2
            elif transport.get_extra_info("ssl_object").selected_alpn_protocol() == "h2":
                self._take_over_http2(b"")
                return
        if ctx.state.draining:  # accepted as the stop began: treated as the open ones were
            self.shutdown()
        if ctx.trace:
            logger.log(TRACE_LOG_LEVEL, "%s - HTTP connection made", peer_text(client))

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._sniff is not None:
            data = self._sniff_preface(data)
            if not data:
                return
        if self._upgrade is not None:  # the parser has stopped: these bytes are WebSocket frames
            self._upgrade_rest += data
            return
        parser = self._parser
        # One type() per event, compared by identity (cheaper than isinstance); mypy does not narrow
        # through the name ``kind``, hence the two ignores.
        for event in parser.feed(data):
            kind = type(event)
            if kind is RequestHead:
                self._on_head(event)  # type: ignore[arg-type]
            elif kind is BodyChunk:
                cycle = self._receiving
                if cycle is not None:
                    cycle.feed_body(event.data)  # type: ignore[union-attr]
                    if cycle.body_size > READ_HIGH_WATER:
                        self._update_reading()
            elif isinstance(event, RequestError):
                self._on_bad_request(event)
            elif self._receiving is not None:  # REQUEST_END
                self._receiving.end_body()
                self._receiving = None
        if self._deferred is not None:
            self._run_deferred()
        if self._upgrade is not None:
            self._upgrade_rest = parser.switched or b""
            if self._current is None and not self._pending:
                self._switch_to_websocket()
            else:
                self._update_reading()  # pipelined behind other requests: wait for their answers
            return
        if self._deadline_kind is _IDLE_DEADLINE and parser.in_head:  # a head has begun: time it
            self._set_deadline(_HEAD_DEADLINE, self._ctx.timeout_request_header)
        elif self._receiving is not None or self._deadline_kind is _BODY_DEADLINE:
            self._time_body()  # bytes of a body arrived (or it just ended): re-arm (or drop) its deadline

    def eof_received(self) -> bool:
        # The client shut its sending side (a half-close, or the first half of a full close: we
        # cannot tell which). A whole request in progress still gets its response, then we close;
        # an app waiting in receive() learns now that nothing more will come (http.disconnect).
        current = self._current
        if current is not None and current.body_done:
            self._peer_eof = True
            self._pending.clear()
            current.peer_closed()
            self._cancel_after_grace()  # most clients that close mid-request have gone, not half-closed
            return True
        # The transport closes itself now: what a response held for the batch still has to say
        # goes into it first (a client that sends its FIN with its request still gets the answer).
        self._writer.flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._ctx.trace:
            logger.log(TRACE_LOG_LEVEL, "%s - HTTP connection lost", peer_text(self._facts.client))
        ctx = self._ctx
        ctx.connection_closed(self)
        self._writer.drop()
        for cycle in (self._current, self._receiving):
            if cycle is not None:
                cycle.disconnect()
        self._cancel_after_grace()
        self._pending.clear()
        self._release_writers()

    def _cancel_after_grace(self) -> None:
        """The client has gone (or closed its side) while an app call runs: the app has heard
        ``http.disconnect``; ``--disconnect-grace-period`` seconds later its call is cancelled
        (gunicorn's asgi_disconnect_grace_period). Rare, so a timer of its own, not a deadline."""
        ctx = self._ctx
        running = self._current.task if self._current is not None else None
        grace = ctx.disconnect_grace
        if grace is not None and running is not None and not running.done() and not self._grace_armed:
            self._grace_armed = True
            # Queued behind the task's first step even at grace 0: a task cancelled before it
            # began would leave its count in ctx.batch.apps_ready (response_batch.py).
            loop = ctx.loop
            loop.call_later(grace, lambda: loop.call_soon(running.cancel))

    # CycleHost: called by the cycle (its response's bytes go through ``Http1Writer``).

    def body_consumed(self) -> None:
        """The app took buffered body bytes: reading may resume."""
        if self._reading_paused:
            self._update_reading()

    def response_complete(self, cycle: HttpCycle, keep_alive: bool) -> None:
        """The last byte of ``cycle``'s response is written (its head announced ``keep_alive``):
        log it, then serve the next request, linger or close, as ``keepalive.after_response`` says."""
        ctx = self._ctx
        access_log = ctx.access_log
        if access_log.enabled:
            access_log.log(cycle, perf_counter() - cycle.start_time)
        if cycle is not self._current:
            return
        self._current = None
        draining = ctx.state.draining
        step = after_response(
            keep_alive,
            cycle.body_done,
            self._closing or self._peer_eof,
            draining,
            ctx.drain_idle_grace > 0,
            # Only read while draining (the rule ignores it otherwise): this runs on every response.
            draining and (bool(self._pending) or self._parser.in_head),
        )
        if step is _CLOSE:
            self._close()
        elif step is _LINGER:
            self._set_deadline(_IDLE_DEADLINE, ctx.drain_idle_grace)
        elif self._pending or self._upgrade is not None or self._parser.in_head:
            self._serve_next()
        elif ctx.timeout_keep_alive:  # idle until the next request: inline, it follows most responses
            self._deadline_kind = _IDLE_DEADLINE
            self.deadline = ctx.loop.time() + ctx.timeout_keep_alive

    def _serve_next(self) -> None:
        """Serve what already arrived: a pipelined request (or its error), an upgrade, a head begun."""
        if self._pending:
            following = self._pending.popleft()
            if isinstance(following, RequestError):
                self._answer_bad_request(following)
                return
            self._start(following)
            self._update_reading()
        elif self._upgrade is not None:
            self._switch_to_websocket()
        else:
            self._set_deadline(_HEAD_DEADLINE, self._ctx.timeout_request_header)

    def _log_access(self, cycle: HttpCycle) -> None:
        access_log = self._ctx.access_log
        if access_log.enabled:
            access_log.log(cycle, perf_counter() - cycle.start_time)

    def abort(self) -> None:
        """The response cannot be finished properly (an app error mid-body): close the connection."""
        self._current = None
        self._close()

    # Requests

    def _on_head(self, head: RequestHead) -> None:
        ctx = self._ctx
        if head.websocket and ctx.ws is not None:  # the parser stopped after it (switch_websocket)
            self._upgrade = head
            return
        cycle = HttpCycle(
            self,
            self._writer,
            build_http_scope(head, self._facts),
            head.keep_alive,
            head.expect_continue,
            perf_counter() if ctx.timed else 0.0,  # not loop.time(): ms under uvloop
        )
        self._receiving = cycle
        if self._current is None and not self._pending:
            self._start(cycle, self._ctx.eager_start)
        else:
            self._pending.append(cycle)
            self._update_reading()

    def _start(self, cycle: HttpCycle, eager: bool = False) -> None:
        """Run the app for ``cycle``. ``eager``: called while ``data_received`` hands out a read's
        events, so the app call may start as an eager task once they are all in (``_run_deferred``)."""
        ctx = self._ctx
        state = ctx.state
        self._deadline_kind = _NO_DEADLINE
        self.deadline = 0.0
        if ctx.limited:  # only pay for the limit checks when a limit is set
            ctx.request_started()
            if ctx.over_concurrency():
                ctx.counts.refused += 1
                cycle.status = 503
                self._writer.error(503)
                self._log_access(cycle)
                self._close()
                return
        else:
            state.total_requests += 1
        self._current = cycle
        if state.draining:
            cycle.close_after()
        hooks = ctx.hooks
        if hooks is not None:
            hooks.started(cycle)
        coro = cycle.run_asgi(ctx.app, ctx)
        if eager and not ctx.reset_contextvars and self._deferred is None:
            self._deferred = cycle, coro  # started once this read's events are all in (_run_deferred)
            return
        # Counted before the task exists: under an eager task factory its first step (run_asgi,
        # which takes the count back) runs inside create_task. See response_batch.py.
        ctx.batch.apps_ready += 1
        task = start_in_fresh_context(ctx.loop, coro) if ctx.reset_contextvars else ctx.loop.create_task(coro)
        cycle.task = task
        ctx.tasks.add(task)

    def _run_deferred(self) -> None:
        """Start the app call ``_start`` deferred, as an eager task: its first step runs now, inside
        this read callback, after the rest of the read (the request's end, say) reached its cycle.
        A response that waits on nothing is then written before the loop turns again: one loop
        iteration and one scheduled callback less per request. Only from ``data_received``: from a
        response's completion (pipelining) it would nest one app call inside another's ``send``.

        Only with ``--eager-start`` (Python 3.12+). Measured on 3.12, 64 connections: plain, JSON
        and Starlette 3-4% more req/s, one connection 3%; FastAPI 13% fewer, its CPU per request
        53.0 -> 61.8 µs for the same instructions (callgrind: 490k -> 488k). Running a large app
        between each read, rather than all ready reads first and then all the app calls, seems to
        cost it the caches; the per-request code is the same."""
        cycle, coro = self._deferred  # type: ignore[misc]
        self._deferred = None
        self._ctx.batch.apps_ready += 1  # run_asgi's first step, just below, takes it back
        task = asyncio.Task(coro, loop=self._ctx.loop, eager_start=True)  # type: ignore[call-arg]
        if not task.done():  # done already: run_asgi's end has counted it (cycle.task was None)
            cycle.task = task
            self._ctx.tasks.add(task)

    def _sniff_preface(self, data: bytes) -> bytes:
        """Cleartext ``--http2``: a connection whose first bytes are the HTTP/2 client preface is
        HTTP/2 (prior knowledge, RFC 9113 3.3); anything else is HTTP/1.1. Returns the bytes to
        read as HTTP/1.1, b"" while undecided (at most the preface's 24 bytes) or handed over."""
        seen = self._sniff + data if self._sniff else data
        if seen[: len(PREFACE)] == PREFACE[: len(seen)]:
            if len(seen) < len(PREFACE):
                self._sniff = seen
            else:
                self._take_over_http2(seen)
            return b""
        self._sniff = None
        return seen

    def _take_over_http2(self, received: bytes) -> None:
        """Hand the transport, and the bytes read so far, to an HTTP/2 connection."""
        ctx = self._ctx
        self._sniff = None
        self._closing = True  # nothing more for HTTP/1.1 on this connection
        self._deadline_kind = _NO_DEADLINE
        self.deadline = 0.0
        from asgi_worker.http2.connection import take_over  # imports h2: only where --http2 is on

        take_over(ctx, self._transport, self._facts, received)  # registers the new protocol first:
        ctx.connection_closed(self)  # a draining server must never see no connection in between

    def _switch_to_websocket(self) -> None:
        """Hand the transport, and the bytes after the handshake request, to the WebSocket side."""
        ctx = self._ctx
        head, rest = self._upgrade, self._upgrade_rest
        assert head is not None and ctx.ws is not None
        self._upgrade, self._upgrade_rest = None, b""
        self._closing = True  # nothing more for HTTP on this connection
        self._deadline_kind = _NO_DEADLINE
        self.deadline = 0.0
        self._writer.flush()  # responses held for a batch go before the WebSocket side's first byte
        if self._reading_paused:  # paused while the upgrade waited its turn: the WebSocket side decides now
            self._reading_paused = False
            self._transport.resume_reading()
        ctx.ws.take_over(ctx, self._transport, head, self._facts, rest)  # registers the new protocol
        ctx.connection_closed(self)

    def _on_bad_request(self, error: RequestError) -> None:
        self._ctx.counts.refused_malformed(error.status)
        broken, self._receiving = self._receiving, None
        if broken is not None and broken is self._current:
            # The body of the request being served is malformed: end that request now (its app
            # sees http.disconnect) and answer the client, rather than wait behind a stuck app.
            self._current = None
            if broken.abandon():
                self._answer_bad_request(error)
            else:
                self._close()
            return
        if broken is not None and self._pending and self._pending[-1] is broken:
            self._pending.pop()  # a queued request with a broken body is never started
        if self._current is None and not self._pending:
            self._answer_bad_request(error)
        else:
            self._pending.append(error)

    def _answer_bad_request(self, error: RequestError) -> None:
        # One debug line: the client chooses to send bad bytes, so it must not fill the error log.
        logger.debug("Invalid HTTP request received: %s", error.detail)
        self._writer.error(error.status)
        self._linger()

    # Flow control, deadlines, shutdown

    def _update_reading(self) -> None:
        receiving = self._receiving
        pause = (
            bool(self._pending)
            or self._upgrade is not None
            or (receiving is not None and receiving.body_size > READ_HIGH_WATER)
        )
        if pause != self._reading_paused and not self._closing:
            self._reading_paused = pause
            if pause:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()
            self._time_body()  # the client is not late while we do not read

    def _time_body(self) -> None:
        """Arm the BODY deadline afresh while the running request's body is incomplete and we read;
        drop it otherwise (the body ended, or reading paused)."""
        receiving = self._receiving
        if receiving is not None and receiving is self._current and not self._reading_paused:
            self._body_excused = receiving.awaiting_continue
            self._set_deadline(_BODY_DEADLINE, self._ctx.timeout_request_body)
        elif self._deadline_kind is _BODY_DEADLINE:
            self._deadline_kind = _NO_DEADLINE
            self.deadline = 0.0

    def _set_deadline(self, kind: Deadline, timeout: float) -> None:
        self._deadline_kind = kind
        self.deadline = self._ctx.loop.time() + timeout if timeout else 0.0
        if not timeout:
            self._deadline_kind = _NO_DEADLINE

    def deadline_passed(self) -> None:
        """Called by the server's sweep when ``deadline`` is in the past."""
        kind, self._deadline_kind, self.deadline = self._deadline_kind, _NO_DEADLINE, 0.0
        stalled = self._current
        if kind is _BODY_DEADLINE and stalled is not None and stalled is self._receiving:
            if self._body_excused:  # armed while the client rightly waited for 100 Continue: not late
                self._time_body()  # so a full timeout from now, and from the 100 if it went out since
                return
            logger.debug("Request body timed out: no byte for %g s", self._ctx.timeout_request_body)
            self._ctx.counts.timeouts["request_body"] += 1
            self._current = self._receiving = None
            if stalled.abandon():  # its app sees http.disconnect; 408 unless a response byte went out
                self._writer.error(408)
                self._linger()
                return
        elif kind is _HEAD_DEADLINE or kind is _IDLE_DEADLINE:
            # A head begun and not finished is answered 408; a connection that said nothing, or
            # nothing more after a response, is closed. Either way, a timeout of its kind.
            self._ctx.counts.timeouts["request_head" if kind is _HEAD_DEADLINE else "keep_alive"] += 1
            if kind is _HEAD_DEADLINE and self._parser.in_head:
                self._writer.error(408)
                self._linger()
                return
        self._close()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the response in progress (in-flight ones finish).

        With ``drain_idle_grace`` an idle connection instead stays open that long: a request the
        client sends meanwhile is answered with ``connection: close``, which no client can race.
        """
        if self._current is None:
            grace = self._ctx.drain_idle_grace
            if grace and not self._closing and self._upgrade is None:
                self._set_deadline(_IDLE_DEADLINE, grace)
                return
            self._close()
        else:
            self._current.close_after()
            self._pending.clear()

    def _linger(self) -> None:
        """After an answer that ends the connection: shut our side, drain the client's, then close."""
        transport = self._transport
        if self._closing or not transport.can_write_eof():  # TLS cannot half-close: close at once
            self._close()
            return
        self._closing = True  # nothing more is read as HTTP: data_received drops it
        self._lingering = True
        self._writer.flush()
        try:
            transport.write_eof()  # after the answer, once it is flushed
        except OSError:  # asyncio's shutdown() on a socket the peer has reset already
            self._close()
            return
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._set_deadline(_LINGER_DEADLINE, LINGER_SECONDS)

    def _close(self) -> None:
        if not self._closing or self._lingering:
            self._closing = True
            self._lingering = False
            self._writer.flush()  # a response held for a batch (response_batch.py) still leaves
            self._transport.close()
