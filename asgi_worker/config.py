"""``Config``: the settings of one server, each declared once; nothing happens until ``load()``.

Modelled on uvicorn's ``Config`` (same keyword names and defaults where uvicorn has them). Every
setting is one field below: ``setting(default, help, ...)`` also gives its command-line flag, its
environment variable, its choices and bounds (``options.py``), so ``cli.py`` and the validation in
``__post_init__`` read the same declaration. The constructor only stores and checks values, raising
``ConfigError`` naming the setting; ``load()`` configures logging and imports the app, in that order,
and resolves what the serving code reads (parser class, TLS context, WebSocket support).
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asgi_worker.envfile import load_env_file
from asgi_worker.errors import ConfigError
from asgi_worker.http.events import ParserFactory
from asgi_worker.http.limits import (
    DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
    DEFAULT_LIMIT_REQUEST_FIELDS,
    DEFAULT_LIMIT_REQUEST_HEAD,
    DEFAULT_LIMIT_REQUEST_LINE,
    RequestLimits,
)
from asgi_worker.listeners import check_bind_address
from asgi_worker.log import LOG_LEVELS, LOGGING_CONFIG, compile_access_format, configure_logging
from asgi_worker.options import (
    HttpName,
    InterfaceName,
    LifespanName,
    LogFormatName,
    LoopName,
    Option,
    ProxyProtocolName,
    WsName,
    check_settings,
    octal,
    options_of,
    setting,
    truthy,
    worker_count,
)
from asgi_worker.tls import TlsSettings, create_ssl_context
from asgi_worker.types import ASGIApp
from asgi_worker.wsgi import WSGI_THREADS

__all__ = ["OPTIONS", "Config"]

# A head that has started must be complete within this many seconds, and a new connection must
# start one. Apache's mod_reqtimeout allows 20-40 s for the header, nginx's client_header_timeout
# is 60 s; browsers send a whole head in one packet, so 20 s is generous and still stops slowloris.
DEFAULT_TIMEOUT_REQUEST_HEADER = 20.0
# A request body that has begun must not stall longer than this between two reads. nginx's
# client_body_timeout (also "between two successive read operations") is 60 s: a real upload, even
# over a poor mobile link, never goes a minute without a byte, while a dead client or a slow-loris
# one that dribbles a body is freed. Not counted while we stop reading because the app has not
# taken what is buffered, nor while the client waits for our "100 Continue".
DEFAULT_TIMEOUT_REQUEST_BODY = 60.0
# hypercorn bounds lifespan startup and shutdown at 60 s each; uvicorn does not bound them at all.
DEFAULT_TIMEOUT_LIFESPAN = 60.0
# A TLS handshake must finish within this many seconds. asyncio's default is 60 s, which lets a
# client that opens connections and never says hello hold each one for a minute; nginx gives the
# whole client header 60 s, Apache's mod_reqtimeout gives the handshake 5 s. A real client needs
# one or two round trips.
DEFAULT_TIMEOUT_TLS_HANDSHAKE = 10.0
# ssl.PROTOCOL_TLS_SERVER and ssl.CERT_NONE, the values uvicorn's --ssl-version/--ssl-cert-reqs
# default to; numbers here so that declaring them does not need ssl.
DEFAULT_SSL_VERSION = 17
DEFAULT_SSL_CERT_REQS = 0
# A UNIX socket anyone on the host may connect to, as uvicorn leaves it (it chmods to 0o666).
DEFAULT_UDS_MODE = 0o666


# WebSocket defaults are uvicorn's (which took them from the websockets library): 16 MiB per
# message, 32 messages queued for a slow app, a ping every 20 s answered within 20 s.
DEFAULT_WS_MAX_SIZE = 16 * 1024 * 1024
DEFAULT_WS_MAX_QUEUE = 32
DEFAULT_WS_PING_INTERVAL = 20.0
DEFAULT_WS_PING_TIMEOUT = 20.0


@dataclass(eq=False)
class Config:
    """Settings for one server process. Pass it to ``Server``; call ``load()`` before serving."""

    app: ASGIApp | Callable[..., Any] | str
    host: str = setting("127.0.0.1", "Bind socket to this host.")
    port: int = setting(8000, "Bind socket to this port. If 0, an available port is picked.", high=65535)
    uds: str | None = setting(None, "Bind to a UNIX domain socket.")
    uds_mode: int = setting(
        DEFAULT_UDS_MODE,
        "Permissions of the --uds socket file, in octal. [default: 666]",
        parse=octal,
        high=0o7777,
        metavar="MODE",
    )
    fd: int | None = setting(None, "Bind to socket from this file descriptor.")
    loop: LoopName = setting("auto", "Event loop implementation.")
    http: HttpName = setting("auto", "HTTP parser implementation.")
    ws: WsName = setting(
        "auto", "WebSocket implementation: websockets, or none to serve upgrade requests as plain HTTP."
    )
    ws_max_size: int = setting(
        DEFAULT_WS_MAX_SIZE, "WebSocket max size message in bytes; a bigger message closes with 1009.", low=1
    )
    ws_max_queue: int = setting(
        DEFAULT_WS_MAX_QUEUE,
        "The maximum length of the WebSocket message queue; past it the connection stops reading.",
        low=1,
    )
    ws_ping_interval: float | None = setting(
        DEFAULT_WS_PING_INTERVAL, "WebSocket ping interval in seconds (0: no pings)."
    )
    ws_ping_timeout: float | None = setting(
        DEFAULT_WS_PING_TIMEOUT,
        "WebSocket ping timeout in seconds; an unanswered ping closes with 1011 (0: wait forever).",
    )
    ws_per_message_deflate: bool = setting(
        True, "WebSocket per-message-deflate compression.", parse=truthy, kind="value"
    )
    lifespan: LifespanName = setting("auto", "Lifespan implementation.")
    interface: InterfaceName = setting("auto", "Select ASGI3, ASGI2 or WSGI as the application interface.")
    wsgi_threads: int = setting(
        WSGI_THREADS,
        "Threads that run a WSGI app's calls in each process (--interface wsgi).",
        low=1,
    )
    env_file: str | os.PathLike[str] | None = setting(
        None,
        "Environment configuration file (KEY=VALUE lines), loaded before the app is imported.",
        metavar="PATH",
    )
    log_config: dict[str, Any] | str | None = setting(
        LOGGING_CONFIG, "Logging configuration file (.json, .yaml or .ini)."
    )
    log_level: str | int | None = setting(None, "Log level. [default: info]", choices=tuple(LOG_LEVELS))
    access_log: bool = setting(True, "Enable/Disable access log.")
    access_log_format: str | None = setting(
        None,
        "Access log line in gunicorn's atoms, e.g. '%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s'.",
        metavar="FORMAT",
    )
    log_format: LogFormatName = setting(
        "text", "Error and access log lines as text or as one JSON object per line."
    )
    use_colors: bool | None = setting(
        None, "Enable/Disable colorized logging. [default: when stderr is a terminal]"
    )
    proxy_headers: bool = setting(
        True, "Enable/Disable X-Forwarded-Proto, X-Forwarded-For to populate url scheme and remote address."
    )
    forwarded_allow_ips: list[str] | str | None = setting(
        None,
        "Comma-separated IPs, networks or literals trusted with proxy headers; '*' trusts all. "
        "[default: 127.0.0.1,::1]",
        env="FORWARDED_ALLOW_IPS",
    )
    proxy_protocol: ProxyProtocolName = setting(
        "off",
        "Read a PROXY protocol header (v1 text, v2 binary, auto: either) first on each connection from "
        "a --proxy-allow-from peer; its client address becomes the request's (gunicorn's setting).",
    )
    proxy_allow_ips: list[str] | str | None = setting(
        None,
        "Comma-separated IPs, networks or literals allowed (and required) to send a PROXY header; '*' "
        "allows all (gunicorn's --proxy-allow-from). [default: 127.0.0.1,::1]",
        flag="--proxy-allow-from",
    )
    ssl_keyfile: str | os.PathLike[str] | None = setting(None, "SSL key file.", metavar="PATH")
    ssl_certfile: str | os.PathLike[str] | None = setting(None, "SSL certificate file.", metavar="PATH")
    ssl_keyfile_password: str | None = setting(None, "SSL keyfile password.")
    ssl_version: int = setting(
        DEFAULT_SSL_VERSION,
        "SSL version to use (see stdlib ssl module's). [default: 17, PROTOCOL_TLS_SERVER]",
    )
    ssl_cert_reqs: int = setting(
        DEFAULT_SSL_CERT_REQS,
        "Whether client certificate is required (see stdlib ssl module's: 0 none, 1 optional, 2 required).",
        high=2,
    )
    ssl_ca_certs: str | None = setting(None, "CA certificates file, to verify client certificates.")
    ssl_ciphers: str = setting("TLSv1", "Ciphers to use (see stdlib ssl module's).")
    ssl_context_factory: Callable[[], ssl.SSLContext] | None = setting(
        None, "A callable returning the server's SSLContext (Python API only).", cli=False
    )
    secure_scheme_headers: dict[str, str] | None = setting(
        None, "gunicorn's setting: headers a trusted proxy marks HTTPS with (its worker only).", cli=False
    )
    timeout_tls_handshake: float = setting(
        DEFAULT_TIMEOUT_TLS_HANDSHAKE,
        "Close a connection whose TLS handshake is not done within this many seconds.",
    )
    server_header: bool = setting(True, "Enable/Disable default Server header.")
    date_header: bool = setting(True, "Enable/Disable default Date header.")
    root_path: str = setting("", "Set the ASGI 'root_path' for apps mounted below a URL path.")
    limit_concurrency: int | None = setting(
        None,
        "Maximum number of concurrent connections or tasks to allow, before issuing HTTP 503 responses.",
        low=1,
    )
    backlog: int = setting(2048, "Maximum number of connections to hold in backlog.", low=1)
    limit_max_requests: int | None = setting(
        None, "Maximum number of requests to service before terminating the process.", low=1
    )
    limit_max_requests_jitter: int = setting(
        0, "Maximum jitter to add to limit_max_requests, to stagger worker restarts."
    )
    timeout_keep_alive: float = setting(
        5, "Close Keep-Alive connections if no new data is received within this timeout (seconds)."
    )
    timeout_graceful_shutdown: float | None = setting(
        None, "Maximum number of seconds to wait for graceful shutdown."
    )
    timeout_request_header: float = setting(
        DEFAULT_TIMEOUT_REQUEST_HEADER,
        "Close a connection whose request head is not complete within this many seconds (0: never).",
    )
    timeout_request_body: float = setting(
        DEFAULT_TIMEOUT_REQUEST_BODY,
        "End a request whose body stops arriving for this many seconds (0: never): 408, or a close "
        "once the response has begun.",
    )
    timeout_lifespan_startup: float = setting(
        DEFAULT_TIMEOUT_LIFESPAN,
        "Fail startup if lifespan startup takes longer than this (seconds, 0: never).",
    )
    timeout_lifespan_shutdown: float = setting(
        DEFAULT_TIMEOUT_LIFESPAN, "Abandon lifespan shutdown after this many seconds (0: never)."
    )
    headers: list[tuple[str, str]] | None = setting(
        None,
        "Specify custom default HTTP response headers as a Name:Value pair (repeatable).",
        flag="--header",
        metavar="NAME:VALUE",
    )
    factory: bool = setting(False, "Treat APP as an application factory.", kind="flag")
    disconnect_grace_period: float | None = setting(
        None,
        "Cancel a request's app call this many seconds after its client disconnected (gunicorn's "
        "asgi_disconnect_grace_period). [default: never, as uvicorn]",
    )
    http2: bool = setting(
        False,
        "Serve HTTP/2 as well: over TLS to clients whose ALPN picks h2, and in cleartext to clients "
        "that open with the HTTP/2 preface (prior knowledge). Needs the http2 extra (h2).",
        kind="flag",
    )
    http2_max_concurrent_streams: int = setting(
        100,
        "HTTP/2 streams one connection may have open at once; more are refused (REFUSED_STREAM). "
        "100 is the RFC 9113 minimum recommendation and h2's default.",
        low=1,
        high=2**31 - 1,
    )
    reset_contextvars: bool = setting(
        False,
        "Run each ASGI request in a fresh contextvars.Context, so context the server's own (an import, "
        "instrumentation) or an earlier request's is not seen (uvicorn's flag).",
        kind="flag",
    )
    eager_start: bool = setting(
        False,
        "Python 3.12+: start each HTTP/1.1 app call as an eager task, its first step inside the read "
        "that completed the request (ignored before 3.12). Lower latency with few connections; off by "
        "default because a large app under many connections runs slower (FastAPI: 13% fewer req/s).",
    )
    app_dir: str | None = setting(
        "",
        "Look for APP in the specified directory, by adding it to the PYTHONPATH. Default: the current one.",
    )
    h11_max_incomplete_event_size: int | None = setting(
        None, "Maximum size of a request head in bytes, for both parsers (uvicorn's name). [default: 65536]"
    )
    limit_request_line: int = setting(
        DEFAULT_LIMIT_REQUEST_LINE,
        "Maximum size of the request target in bytes, 0 for no limit (gunicorn's name). Past it: 414.",
    )
    limit_request_fields: int = setting(
        DEFAULT_LIMIT_REQUEST_FIELDS,
        "Maximum number of request header fields, 0 for no limit (gunicorn's name). Past it: 431.",
    )
    limit_request_field_size: int = setting(
        DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
        "Maximum size of one request header field, 0 for no limit (gunicorn's name). Past it: 431.",
    )
    limit_request_body: int = setting(
        0,
        "Maximum size of a request body in bytes, 0 for no limit (as uvicorn). Past it: 413, "
        "before the app runs when Content-Length says so.",
    )
    control_bind: str | None = setting(
        None,
        "Serve /metrics, /livez and /readyz on this HOST:PORT or unix:PATH (never the app's port); "
        "/metrics needs the metrics extra.",
        metavar="ADDRESS",
    )
    shutdown_delay: float = setting(
        0.0,
        "On SIGTERM, turn /readyz to 503 at once and keep serving this many seconds (for the load "
        "balancer to notice), then drain.",
    )
    workers: int | None = setting(
        None,
        "Number of worker processes, or auto (the CPUs this process may use: cgroup quota, affinity); "
        "this command runs one, asgi-supervise runs them.",
        env="WEB_CONCURRENCY",
        parse=worker_count,
    )

    # Derived in __post_init__ and load(); not keywords.
    request_limits: RequestLimits = field(init=False, repr=False)
    loaded: bool = field(default=False, init=False, repr=False)
    loaded_app: ASGIApp | None = field(default=None, init=False, repr=False)
    parser_class: ParserFactory | None = field(default=None, init=False, repr=False)
    ssl: ssl.SSLContext | None = field(default=None, init=False, repr=False)
    ws_enabled: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        check_settings(self)
        self.ws_ping_interval = self.ws_ping_interval or 0.0
        self.ws_ping_timeout = self.ws_ping_timeout or 0.0
        self.ws_per_message_deflate = bool(self.ws_per_message_deflate)
        if self.access_log_format:
            compile_access_format(
                self.access_log_format
            )  # a bad atom is a ConfigError now, not after binding
        if self.forwarded_allow_ips is None:  # uvicorn reads the variable here too
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
        if self.proxy_allow_ips is None:
            self.proxy_allow_ips = "127.0.0.1,::1"  # gunicorn's default
        self.secure_scheme_headers = dict(self.secure_scheme_headers or {})
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("ssl_keyfile needs ssl_certfile (the certificate that goes with the key)")
        if not self.timeout_tls_handshake:
            raise ConfigError("timeout_tls_handshake must be more than 0 seconds")
        if self.control_bind is not None:
            check_bind_address(self.control_bind, "control_bind")
        root_path = self.root_path
        if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
            raise ConfigError(f"root_path must start with '/' and not end with one, not {root_path!r}")
        self.headers = [_header_pair(pair) for pair in self.headers or ()]
        self.request_limits = RequestLimits(
            request_line=self.limit_request_line,
            fields=self.limit_request_fields,
            field_size=self.limit_request_field_size,
            head=DEFAULT_LIMIT_REQUEST_HEAD
            if self.h11_max_incomplete_event_size is None
            else self.h11_max_incomplete_event_size,
            body=self.limit_request_body,
        )

    @property
    def is_ssl(self) -> bool:
        """Whether this server speaks TLS (a certificate or a context factory was given)."""
        return bool(self.ssl_certfile or self.ssl_context_factory)

    @property
    def tls_settings(self) -> TlsSettings:
        """The ``ssl_*`` settings, as ``tls.create_ssl_context`` takes them."""
        return TlsSettings(
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=self.ssl_keyfile_password,
            version=self.ssl_version,
            cert_reqs=self.ssl_cert_reqs,
            ca_certs=self.ssl_ca_certs,
            ciphers=self.ssl_ciphers,
            context_factory=self.ssl_context_factory,
        )

    def configure_logging(self) -> None:
        """Apply ``log_config``, ``log_level`` and ``access_log`` to the ``asgi_worker`` loggers."""
        configure_logging(self.log_config, self.log_level, self.access_log, self.use_colors, self.log_format)

    def load(self) -> None:
        """Configure logging, pick the parser, import the app. Raises ``AppLoadError``/``ConfigError``."""
        from asgi_worker.apploader import load_app

        if self.loaded:
            return
        if self.env_file is not None:
            load_env_file(self.env_file)
        self.configure_logging()
        if self.http2:
            require_h2()
        if self.is_ssl:
            self.ssl = create_ssl_context(self.tls_settings)
            if self.http2:  # ALPN: h2 first (our preference), HTTP/1.1 for every other client
                self.ssl.set_alpn_protocols(["h2", "http/1.1"])
        self.parser_class = resolve_parser(self.http)
        self.ws_enabled = resolve_ws(self.ws)
        self.loaded_app = load_app(
            self.app, self.factory, self.interface, self.app_dir, wsgi_threads=self.wsgi_threads
        )
        self.loaded = True

    @property
    def encoded_headers(self) -> list[tuple[bytes, bytes]]:
        """``headers`` as lowercased-name byte pairs, the form a response carries them in."""
        return [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers or ()
        ]


# The command-line rows of every setting above, in declaration order (cli.py builds argparse from them).
OPTIONS: tuple[Option, ...] = options_of(Config)


def resolve_parser(http: str) -> ParserFactory:
    """The parser adapter class for ``--http``: ``auto`` prefers httptools when installed."""
    if http in ("auto", "httptools"):
        try:
            from asgi_worker.http.parse_httptools import HttptoolsParser
        except ImportError:
            if http == "httptools":
                raise ConfigError(
                    "--http httptools needs httptools: pip install 'asgi-worker[standard]'"
                ) from None
        else:
            return HttptoolsParser
    from asgi_worker.http.parse_h11 import H11Parser

    return H11Parser


def resolve_ws(ws: str) -> bool:
    """Whether WebSocket upgrades are served: ``auto`` serves them when websockets is installed."""
    if ws == "none":
        return False
    if importlib.util.find_spec("websockets") is not None:  # imported by ws/ alone, when used
        return True
    if ws == "websockets":
        raise ConfigError("--ws websockets needs websockets: pip install 'asgi-worker[standard]'")
    return False


def require_h2() -> None:
    """``--http2`` needs the h2 library (imported by ``http2/session.py`` alone, when used)."""
    if importlib.util.find_spec("h2") is None:
        raise ConfigError("--http2 needs h2: pip install 'asgi-worker[http2]'")


def _header_pair(pair: Any) -> tuple[str, str]:
    if isinstance(pair, str):
        name, sep, value = pair.partition(":")
        if not sep:
            raise ConfigError(f"header {pair!r} must be in the form Name:Value")
        pair = (name, value)
    name, value = pair[0].strip(), str(pair[1]).strip()
    if not name or any(c in name for c in " \t\r\n:") or any(c in value for c in "\r\n\0"):
        raise ConfigError(f"header {name!r} is not a valid header")
    return name, value
