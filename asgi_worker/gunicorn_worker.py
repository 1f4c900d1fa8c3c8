"""``gunicorn -k asgi_worker.Worker app:app``: our server inside gunicorn's arbiter, on its sockets.

Rules (what gunicorn's own workers do, which UvicornWorker misses):
- Settings come from gunicorn's config and mean what they mean there (``config_kwargs`` below);
  ours that gunicorn lacks (loop, parser, ws, lifespan, timeouts, the body limit) come from
  ``ASGI_WORKER_<NAME>`` variables (in gunicorn's environment or its ``-e``/``raw_env``) or a
  subclass's ``CONFIG_KWARGS``.
- The heartbeat (``notify``) comes from the event loop's tick, so a blocked loop stops it and
  gunicorn's ``timeout`` catches the worker; its SIGABRT then dumps our stack and calls
  ``worker_abort``. The tick also notices the arbiter's death and stops the worker.
- SIGTERM is graceful (bounded by ``graceful_timeout``); SIGINT and SIGQUIT call ``worker_int``
  and stop at once, cancelling in-flight work; SIGUSR1 reopens gunicorn's log files.
- Access lines go through gunicorn's logger (``access_log_format`` with all its atoms, and
  ``--statsd-host`` metrics); our error log goes to gunicorn's error handlers. Metrics stay on
  gunicorn's statsd: the arbiter is gunicorn's, so there is no supervisor of ours to collect
  across workers, and ``ASGI_WORKER_CONTROL_BIND`` / ``ASGI_WORKER_SHUTDOWN_DELAY`` are ignored
  with one warning (``IGNORED_SETTINGS``).
- A lifespan startup failure exits with gunicorn's WORKER_BOOT_ERROR (3), so the arbiter stops
  with "Worker failed to boot" instead of forking again. Returning normally lets the arbiter run
  ``worker_exit``; ``--reload`` stops the server from the reloader thread (thread-safe), and the
  arbiter forks a fresh worker with the new code.
This is the only module that imports gunicorn.
"""

from __future__ import annotations

import datetime
import faulthandler
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from gunicorn.reloader import reloader_engines
from gunicorn.sock import ssl_context
from gunicorn.workers.base import Worker as BaseWorker

from asgi_worker.cli import options_from_environment
from asgi_worker.config import Config
from asgi_worker.exitcodes import BOOT_ERROR
from asgi_worker.log import request_target
from asgi_worker.loops import loop_factory, run_on_new_loop
from asgi_worker.server import DRAIN_IDLE_GRACE, Server

__all__ = ["H11Worker", "Worker"]

# Our settings that gunicorn has no name for: read from ASGI_WORKER_<NAME>.
ENVIRONMENT_SETTINGS = (
    "http2",
    "loop",
    "http",
    "ws",
    "ws_max_size",
    "ws_max_queue",
    "ws_ping_interval",
    "ws_ping_timeout",
    "ws_per_message_deflate",
    "lifespan",
    "interface",
    "wsgi_threads",
    "timeout_request_header",
    "timeout_request_body",
    "timeout_lifespan_startup",
    "timeout_lifespan_shutdown",
    "timeout_tls_handshake",
    "h11_max_incomplete_event_size",
    "limit_request_body",
    "server_header",
    "date_header",
    "headers",
    "limit_concurrency",
    "reset_contextvars",
    "eager_start",
    "root_path",
    "disconnect_grace_period",
    "proxy_protocol",
    "proxy_allow_ips",
)

# gunicorn's parser relaxations: ours reads RFC 9112 strictly and the same way in every front door,
# so these are not honoured; set, they get one warning at boot.
STRICT_PARSER_IGNORES = (
    "permit_obsolete_folding",
    "strip_header_spaces",
    "permit_unconventional_http_method",
    "permit_unconventional_http_version",
    "casefold_http_method",
    "header_map",
    "http_parser",
)

# gunicorn's settings for its own ASGI worker, and ours they set. When both are given, gunicorn's
# wins if it differs from gunicorn's default (it was given on gunicorn's command line or config
# file: the more explicit place), else ASGI_WORKER_<NAME> does.
GUNICORN_ASGI_SETTINGS = {
    "asgi_loop": "loop",
    "asgi_lifespan": "lifespan",
    "asgi_disconnect_grace_period": "disconnect_grace_period",
    "websocket_max_message_size": "ws_max_size",
    "root_path": "root_path",
    "proxy_protocol": "proxy_protocol",
    "proxy_allow_ips": "proxy_allow_ips",
    "http2_max_concurrent_streams": "http2_max_concurrent_streams",
}

# gunicorn's HTTP/2 tuning we do not take (our windows and frame size are fixed, http2/settings.py;
# the header list follows --h11-max-incomplete-event-size): set, they get one warning at boot.
HTTP2_TUNING_IGNORES = ("http2_initial_window_size", "http2_max_frame_size", "http2_max_header_list_size")

# Ours that cannot apply under gunicorn's arbiter: set, they get one warning at boot.
IGNORED_SETTINGS = {
    "control_bind": "metrics stay on gunicorn's --statsd-host; the control listener is asgi-supervise's",
    "shutdown_delay": "gunicorn's arbiter decides when workers stop",
}


def config_kwargs(cfg: Any, max_requests: int, environ: dict[str, Any] | None = None) -> dict[str, Any]:
    """gunicorn's settings, and ours from ``environ`` (``options_from_environment``), as ``Config``
    keyword arguments: the whole mapping, in one place (README.md, "gunicorn", lists it).

    ``timeout`` needs no setting (the loop's tick notifies the arbiter), logging is gunicorn's own
    (``_hand_over_logging``, ``GunicornAccessLog``), and ``forwarder_headers`` does not apply: it
    lets proxies set WSGI environ keys, which an ASGI scope does not have. ``worker_connections``
    is not a limit here: gunicorn documents it for its gthread and gevent workers only and its own
    ASGI worker does not enforce it, and as a concurrency limit (503 past 1,000 open connections by
    default) it refused idle keep-alive and WebSocket clients that cost an asyncio worker a few KiB
    each. ``ASGI_WORKER_LIMIT_CONCURRENCY`` sets a limit for those who want one.
    """
    kwargs: dict[str, Any] = {
        "timeout_keep_alive": cfg.keepalive,
        "timeout_graceful_shutdown": cfg.graceful_timeout,
        "limit_request_line": cfg.limit_request_line,
        "limit_request_fields": cfg.limit_request_fields,
        "limit_request_field_size": cfg.limit_request_field_size,
        "forwarded_allow_ips": cfg.forwarded_allow_ips,
        "secure_scheme_headers": dict(cfg.secure_scheme_headers or {}),
        "proxy_headers": True,
        "backlog": cfg.backlog,
        "log_config": None,  # gunicorn's logger is configured already; ours hands over to it
        "access_log": False,  # replaced by gunicorn's access logger (GunicornAccessLog)
    }
    environ = environ or {}
    settings = getattr(cfg, "settings", {})
    for theirs, ours in GUNICORN_ASGI_SETTINGS.items():
        if theirs not in settings:  # an older gunicorn
            continue
        value = getattr(cfg, theirs)
        if ours in environ and value == settings[theirs].default:
            continue
        kwargs[ours] = value
    if "h2" in (getattr(cfg, "http_protocols", None) or ()):
        # gunicorn's http_protocols: h2 over TLS (ALPN); in cleartext only where its http2_cleartext
        # allows the preface ("upgrade", h2c's Upgrade dance, was removed by RFC 9113: not served).
        cleartext = getattr(cfg, "http2_cleartext", "off") in ("prior-knowledge", "both")
        kwargs["http2"] = bool(cfg.is_ssl) or cleartext
    if cfg.threads > 1:  # given (the default is 1): gunicorn's gthread pool size, for a WSGI app's calls
        kwargs["wsgi_threads"] = cfg.threads
    kwargs.update({name: value for name, value in environ.items() if name not in kwargs})
    if kwargs.get("root_path"):
        kwargs["root_path"] = kwargs["root_path"].rstrip("/")
    if isinstance(kwargs.get("proxy_protocol"), bool):  # gunicorn before 24.1: a switch, "auto" when on
        kwargs["proxy_protocol"] = "auto" if kwargs["proxy_protocol"] else "off"
    if max_requests < sys.maxsize:
        kwargs["limit_max_requests"] = max_requests  # gunicorn already added its jitter
    if cfg.is_ssl:
        kwargs["ssl_context_factory"] = lambda: ssl_context(cfg)
    return kwargs


class GunicornAccessLog:
    """Access lines through gunicorn's logger: its format atoms, its handlers, statsd metrics."""

    def __init__(self, log: Any, cfg: Any) -> None:
        self._log = log
        self.enabled = bool(getattr(log, "access_log_enabled", True) or getattr(cfg, "statsd_host", None))

    def start(self) -> None:
        """Nothing to start: gunicorn's handlers are in place."""

    def stop(self) -> None:
        """Nothing to stop."""

    def log(self, cycle: Any, duration: float) -> None:
        """Log one completed response with gunicorn's ``access(resp, req, environ, request_time)``."""
        scope = cycle.scope
        environ = _access_environ(scope)
        request = _Message([(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]])
        response = _Message(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in cycle.response_headers],
            status=cycle.status,
            sent=cycle.bytes_sent,
        )
        self._log.access(response, request, environ, datetime.timedelta(seconds=duration))


class _Message:
    """The shape of gunicorn's request and response objects that its logger reads."""

    __slots__ = ("headers", "sent", "status")

    def __init__(self, headers: list[tuple[str, str]], status: int = 0, sent: int = 0) -> None:
        self.headers = headers
        self.status = status
        self.sent = sent


def _access_environ(scope: dict[str, Any]) -> dict[str, Any]:
    client = scope.get("client")
    environ = {
        "REQUEST_METHOD": scope["method"],
        "RAW_URI": request_target(scope),
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/2.0" if scope["http_version"] == "2" else f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0] if client else "-",
    }
    for name, value in scope["headers"]:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text  # repeated: joined, as gunicorn
    return environ


class HookRequest:
    """The ``req`` gunicorn's ``pre_request``/``post_request`` hooks get: the attributes of gunicorn's
    own request objects that hooks read, from the ASGI scope. A plain object, so a hook may keep
    its own attributes on it (a start time, say) from ``pre_request`` to ``post_request``."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: str = scope["query_string"].decode("latin-1")
        self.uri: str = request_target(scope)
        self.version = tuple(int(part) for part in scope["http_version"].split("."))
        self.scheme: str = scope["scheme"]
        client = scope.get("client")
        self.remote_addr = client[0] if client else None
        self._headers: list[tuple[str, str]] | None = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        """(UPPER-CASE name, value) pairs, as gunicorn gives them; built on first use."""
        if self._headers is None:
            self._headers = [
                (name.decode("latin-1").upper(), value.decode("latin-1"))
                for name, value in self.scope["headers"]
            ]
        return self._headers


class HookResponse(_Message):
    """The ``resp`` of ``post_request``: status, headers as sent, body bytes sent, and ``duration``
    (seconds from the request head to the end of the app's call)."""

    __slots__ = ("duration", "response_length", "status_code")

    def __init__(self, headers: list[tuple[str, str]], status: int, sent: int, duration: float) -> None:
        super().__init__(headers, status, sent)
        self.status_code = status
        self.response_length = sent
        self.duration = duration


class GunicornRequestHooks:
    """gunicorn's ``pre_request(worker, req)`` and ``post_request(worker, req, environ, resp)``, once
    per HTTP request (never per WebSocket message). A hook that raises is logged and the request
    goes on. ``of(worker)`` is None when neither hook would do anything, so the server pays nothing.
    """

    def __init__(self, worker: Any, pre: Any, post: Any) -> None:
        self._worker = worker
        self._pre = pre
        self._post = post
        self._requests: dict[int, HookRequest] = {}  # id(cycle) -> its request, until it finishes

    @classmethod
    def of(cls, worker: Any) -> GunicornRequestHooks | None:
        cfg = worker.cfg
        settings = getattr(cfg, "settings", {})
        pre, post = cfg.pre_request, cfg.post_request
        # gunicorn's default pre_request only logs the request at debug level; its post_request
        # does nothing. Skipped when they are the defaults (and debug is off), as gunicorn does.
        if "pre_request" in settings and pre is settings["pre_request"].default:
            error_log = getattr(worker.log, "error_log", None)
            pre = pre if error_log is not None and error_log.isEnabledFor(logging.DEBUG) else None
        if "post_request" in settings and post is settings["post_request"].default:
            post = None
        return None if pre is None and post is None else cls(worker, pre, post)

    def started(self, cycle: Any) -> None:
        request = self._requests[id(cycle)] = HookRequest(cycle.scope)
        if self._pre is not None:
            try:
                self._pre(self._worker, request)
            except Exception:
                self._worker.log.exception("Exception in pre_request hook")

    def finished(self, cycle: Any, seconds: float) -> None:
        request = self._requests.pop(id(cycle), None)
        if self._post is None or request is None:
            return
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in cycle.response_headers]
        response = HookResponse(headers, cycle.status, cycle.bytes_sent, seconds)
        try:
            self._post(self._worker, request, _access_environ(cycle.scope), response)
        except Exception:
            self._worker.log.exception("Exception in post_request hook")


class _ArbiterServer(Server):
    """Our server as a gunicorn worker runs it: heartbeats, the arbiter's signals, its access log."""

    def __init__(self, config: Config, worker: Worker) -> None:
        super().__init__(config)
        self._worker = worker
        self.drain_idle_grace = DRAIN_IDLE_GRACE  # the other workers (or the next one) keep listening
        self.limit_reached_callback = self._recycle

    def _recycle(self) -> None:
        """``max_requests`` reached: a normal recycle, logged at info in gunicorn's words."""
        self._worker.log.info("Autorestarting worker after current request.")
        self._worker.alive = False
        self.should_exit = True

    def make_access_log(self) -> Any:
        return GunicornAccessLog(self._worker.log, self._worker.cfg)

    def make_request_hooks(self) -> GunicornRequestHooks | None:
        return GunicornRequestHooks.of(self._worker)

    def on_tick(self) -> None:
        super().on_tick()
        worker = self._worker
        worker.notify()
        if worker.ppid != os.getppid() and not self.should_exit:
            worker.log.info("Parent changed, shutting down: %s", worker)
            self.should_exit = True

    def signal_handlers(self) -> dict[signal.Signals, Callable[[], None]]:
        """SIGTERM graceful, SIGINT/SIGQUIT quick (``worker_int``), SIGUSR1 reopen gunicorn's logs."""
        return {
            signal.SIGTERM: self._graceful,
            signal.SIGINT: self._quick,
            signal.SIGQUIT: self._quick,
            signal.SIGUSR1: self._worker.log.reopen_files,
        }

    def _graceful(self) -> None:
        self._worker.alive = False
        self.should_exit = True

    def _quick(self) -> None:
        worker = self._worker
        worker.alive = False
        worker.cfg.worker_int(worker)
        self.should_exit = True
        self.force_exit = True
        self.handle_exit(signal.SIGQUIT, None)  # wakes the drain so that it stops waiting now


class Worker(BaseWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """The gunicorn worker class: httptools and uvloop when installed (``--http/--loop auto``)."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {}
    """Settings a subclass fixes (e.g. ``{"loop": "asyncio"}``); they win over the environment."""

    def init_process(self) -> None:
        """In the forked worker: our own version of gunicorn's steps (env, owner, signals, reloader,
        app import, post_worker_init), then serve. The reloader stops the server rather than calling
        ``sys.exit`` from its thread, which would end only that thread."""
        from gunicorn import util

        for key, value in (self.cfg.env or {}).items():
            os.environ[key] = value
        util.set_owner_process(self.cfg.uid, self.cfg.gid, initgroups=self.cfg.initgroups)
        util.seed()
        for sock in self.sockets:
            util.close_on_exec(sock)
        util.close_on_exec(self.tmp.fileno())
        self.log.close_on_exec()
        self.init_signals()
        self._server: _ArbiterServer | None = None
        if self.cfg.reload:
            self.log.warning("Reloader is on. Use in development only!")
            self.reloader = reloader_engines[self.cfg.reload_engine](
                extra_files=self.cfg.reload_extra_files, callback=self._code_changed
            )
        self.load_wsgi()
        if self.reloader:
            self.reloader.start()
        self.cfg.post_worker_init(self)
        self.booted = True
        self.run()

    def init_signals(self) -> None:
        """Default handlers, except SIGABRT: gunicorn's timeout kill, handled even on a blocked loop."""
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGABRT, self._abort)
        signal.signal(signal.SIGWINCH, signal.SIG_IGN)

    def _abort(self, signum: int, frame: FrameType | None) -> None:
        faulthandler.dump_traceback(all_threads=True)  # what blocked the loop, on stderr
        self.alive = False
        self.cfg.worker_abort(self)
        sys.exit(1)

    def _code_changed(self, filename: str) -> None:
        self.log.info("Worker reloading: %s modified", filename)
        self.alive = False
        self.cfg.worker_int(self)
        if self._server is not None:
            self._server.should_exit = True  # safe from the reloader's thread

    def _warn_what_cannot_apply(self) -> None:
        """gunicorn settings we cannot honour: HTTP/2 and the parser relaxations get a warning."""
        cfg = self.cfg
        settings = getattr(cfg, "settings", {})
        for name in STRICT_PARSER_IGNORES:
            if name in settings and settings[name].value != settings[name].default:
                self.log.warning("%s is ignored: asgi_worker reads HTTP/1.1 strictly (RFC 9112)", name)
        protocols = list(getattr(cfg, "http_protocols", None) or ["h1"])
        if "h1" not in protocols:
            self.log.warning(
                "http_protocols %s: %s serves HTTP/1.1 too", ",".join(protocols), type(self).__name__
            )
        if "h2" in protocols:
            cleartext = getattr(cfg, "http2_cleartext", "off")
            if cleartext in ("upgrade", "both"):
                self.log.warning(
                    "http2_cleartext %s: the Upgrade: h2c dance is not served (RFC 9113)", cleartext
                )
            if not cfg.is_ssl and cleartext == "off":
                self.log.warning("http_protocols h2 without TLS or http2_cleartext: HTTP/1.1 only")
            for name in HTTP2_TUNING_IGNORES:
                if name in settings and settings[name].value != settings[name].default:
                    self.log.warning("%s is ignored: asgi_worker's HTTP/2 windows and sizes are fixed", name)

    def run(self) -> None:
        """Serve the arbiter's sockets until told to stop; exit 3 if startup failed."""
        kwargs = {
            **config_kwargs(self.cfg, self.max_requests, options_from_environment(ENVIRONMENT_SETTINGS)),
            **self.CONFIG_KWARGS,
        }
        _hand_over_logging(self.log)
        self._warn_what_cannot_apply()
        for name, why in IGNORED_SETTINGS.items():
            if options_from_environment([name]):
                self.log.warning("ASGI_WORKER_%s is ignored under gunicorn: %s", name.upper(), why)
        config = Config(self.wsgi, **kwargs)
        server = self._server = _ArbiterServer(config, self)
        # Copies: the server closes what it serves when it stops, and gunicorn closes its own
        # sockets again on exit (one "Bad file descriptor" line per recycled worker otherwise).
        sockets = [_socket_of(listener).dup() for listener in self.sockets]
        run_on_new_loop(server.serve(sockets=sockets), loop_factory(config.loop))
        if not server.started:
            sys.exit(_boot_error())


class H11Worker(Worker):
    """The pure-Python choice: h11 and the asyncio loop."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "asyncio", "http": "h11"}


def _boot_error() -> int:
    """The exit code that makes gunicorn's arbiter stop ("Worker failed to boot") instead of forking again."""
    return int(getattr(Arbiter, "WORKER_BOOT_ERROR", BOOT_ERROR))


def _socket_of(listener: Any) -> socket.socket:
    """The ``socket.socket`` inside one of gunicorn's listener wrappers."""
    return listener.sock if hasattr(listener, "sock") else listener  # type: ignore[no-any-return]


def _hand_over_logging(log: Any) -> None:
    """Send asgi_worker's error log to gunicorn's error handlers, at gunicorn's level."""
    error_log = log.error_log
    ours = logging.getLogger("asgi_worker")
    ours.handlers = list(error_log.handlers)
    ours.setLevel(error_log.level)
    ours.propagate = False
