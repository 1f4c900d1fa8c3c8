"""What every connection of one server shares, built once so the hot path reads attributes only.

``ServerContext`` holds the settings and shared objects; ``build_context`` makes it from a loaded
``Config`` in one step, complete, and nothing assigns to it afterwards (it is frozen). What does
change while serving (request count, open connections, running tasks, the drain) lives in
``ServerState``. The HTTP side reaches the WebSocket side only through ``UpgradeHandler``, so
``http/`` never imports ``ws/``.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from asgi_worker.clock import Clock
from asgi_worker.http.events import ParserFactory
from asgi_worker.http.limits import RequestLimits
from asgi_worker.http.proxy import ProxyTrust
from asgi_worker.http.response import DefaultHeaderBlock
from asgi_worker.http.response_batch import ResponseBatch
from asgi_worker.http2.settings import Http2Limits
from asgi_worker.metrics.counts import RequestHistogram, ServerCounts, snapshot
from asgi_worker.tls import TlsFacts
from asgi_worker.types import ASGIApp

if TYPE_CHECKING:
    from asgi_worker.config import Config
    from asgi_worker.http.cycle import HttpCycle
    from asgi_worker.http.events import RequestHead
    from asgi_worker.http.scope import ConnectionFacts
    from asgi_worker.http2.events import StreamOpened
    from asgi_worker.log import AccessLog

__all__ = [
    "RequestHooks",
    "ServedConnection",
    "ServerContext",
    "ServerState",
    "StreamTunnel",
    "UpgradeHandler",
    "build_context",
    "start_in_fresh_context",
]

SERVER_NAME = b"asgi-worker"


class ServedConnection(Protocol):
    """What the server does with an open connection (``HttpConnection``, ``WebSocketConnection``)."""

    deadline: float  # loop time at which ``deadline_passed`` is due; 0.0 for none

    def deadline_passed(self) -> None: ...
    def shutdown(self) -> None: ...
    def abort(self) -> None: ...


class UpgradeHandler(Protocol):
    """The WebSocket side, as the HTTP connection sees it (``ws.connection.WsSettings``)."""

    def take_over(
        self,
        ctx: ServerContext,
        transport: asyncio.Transport,
        head: RequestHead,
        facts: ConnectionFacts,
        rest: bytes,
    ) -> None:
        """Serve the handshake ``head`` on ``transport`` from now on; ``rest`` are the bytes after it."""

    def take_over_stream(
        self,
        ctx: ServerContext,
        connection: ServedConnection,
        transport: asyncio.BaseTransport,
        opened: StreamOpened,
        facts: ConnectionFacts,
    ) -> None:
        """Serve the RFC 8441 extended CONNECT ``opened`` (``:protocol`` set) of the HTTP/2
        ``connection`` (an ``http2.connection.Http2Connection``) as a WebSocket from now on
        (``http2.tunnel``); ``transport`` is the connection's own."""


class StreamTunnel(Protocol):
    """An HTTP/2 stream the WebSocket side serves (``http2.tunnel.TunnelStream``), as its connection
    sees it: no ``HttpCycle``; the stream's DATA and END_STREAM go here."""

    def received(self, data: bytes, flow_length: int) -> None: ...
    def ended(self) -> None: ...


class RequestHooks(Protocol):
    """Calls around each HTTP request (gunicorn's ``pre_request``/``post_request``); None when no hook
    is configured, so a server without them pays one attribute test per request."""

    def started(self, cycle: HttpCycle) -> None:
        """The request's app call is about to start."""

    def finished(self, cycle: HttpCycle, seconds: float) -> None:
        """The request's app call has ended, ``seconds`` after its head arrived."""


class ServerState:
    """Live counters of one server, shared with its connections (uvicorn's ``ServerState``).

    ``connections`` holds the open protocol instances, ``tasks`` the running app tasks,
    ``total_requests`` counts every request started; ``draining`` is set once a graceful stop began.
    ``counts`` are the always-kept counters, ``histogram`` the per-request ones when metrics are on.
    """

    def __init__(self, metrics: bool = False) -> None:
        self.total_requests = 0
        self.counts = ServerCounts()
        self.histogram = RequestHistogram() if metrics else None
        self.connections: set[ServedConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.default_headers: list[tuple[bytes, bytes]] = []
        self.draining = False
        self.drained: asyncio.Event | None = None

    def snapshot(self) -> dict[str, Any]:
        """Everything counted so far (``metrics.counts.snapshot``); callable from another thread."""
        histogram = self.histogram
        finished = histogram.finished if histogram is not None else self.total_requests
        active = max(0, self.total_requests - finished - self.counts.refused)
        return snapshot(self.counts, histogram, len(self.connections), active)


@dataclass(frozen=True, eq=False)
class ServerContext:
    """Settings and shared objects the connections of one server read on every request."""

    app: ASGIApp
    state: ServerState
    loop: asyncio.AbstractEventLoop
    defaults: DefaultHeaderBlock
    access_log: AccessLog
    parser_class: ParserFactory
    limits: RequestLimits
    root_path: str
    lifespan_state: dict[str, Any]
    timeout_keep_alive: float
    timeout_request_header: float
    timeout_request_body: float
    limit_concurrency: int | None
    max_requests: int | None  # limit_max_requests plus this process's own jitter
    proxy: ProxyTrust | None
    tls: TlsFacts | None  # None: plain TCP
    ws: UpgradeHandler | None  # None: upgrade requests are served as plain HTTP
    trace: bool  # --log-level trace: log connections made and lost
    on_limit_reached: Callable[[], None]
    drain_idle_grace: float  # seconds an idle keep-alive connection stays open while draining
    reset_contextvars: bool  # each app task starts in a fresh contextvars.Context (uvicorn's flag)
    eager_start: bool  # --eager-start on Python 3.12+: http/connection.py, _run_deferred
    disconnect_grace: float | None  # cancel an app call this long after its client left; None: never
    hooks: RequestHooks | None  # pre_request/post_request under gunicorn; None: none configured
    clock: Clock = field(default_factory=Clock)
    http2: Http2Limits | None = None  # --http2: the limits of each HTTP/2 connection; None: HTTP/1.1 only
    # Read on every connection or request, so kept here rather than behind a property:
    connections: set[ServedConnection] = field(init=False)  # state.connections
    tasks: set[asyncio.Task[None]] = field(init=False)  # state.tasks
    counts: ServerCounts = field(init=False)  # state.counts
    histogram: RequestHistogram | None = field(init=False)  # state.histogram: None when metrics are off
    timed: bool = field(init=False)  # requests are timed: for the access log or the histogram
    limited: bool = field(init=False)  # a limit is set: only then are the limit checks paid for
    batch: ResponseBatch = field(init=False)  # app calls about to run, responses held for them

    def __post_init__(self) -> None:
        object.__setattr__(self, "connections", self.state.connections)
        object.__setattr__(self, "tasks", self.state.tasks)
        object.__setattr__(self, "counts", self.state.counts)
        object.__setattr__(self, "histogram", self.state.histogram)
        object.__setattr__(
            self,
            "timed",
            self.access_log.enabled or self.state.histogram is not None or self.hooks is not None,
        )
        object.__setattr__(
            self, "limited", self.max_requests is not None or self.limit_concurrency is not None
        )
        object.__setattr__(self, "batch", ResponseBatch())

    def request_started(self) -> None:
        """Count a request; the one that reaches ``limit_max_requests`` starts the stop (or asks the
        supervisor for a replacement). Requests after it are still served, with ``connection: close``
        once the drain has begun: refusing them would reset a keep-alive client mid-request."""
        state = self.state
        state.total_requests += 1
        if state.total_requests == self.max_requests:
            self.on_limit_reached()

    def over_concurrency(self) -> bool:
        """True when ``limit_concurrency`` says to answer 503 instead of running the app."""
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit)

    def cycle_finished(self, cycle: HttpCycle) -> None:
        """An HTTP request's app task is ending: count it (metrics on), then ``task_finished``."""
        histogram = self.histogram
        hooks = self.hooks
        if histogram is not None or hooks is not None:
            end = perf_counter()
            if histogram is not None:
                histogram.record(cycle, end)
            if hooks is not None:
                hooks.finished(cycle, end - cycle.start_time)
        state = self.state  # task_finished's lines, inlined: this runs once per request
        state.tasks.discard(cycle.task)
        if state.draining:
            self._check_drained()

    def task_finished(self, task: asyncio.Task[None] | None) -> None:
        """An app task is ending: forget it, and wake ``wait_drained`` if it was the last thing running."""
        state = self.state
        state.tasks.discard(task)
        if state.draining:
            self._check_drained()

    def connection_closed(self, connection: ServedConnection) -> None:
        """Forget a connection; wakes ``wait_drained`` when it was the last thing running."""
        state = self.state
        state.connections.discard(connection)
        if state.draining:
            self._check_drained()

    def _check_drained(self) -> None:
        state = self.state
        if not state.connections and not state.tasks and state.drained is not None:
            state.drained.set()

    async def wait_drained(self) -> None:
        """Return once no connection is open and no app task runs. Sets ``state.draining``."""
        state = self.state
        state.draining = True
        state.drained = asyncio.Event()
        self._check_drained()
        await state.drained.wait()


def start_in_fresh_context(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
) -> asyncio.Task[None]:
    """``loop.create_task(coro)`` in an empty ``contextvars.Context``."""
    if sys.version_info >= (3, 11):
        return loop.create_task(coro, context=contextvars.Context())
    return contextvars.Context().run(loop.create_task, coro)


def max_requests_of(config: Config) -> int | None:
    """``limit_max_requests`` plus a jitter drawn now, in this process: each worker (and each
    replacement) draws its own, so recycling is staggered even when the app was preloaded."""
    limit = config.limit_max_requests
    if limit is not None and config.limit_max_requests_jitter:
        limit += random.randint(0, config.limit_max_requests_jitter)
    return limit


def default_header_block(config: Config) -> tuple[DefaultHeaderBlock, list[tuple[bytes, bytes]]]:
    """The default header block and the static headers it holds (``server`` and ``--header`` ones)."""
    extra = config.encoded_headers
    server = next((value for name, value in extra if name == b"server"), SERVER_NAME)
    extra = [(name, value) for name, value in extra if name != b"server"]
    block = DefaultHeaderBlock(server if config.server_header else None, extra)
    return block, ([(b"server", server)] if config.server_header else []) + extra


def build_context(
    config: Config,
    *,
    app: ASGIApp,
    state: ServerState,
    defaults: DefaultHeaderBlock,
    access_log: AccessLog,
    lifespan_state: dict[str, Any],
    ws: UpgradeHandler | None,
    trace: bool,
    on_limit_reached: Callable[[], None],
    drain_idle_grace: float,
    hooks: RequestHooks | None = None,
) -> ServerContext:
    """The context of a server about to listen. Call on the serving loop, after ``config.load()``."""
    assert config.parser_class is not None, "Config.load() first"
    return ServerContext(
        app=app,
        state=state,
        loop=asyncio.get_running_loop(),
        defaults=defaults,
        access_log=access_log,
        parser_class=config.parser_class,
        limits=config.request_limits,
        root_path=config.root_path,
        lifespan_state=lifespan_state,
        timeout_keep_alive=config.timeout_keep_alive,
        timeout_request_header=config.timeout_request_header,
        timeout_request_body=config.timeout_request_body,
        limit_concurrency=config.limit_concurrency,
        max_requests=max_requests_of(config),
        proxy=ProxyTrust(config.forwarded_allow_ips or [], config.secure_scheme_headers)
        if config.proxy_headers
        else None,
        tls=TlsFacts(config.ssl, config.ssl_certfile) if config.ssl is not None else None,
        ws=ws,
        trace=trace,
        on_limit_reached=on_limit_reached,
        drain_idle_grace=drain_idle_grace,
        reset_contextvars=config.reset_contextvars,
        eager_start=config.eager_start and sys.version_info >= (3, 12),
        disconnect_grace=config.disconnect_grace_period,
        hooks=hooks,
        http2=Http2Limits(
            max_concurrent_streams=config.http2_max_concurrent_streams,
            # RFC 8441 WebSockets over HTTP/2, offered with WebSockets on (--limit-request-body
            # does not apply to a tunnel's bytes; --ws-max-size bounds its messages).
            enable_connect_protocol=ws is not None,
        )
        if config.http2
        else None,
    )
