"""``Server``: one process serving one app on its listening sockets (uvicorn's ``Server`` API).

Lifecycle: ``serve`` = ``startup`` (lifespan startup, listeners) -> ``main_loop`` (waits for the exit
event; nothing polls) -> ``shutdown``. Graceful shutdown, in order:
1. stop accepting (close listeners);
2. close idle connections now; let each busy one finish its response, then close it;
3. wait for connections and app tasks to finish, up to ``timeout_graceful_shutdown`` (or until a
   second signal sets ``force_exit``), then cancel the stragglers;
4. run lifespan shutdown (after the drain, so requests can still use what startup created).
With ``--shutdown-delay`` the stop first waits that long, serving as usual, while the control
listener's ``/readyz`` already answers 503 (a load balancer stops sending; then we drain).
With ``--control-bind`` a thread serves ``/metrics``, ``/livez``, ``/readyz`` (``control/``),
so they answer while the event loop is busy or blocked.
A periodic tick (``on_tick``) refreshes the Date header and sweeps connection deadlines.
Signal handlers only record (ARCHITECTURE.md, "Signal handlers only record"); the loop acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from types import FrameType
from typing import Any

from asgi_worker.clock import http_date, tick_interval
from asgi_worker.config import Config
from asgi_worker.context import (
    RequestHooks,
    ServerContext,
    ServerState,
    build_context,
    default_header_block,
)
from asgi_worker.errors import StartupError
from asgi_worker.http.connection import HttpConnection
from asgi_worker.http.proxy import ProxyTrust
from asgi_worker.lifespan import Lifespan
from asgi_worker.listeners import open_listeners, socket_url
from asgi_worker.log import AccessLog, TracingApp, log_started, pid_line, tracing_enabled
from asgi_worker.loops import loop_factory, run_on_new_loop
from asgi_worker.proxied import ProxiedListener

__all__ = ["DRAIN_IDLE_GRACE", "HANDLED_SIGNALS", "Server", "ServerState"]

logger = logging.getLogger("asgi_worker.error")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Seconds an idle keep-alive connection of a draining worker stays open when other processes keep
# listening (a supervisor's or gunicorn's workers), so that a client's next request gets an answer
# with connection: close rather than a socket closed under it (a reset it may not retry).
DRAIN_IDLE_GRACE = 1.0


class Server:
    """Runs a ``Config`` until told to exit. Set ``should_exit`` (from any thread) to stop gracefully."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = ServerState(metrics=config.control_bind is not None)
        self.started = False
        self.last_tick = 0.0  # time.monotonic() of the last tick (the control listener's /livez)
        # A supervisor's worker clears these two: its supervisor serves the control listener and
        # waits the shutdown delay itself.
        self.serve_control = True
        self.shutdown_delay = config.shutdown_delay
        self._control: Any = None  # control.listener.ControlThread while serving
        self._delay_over: asyncio.Event | None = None  # set during the shutdown delay
        self._sockets: list[socket.socket] = []
        self.force_exit = False
        self._should_exit = False
        self._exit_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[asyncio.base_events.Server | ProxiedListener] = []
        self._captured_signals: list[signal.Signals] = []
        self._ctx: ServerContext | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._force_event: asyncio.Event | None = None
        self._static_headers: list[tuple[bytes, bytes]] = []
        self._tick_interval = 1.0
        self.lifespan: Lifespan | None = None
        self._app: Any = None
        self._trace = False
        # Set by a supervisor's worker before serving: reaching limit_max_requests calls this instead
        # of stopping (the supervisor starts a replacement first, then stops us gracefully).
        self.limit_reached_callback: Callable[[], None] | None = None
        # Seconds an idle keep-alive connection is kept during a graceful stop, so the client's next
        # request is answered (with connection: close) instead of meeting a closed socket. Only
        # useful when other processes keep listening (a supervisor's workers); 0 closes at once.
        self.drain_idle_grace = 0.0

    @property
    def servers(self) -> list[asyncio.base_events.Server | ProxiedListener]:
        """The servers listening once started (uvicorn's attribute), e.g. to read a port 0 bind from
        their ``sockets``: asyncio's, or ``ProxiedListener`` with ``--proxy-protocol``."""
        return list(self._listeners)

    @property
    def should_exit(self) -> bool:
        """True once a graceful stop was asked for. Setting it wakes ``main_loop``, from any thread."""
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        loop = self._loop
        if value and self._exit_event is not None and loop is not None and not loop.is_closed():
            if _on_loop_thread(loop):
                self._exit_event.set()
            else:
                with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing to wake
                    loop.call_soon_threadsafe(self._exit_event.set)

    def run(self, sockets: Sequence[socket.socket] | None = None) -> None:
        """Serve on a new event loop of the configured kind until stopped."""
        self.config.load()
        run_on_new_loop(self.serve(sockets=sockets), loop_factory(self.config.loop))

    async def serve(self, sockets: Sequence[socket.socket] | None = None) -> None:
        """Serve on the running loop until stopped; signals are captured meanwhile."""
        with self.capture_signals():
            try:
                await self._serve(sockets)
            finally:
                if self._control is not None:
                    self._control.stop()
                    self._control = None
                    address = self.config.control_bind or ""
                    if address.startswith("unix:"):
                        with contextlib.suppress(OSError):
                            os.unlink(address[5:])

    async def _serve(self, sockets: Sequence[socket.socket] | None) -> None:
        config = self.config
        config.load()
        self._loop = asyncio.get_running_loop()
        self._exit_event = asyncio.Event()
        if self._should_exit:
            self._exit_event.set()
        pid_line("Started")
        if self.serve_control and config.control_bind is not None and not self._start_control():
            return
        await self.startup(sockets=sockets)
        if self.should_exit:
            return
        await self.main_loop()
        await self._delay_shutdown()
        await self.shutdown(sockets=sockets)
        pid_line("Finished")

    def _start_control(self) -> bool:
        """Bind and serve the control listener (before the app starts, so /livez answers meanwhile)."""
        from asgi_worker.control.endpoints import ProcessEndpoints
        from asgi_worker.control.listener import ControlListener, ControlThread
        from asgi_worker.listeners import bind_address, socket_url

        config = self.config
        assert config.control_bind is not None
        try:
            sock = bind_address(config.control_bind, 64, config.uds_mode)
        except StartupError as exc:
            logger.error("Control listener: %s", exc)
            self.should_exit = True
            return False
        self._control = ControlThread(ControlListener(sock, ProcessEndpoints(self)))
        self._control.start()
        logger.info("Control listener on %s (/metrics, /livez, /readyz)", socket_url(sock, "http"))
        return True

    def metrics_snapshot(self) -> dict[str, Any]:
        """Everything this server counted (``metrics.counts.snapshot``); safe from another thread."""
        return self.server_state.snapshot()

    def listening(self) -> tuple[list[socket.socket], list[str]]:
        """The listening sockets and how metrics name them."""
        scheme = "https" if self.config.is_ssl else "http"
        sockets = [sock for sock in self._sockets if sock.fileno() >= 0]
        return sockets, [socket_url(sock, scheme) for sock in sockets]

    async def _delay_shutdown(self) -> None:
        """``--shutdown-delay``: keep serving as usual (``/readyz`` says 503 already) before draining.
        A second signal ends the wait early (the drain is then graceful as usual; a third forces)."""
        delay = self.shutdown_delay
        if not delay or self.force_exit:
            return
        logger.info("Shutdown delay: serving %g s more before draining", delay)
        self._delay_over = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._delay_over.wait(), delay)
        self._delay_over = None

    async def startup(self, sockets: Sequence[socket.socket] | None = None) -> None:
        """Lifespan startup, then listen. On failure: log one line, set ``should_exit``, stay unstarted."""
        config = self.config
        assert config.loaded_app is not None
        self._trace = tracing_enabled()
        self._app = TracingApp(config.loaded_app) if self._trace else config.loaded_app
        self.lifespan = Lifespan(
            self._app,
            config.lifespan,
            config.timeout_lifespan_startup,
            config.timeout_lifespan_shutdown,
        )
        try:
            await self.lifespan.startup()
        except StartupError as exc:
            logger.error("%s", exc)
            logger.error("Application startup failed. Exiting.")
            await self.lifespan.shutdown()
            self.should_exit = True
            return
        try:
            owned = sockets is None
            listening = list(sockets) if sockets is not None else open_listeners(config)
        except StartupError as exc:
            logger.error("%s", exc)
            await self.lifespan.shutdown()
            self.should_exit = True
            return
        self._sockets = listening
        ctx = self._ctx = self._make_context(self.lifespan.state)
        if ctx.max_requests is not None:
            logger.debug("Process %d serves at most %d requests", os.getpid(), ctx.max_requests)
        loop = asyncio.get_running_loop()

        def factory() -> HttpConnection:
            return HttpConnection(ctx)

        handshake_timeout = config.timeout_tls_handshake if config.ssl is not None else None
        for sock in listening:
            if config.proxy_protocol != "off":
                self._listeners.append(self._proxied_listener(sock, ctx, handshake_timeout))
                continue
            self._listeners.append(
                await loop.create_server(
                    factory,
                    sock=sock,
                    backlog=config.backlog,
                    ssl=config.ssl,
                    ssl_handshake_timeout=handshake_timeout,
                    start_serving=True,
                )
            )
        self.on_tick()
        for sock in listening:
            if owned or sock.family in (socket.AF_INET, socket.AF_INET6):
                log_started(socket_url(sock, "https" if config.ssl else "http"))
        self.started = True

    def _proxied_listener(
        self, sock: socket.socket, ctx: ServerContext, handshake_timeout: float | None
    ) -> ProxiedListener:
        """``--proxy-protocol``: our own accept loop reads each header before HTTP or TLS starts."""
        config = self.config
        assert config.proxy_allow_ips is not None
        return ProxiedListener(
            sock,
            lambda client: HttpConnection(ctx, client),
            config.proxy_protocol,
            ProxyTrust(config.proxy_allow_ips),
            config.timeout_request_header,
            config.ssl,
            handshake_timeout,
        )

    def _make_context(self, lifespan_state: dict[str, Any]) -> ServerContext:
        config = self.config
        defaults, self._static_headers = default_header_block(config)
        self.server_state.default_headers = list(self._static_headers)
        access = self.make_access_log()
        access.start()
        ws = None
        timeouts = [config.timeout_keep_alive, config.timeout_request_header, config.timeout_request_body]
        if config.ws_enabled:
            from asgi_worker.ws.connection import CLOSE_TIMEOUT, WsSettings

            timeouts += [config.ws_ping_interval or 0.0, config.ws_ping_timeout or 0.0, CLOSE_TIMEOUT]
            ws = WsSettings(
                config.ws_max_size,
                config.ws_max_queue,
                config.ws_ping_interval or 0.0,
                config.ws_ping_timeout or 0.0,
                config.ws_per_message_deflate,
            )
        self._tick_interval = tick_interval(*timeouts)  # deadlines are swept this often
        return build_context(
            config,
            app=self._app,
            state=self.server_state,
            defaults=defaults,
            access_log=access,
            lifespan_state=lifespan_state,
            ws=ws,
            trace=self._trace,
            on_limit_reached=self.limit_reached_callback or self._max_requests_reached,
            drain_idle_grace=self.drain_idle_grace,
            hooks=self.make_request_hooks(),
        )

    def make_access_log(self) -> AccessLog:
        """The access log of this server; a subclass may return another with the same interface
        (``enabled``, ``start()``, ``stop()``, ``log(cycle, duration)``), as gunicorn's worker does."""
        return AccessLog(self.config.access_log, self.config.access_log_format)

    def make_request_hooks(self) -> RequestHooks | None:
        """Calls around each HTTP request; None here (gunicorn's worker returns its hooks)."""
        return None

    def _max_requests_reached(self) -> None:
        assert self._ctx is not None
        logger.warning("Maximum request limit of %d exceeded. Terminating process.", self._ctx.max_requests)
        self.should_exit = True

    async def main_loop(self) -> None:
        """Wait until ``should_exit`` is set (by a signal, ``limit_max_requests`` or the embedding code)."""
        assert self._exit_event is not None
        await self._exit_event.wait()

    def on_tick(self) -> None:
        """Periodic housekeeping: refresh the Date header, close connections past their deadline."""
        ctx = self._ctx
        if ctx is None:
            return
        self.last_tick = time.monotonic()
        loop = ctx.loop
        now = loop.time()
        wall = time.time()
        if ctx.clock.update(now, wall) and self.config.date_header:
            date = http_date(ctx.clock.wall_second)
            ctx.defaults.refresh(date)
            self.server_state.default_headers = [(b"date", date), *self._static_headers]
        for connection in [c for c in ctx.connections if c.deadline and c.deadline <= now]:
            connection.deadline_passed()
        # Wake at the sweep interval, and just after each second turns so the Date header is fresh.
        until_next_second = 1.0 - (wall % 1.0) + 0.001
        self._tick_handle = loop.call_at(now + min(self._tick_interval, until_next_second), self.on_tick)

    async def shutdown(self, sockets: Sequence[socket.socket] | None = None) -> None:
        """Stop accepting, drain, then lifespan shutdown; with ``timeout_graceful_shutdown`` all of it
        within that many seconds (lifespan shutdown gets what the drain left, at most its own timeout)."""
        logger.info("Shutting down")
        began = time.monotonic()
        ctx = self._ctx
        if ctx is not None:
            # Before the listeners close: a connection asyncio accepted just before is made after
            # the loop below, and must learn of the drain itself (HttpConnection.connection_made).
            ctx.state.draining = True
        for listener in self._listeners:
            listener.close()
        if ctx is not None:
            for connection in list(ctx.connections):
                connection.shutdown()
            await self._wait_drained(ctx)
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            ctx.access_log.stop()
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 1.0)
        if self.lifespan is not None and not self.force_exit:
            graceful = self.config.timeout_graceful_shutdown
            await self.lifespan.shutdown(None if graceful is None else graceful - (time.monotonic() - began))
        if self.config.uds and sockets is None:
            with contextlib.suppress(OSError):
                os.unlink(self.config.uds)

    async def _wait_drained(self, ctx: ServerContext) -> None:
        drained = asyncio.ensure_future(ctx.wait_drained())
        forced = asyncio.ensure_future(self._wait_forced())
        try:
            await asyncio.wait(
                {drained, forced},
                timeout=self.config.timeout_graceful_shutdown,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            forced.cancel()
        if drained.done():
            return
        drained.cancel()
        if ctx.tasks:
            why = "forced exit" if self.force_exit else "timeout graceful shutdown exceeded"
            logger.error("Cancel %d running task(s), %s", len(ctx.tasks), why)
        for task in list(ctx.tasks):
            task.cancel()
        for connection in list(ctx.connections):
            connection.abort()
        await asyncio.gather(*list(ctx.tasks), return_exceptions=True)
        ctx.tasks.clear()  # a task cancelled before its first step never ran its own cleanup

    async def _wait_forced(self) -> None:
        while not self.force_exit:
            self._force_event = asyncio.Event()
            await self._force_event.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Install ``signal_handlers()`` on the loop while serving; restore the previous handlers after.

        Signals that arrived are raised again on exit when the previous handler was Python code
        (SIGINT's default raises KeyboardInterrupt in the embedding program, as with uvicorn).
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        handlers = self.signal_handlers()
        previous = {sig: signal.getsignal(sig) for sig in handlers}
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, old)
        for sig in reversed(self._captured_signals):
            if callable(previous.get(sig)):
                signal.raise_signal(sig)

    def signal_handlers(self) -> dict[signal.Signals, Callable[[], None]]:
        """The handlers ``capture_signals`` installs: SIGINT/SIGTERM -> ``handle_exit``. Subclasses
        (a supervisor's or gunicorn's worker) return their own; each only sets flags."""
        return {sig: functools.partial(self.handle_exit, sig, None) for sig in HANDLED_SIGNALS}

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGINT/SIGTERM: graceful stop. A second one: stop waiting for in-flight work."""
        self._captured_signals.append(signal.Signals(sig))
        if self._delay_over is not None:  # within --shutdown-delay: a second signal ends it
            self._delay_over.set()
        elif self.should_exit:
            self.force_exit = True
            if self._force_event is not None:
                self._force_event.set()
        else:
            self.should_exit = True


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def run(app: Any, **kwargs: Any) -> None:
    """Serve ``app`` (an ASGI app or ``"module:attr"``) with ``Config(app, **kwargs)``; uvicorn's ``run``.

    Exits the process with code 3 when startup fails, and 1 when the app cannot be loaded.
    """
    from asgi_worker.errors import AppLoadError, ConfigError
    from asgi_worker.exitcodes import BOOT_ERROR

    config = Config(app, **kwargs)
    server = Server(config)
    try:
        server.run()
    except (AppLoadError, ConfigError) as exc:
        logging.getLogger("asgi_worker.error").error("%s", exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(BOOT_ERROR)
