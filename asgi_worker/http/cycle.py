"""The one ASGI HTTP request/response cycle, whichever parser fed it.

Rules:
- The connection pushes request events in (``feed_body``, ``end_body``, ``disconnect``); the app
  pulls them with ``receive``. Waiters are created only when the app really has to wait, so a GET
  whose head and end arrived together costs no future and no event.
- ``receive`` hands out the body, then blocks until the exchange is over and answers
  ``http.disconnect``: at once when the client has gone, and as soon as the response is complete.
- ``send`` holds the response head until the first body message, so a small response is one write
  and an app that fails between ``http.response.start`` and its body still gets a clean 500.
- The state machine (``CycleState``) rejects a message its state does not allow with an
  ``AppProtocolError`` naming both. After the client disconnects, ``send`` is a no-op (ASGI 2.4).
- ``Expect: 100-continue`` is answered on the first ``receive`` that has to wait for the body,
  unless a body byte has come already (the client did not wait).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, Any, Protocol

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.response import CONTENT_LENGTH, ResponsePlan, check_length

if TYPE_CHECKING:
    from asgi_worker.http.response_batch import ResponseBatch
    from asgi_worker.types import ASGIApp

__all__ = ["CycleHost", "CycleState", "HttpCycle", "ResponseWriter", "TaskRegistry"]

logger = logging.getLogger("asgi_worker.error")

_DISCONNECT = {"type": "http.disconnect"}


class CycleState(enum.Enum):
    AWAITING_START = "awaiting http.response.start"
    SENDING_BODY = "sending http.response.body"
    SENDING_TRAILERS = "sending http.response.trailers"
    DONE = "response complete"
    FAILED = "failed"


_AWAITING_START = CycleState.AWAITING_START
_SENDING_BODY = CycleState.SENDING_BODY
_SENDING_TRAILERS = CycleState.SENDING_TRAILERS
_DONE = CycleState.DONE
_FAILED = CycleState.FAILED

# The transitions ``send`` allows: AWAITING_START --http.response.start--> SENDING_BODY
# --http.response.body(more_body=True)--> SENDING_BODY --http.response.body--> DONE, or, when the
# start asked for trailers (the ASGI trailers extension), --> SENDING_TRAILERS
# --http.response.trailers(more_trailers=True)--> SENDING_TRAILERS --http.response.trailers--> DONE;
# an app failure
# from any state but DONE -> FAILED. Every other (state, message) is an ``AppProtocolError``. ``send``
# checks the two live rows with ``is`` rather than a table lookup: hashing an Enum member runs
# Python code, and this is paid on every message.


class TaskRegistry(Protocol):
    """Where app tasks are counted (``ServerContext``)."""

    @property
    def batch(self) -> ResponseBatch: ...

    def cycle_finished(self, cycle: HttpCycle) -> None: ...


class CycleHost(Protocol):
    """What a cycle needs from its connection (``http.connection.HttpConnection``): flow control,
    and what happens to the connection once a response is complete or broken."""

    write_paused: bool

    async def wait_writable(self) -> None: ...
    def body_consumed(self) -> None: ...
    def response_complete(self, cycle: HttpCycle, keep_alive: bool) -> None: ...
    def abort(self) -> None: ...


class ResponseWriter(Protocol):
    """How a cycle's response is framed on the wire: ``h1_writer.Http1Writer`` for HTTP/1.1.

    The cycle calls ``start`` with the first body message: it validates the head and the body
    against the head's Content-Length, raising ``AppProtocolError`` before anything is written,
    writes both and returns the plan. Each later message is checked by the cycle
    (``response.check_length``), then framed by ``body``. ``flush`` writes anything queued (before
    an abort); ``error`` is the server's own answer when nothing of the app's response was written.
    """

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
    ) -> ResponsePlan: ...
    def body(self, plan: ResponsePlan, body: bytes, more: bool) -> None: ...
    def interim_continue(self) -> None: ...
    def error(self, status: int) -> None: ...
    def flush(self) -> None: ...
    def trailers(self, plan: ResponsePlan, headers: Any, more: bool) -> None: ...


class HttpCycle:
    """One request and its response. Created by the connection when a request head arrives."""

    __slots__ = (
        "_body_handed",
        "_chunks",
        "_disconnected",
        "_draining",
        "_expect_continue",
        "_headers",
        "_host",
        "_keep_alive",
        "_peer_eof",
        "_plan",
        "_trailers",
        "_waiters",
        "_writer",
        "body_done",
        "body_received",
        "body_size",
        "bytes_sent",
        "scope",
        "start_time",
        "state",
        "status",
        "task",
    )

    def __init__(
        self,
        host: CycleHost,
        writer: ResponseWriter,
        scope: dict[str, Any],
        keep_alive: bool,
        expect_continue: bool,
        start_time: float,
    ) -> None:
        self._host = host
        self._writer = writer
        self.scope = scope
        self.state = _AWAITING_START
        self.status = 0
        self.bytes_sent = 0  # response body bytes written (what access logs call the size)
        self.start_time = start_time
        self.task: asyncio.Task[None] | None = None
        self._keep_alive = keep_alive  # the request's wish (keepalive.request_keep_alive)
        self._draining = False
        self._expect_continue = expect_continue  # cleared once "100 Continue" is written or a body byte came
        self._chunks: list[bytes] | None = None
        self.body_size = 0  # request body bytes received and not yet handed to the app
        self.body_received = 0  # request body bytes received in all
        self.body_done = False  # the whole request body has been received
        self._body_handed = False
        self._disconnected = False
        self._peer_eof = False
        self._waiters: list[asyncio.Future[None]] | None = None
        self._headers: Any = ()
        self._plan: ResponsePlan | None = None
        self._trailers = False  # the start asked to send trailers after the body

    @property
    def response_headers(self) -> Any:
        """The headers the app sent with ``http.response.start``, as it sent them (for access logs).

        ``()`` before the response started, and when the server answered instead (a 500 before the
        first body message), since those headers were never written.
        """
        return self._headers if self._plan is not None else ()

    @property
    def awaiting_continue(self) -> bool:
        """The client asked for ``100 Continue`` and has had neither it nor a response: it may rightly
        hold its body back until the app asks for it (the connection's body timeout waits too)."""
        return self._expect_continue and self._plan is None

    # Request side: called by the connection.

    def close_after(self) -> None:
        """The server is draining: announce ``connection: close`` if the head is still unwritten."""
        self._draining = True

    def feed_body(self, data: bytes) -> None:
        """Buffer a body chunk for ``receive``. The connection watches ``body_size`` for backpressure."""
        if self._body_handed:
            return
        # The client sends its body without waiting: no "100 Continue" then (RFC 9110 10.1.1 lets us
        # omit it), so whether one goes out does not depend on when the app first waits.
        self._expect_continue = False
        if self._chunks is None:
            self._chunks = [data]
        else:
            self._chunks.append(data)
        size = len(data)
        self.body_size += size
        self.body_received += size
        if self._waiters:
            self._wake()

    def end_body(self) -> None:
        """The request body is complete."""
        self.body_done = True
        if self._waiters:
            self._wake()

    def disconnect(self) -> None:
        """The client has gone: wake ``receive`` with ``http.disconnect`` and make ``send`` a no-op."""
        self._disconnected = True
        if self._waiters:
            self._wake()

    def peer_closed(self) -> None:
        """The client will send nothing more: ``receive`` answers ``http.disconnect``, ``send`` works."""
        self._peer_eof = True
        if self._waiters:
            self._wake()

    def abandon(self) -> bool:
        """The request turned out malformed mid-body: treat the client as gone for the app.

        Returns True when no response byte was written yet (the connection can still answer 400).
        """
        self.disconnect()
        return self._plan is None

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        await waiter

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the request body in order, then ``http.disconnect`` when the exchange ends."""
        if not self._body_handed:
            if not (self._chunks or self.body_done or self._disconnected):
                if self._expect_continue and self._plan is None:  # no response byte written yet
                    self._expect_continue = False
                    self._writer.interim_continue()
                await self._wait()
            if self._chunks or self.body_done:
                return self._take_body()
        while not (self._disconnected or self._peer_eof) and (
            self.state is _AWAITING_START or self.state is _SENDING_BODY or self.state is _SENDING_TRAILERS
        ):
            await self._wait()
        return _DISCONNECT

    def _take_body(self) -> dict[str, Any]:
        chunks = self._chunks
        if not chunks:
            body = b""
        elif len(chunks) == 1:
            body = chunks[0]
        else:
            body = b"".join(chunks)
        more = not self.body_done
        self._body_handed = not more
        if chunks:
            chunks.clear()
            self.body_size = 0
            self._host.body_consumed()
        return {"type": "http.request", "body": body, "more_body": more}

    # Response side: called by the app.

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``. Raises ``AppProtocolError`` for a message the current state does not allow."""
        if self._disconnected:
            return
        mtype = message["type"]
        state = self.state
        if state is _SENDING_BODY and mtype == "http.response.body":
            pass
        elif state is _AWAITING_START and mtype == "http.response.start":
            self.status = message["status"]
            self._headers = message.get("headers", ())
            self.state = _SENDING_BODY
            if message.get("trailers"):
                self._trailers = True
            return
        elif state is _SENDING_TRAILERS and mtype == "http.response.trailers":
            self._send_trailers(message)
            return
        else:
            raise AppProtocolError(f"ASGI message {mtype!r} is not allowed in state {state.value!r}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self._trailers and not more:
            await self._send_last_before_trailers(body)
            return
        host = self._host
        if host.write_paused:
            await host.wait_writable()
            if self._disconnected:
                return
        plan = self._plan
        if plan is None:
            plan = self._writer.start(
                self.status,
                self._headers,
                body,
                more,
                self.scope,
                self._keep_alive,
                self._draining,
                self.body_done or more,
            )
            self._plan = plan  # set once the head is written: until then a failure is still a clean 500
            self.bytes_sent = len(body)
        else:
            sent = self.bytes_sent + len(body)
            if plan.framing == CONTENT_LENGTH:
                check_length(plan, sent, more)  # before writing: a refused body was never sent
            self.bytes_sent = sent
            self._writer.body(plan, body, more)
        if not more:
            self.state = _DONE
            if self._waiters:
                self._wake()
            host.response_complete(self, plan.keep_alive)

    async def _send_last_before_trailers(self, body: bytes) -> None:
        """The last body message of a response with trailers: framed as if more were coming (the
        trailers end it), its length checked as the last."""
        await self.send({"type": "http.response.body", "body": body, "more_body": True})
        plan = self._plan
        if plan is not None and not self._disconnected:
            if plan.framing == CONTENT_LENGTH:
                check_length(plan, self.bytes_sent, False)
            self.state = _SENDING_TRAILERS

    def _send_trailers(self, message: dict[str, Any]) -> None:
        plan = self._plan
        assert plan is not None
        more = message.get("more_trailers", False)
        self._writer.trailers(plan, message.get("headers", ()), more)
        if not more:
            self.state = _DONE
            if self._waiters:
                self._wake()
            self._host.response_complete(self, plan.keep_alive)

    # The app itself.

    async def run_asgi(self, app: ASGIApp, tasks: TaskRegistry) -> None:
        """Run the app for this request; turn every way it can fail into a 500 or a closed connection.

        Runs as ``self.task``; tells ``tasks`` when done (cheaper than a done-callback). Its first
        step takes back the count its starter added to ``tasks.batch.apps_ready``.
        """
        tasks.batch.apps_ready -= 1
        try:
            await app(self.scope, self.receive, self.send)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self._fail(None)
            raise
        except BaseException as exc:
            self._fail(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if self.state is not _DONE:
                # After the client left, an app that stops sending has done nothing wrong.
                self._fail(
                    None,
                    "" if self._disconnected else "ASGI callable returned without completing the response",
                )
        finally:
            tasks.cycle_finished(self)

    def _fail(self, exc: BaseException | None, message: str = "") -> None:
        if exc is not None:
            logger.error("Exception in ASGI application", exc_info=exc)
        elif message:
            logger.error(message)
        if self.state is _DONE or self.state is _FAILED:
            return
        self.state = _FAILED
        if self._disconnected:
            return
        if self._plan is None and (exc is not None or message):
            self.status = 500
            self._writer.error(500)
            self._host.response_complete(self, False)
        else:
            self._writer.flush()  # what the app sent before failing still reaches the client
            self._host.abort()
