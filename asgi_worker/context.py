"""What every connection of one server shares, gathered once so the hot path reads attributes only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from asgi_worker.accesslog import AccessLog
from asgi_worker.clock import Clock
from asgi_worker.http.limits import HeadLimits
from asgi_worker.http.proxy import ProxyTrust
from asgi_worker.http.response import DefaultHeaderBlock
from asgi_worker.tls import TlsFacts
from asgi_worker.types import ASGIApp

__all__ = ["ServerContext", "ServerState"]


class ServerState:
    """Live counters of one server, shared with its connections (uvicorn's ``ServerState``).

    ``connections`` holds the open protocol instances, ``tasks`` the running app tasks,
    ``total_requests`` counts every request started.
    """

    def __init__(self) -> None:
        self.total_requests = 0
        self.connections: set[Any] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.default_headers: list[tuple[bytes, bytes]] = []


class ServerContext:
    """Settings and shared objects the connections of one server read on every request."""

    def __init__(
        self,
        app: ASGIApp,
        state: ServerState,
        defaults: DefaultHeaderBlock,
        access_log: AccessLog,
        settings: Any,
    ) -> None:
        self.app = app
        self.state = state
        self.connections = state.connections
        self.tasks = state.tasks
        self.defaults = defaults
        self.access_log = access_log
        self.clock = Clock()
        self.loop = asyncio.get_running_loop()
        self.parser_class: Callable[[HeadLimits, bool], Any] = settings.parser_class
        self.limits: HeadLimits = settings.head_limits
        self.root_path: str = settings.root_path
        self.lifespan_state: dict[str, Any] = {}
        self.timeout_keep_alive: float = settings.timeout_keep_alive
        self.timeout_request_header: float = settings.timeout_request_header
        self.limit_concurrency: int | None = settings.limit_concurrency
        self.max_requests: int | None = settings.max_requests
        self.proxy: ProxyTrust | None = settings.proxy
        self.limited = self.max_requests is not None or self.limit_concurrency is not None
        self.draining = False
        self.tls: TlsFacts | None = None  # set when the server speaks TLS
        self.trace = False  # --log-level trace: log connections made and lost
        self.ws: Any = None  # ws.connection.WsSettings when WebSocket upgrades are served
        self.on_limit_reached: Callable[[], None] = lambda: None
        self.stop_at_limit = True  # False under a supervisor: it replaces us, we keep serving meanwhile
        self.drain_idle_grace = 0.0  # seconds an idle keep-alive connection stays open while draining
        self._drained: asyncio.Event | None = None

    def request_started(self) -> bool:
        """Count a request. False when the server is already past ``limit_max_requests``."""
        state = self.state
        if self.max_requests is not None and state.total_requests >= self.max_requests and self.stop_at_limit:
            return False
        state.total_requests += 1
        if state.total_requests == self.max_requests:
            self.on_limit_reached()
        return True

    def over_concurrency(self) -> bool:
        """True when ``limit_concurrency`` says to answer 503 instead of running the app."""
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit)

    def task_finished(self, task: asyncio.Task[None] | None) -> None:
        """An app task is ending: forget it, and wake ``wait_drained`` if it was the last thing running."""
        self.tasks.discard(task)
        if self.draining:
            self._check_drained()

    def connection_closed(self, connection: Any) -> None:
        """Forget a connection; wakes ``wait_drained`` when it was the last thing running."""
        self.connections.discard(connection)
        if self.draining:
            self._check_drained()

    def _check_drained(self) -> None:
        if not self.connections and not self.tasks and self._drained is not None:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Return once no connection is open and no app task runs. Sets ``draining``."""
        self.draining = True
        self._drained = asyncio.Event()
        self._check_drained()
        await self._drained.wait()
