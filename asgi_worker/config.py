"""``Config``: the settings of one server, stored and validated; nothing happens until ``load()``.

Modelled on uvicorn's ``Config`` (same parameter names and defaults where uvicorn has them). The
constructor only stores and checks values, raising ``ConfigError`` naming the setting; ``load()``
configures logging and imports the app, in that order, and derives what the hot path reads.
"""

from __future__ import annotations

import importlib.util
import os
import random
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from asgi_worker.accessformat import compile_access_format
from asgi_worker.envfile import load_env_file
from asgi_worker.errors import ConfigError
from asgi_worker.http.limits import (
    DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
    DEFAULT_LIMIT_REQUEST_FIELDS,
    DEFAULT_LIMIT_REQUEST_HEAD,
    DEFAULT_LIMIT_REQUEST_LINE,
    HeadLimits,
)
from asgi_worker.logs import LOG_LEVELS, LOGGING_CONFIG, configure_logging
from asgi_worker.options import (
    DEFAULT_SSL_CERT_REQS,
    DEFAULT_SSL_VERSION,
    DEFAULT_TIMEOUT_LIFESPAN,
    DEFAULT_TIMEOUT_REQUEST_HEADER,
    DEFAULT_TIMEOUT_TLS_HANDSHAKE,
    DEFAULT_UDS_MODE,
    DEFAULT_WS_MAX_QUEUE,
    DEFAULT_WS_MAX_SIZE,
    DEFAULT_WS_PING_INTERVAL,
    DEFAULT_WS_PING_TIMEOUT,
)
from asgi_worker.tls import create_ssl_context
from asgi_worker.types import ASGIApp

__all__ = ["Config"]

_CHOICES = {
    "loop": ("auto", "asyncio", "uvloop"),
    "http": ("auto", "h11", "httptools"),
    "ws": ("auto", "websockets", "none"),
    "lifespan": ("auto", "on", "off"),
    "interface": ("auto", "asgi3", "asgi2", "wsgi"),
    "log_format": ("text", "json"),
}


class Config:
    """Settings for one server process. Pass it to ``Server``; call ``load()`` before serving."""

    def __init__(
        self,
        app: ASGIApp | Callable[..., Any] | str,
        host: str = "127.0.0.1",
        port: int = 8000,
        uds: str | None = None,
        uds_mode: int = DEFAULT_UDS_MODE,
        fd: int | None = None,
        loop: str = "auto",
        http: str = "auto",
        ws: str = "auto",
        ws_max_size: int = DEFAULT_WS_MAX_SIZE,
        ws_max_queue: int = DEFAULT_WS_MAX_QUEUE,
        ws_ping_interval: float | None = DEFAULT_WS_PING_INTERVAL,
        ws_ping_timeout: float | None = DEFAULT_WS_PING_TIMEOUT,
        ws_per_message_deflate: bool = True,
        lifespan: str = "auto",
        interface: str = "auto",
        env_file: str | os.PathLike[str] | None = None,
        log_config: dict[str, Any] | str | None = LOGGING_CONFIG,
        log_level: str | int | None = None,
        access_log: bool = True,
        access_log_format: str | None = None,
        log_format: str = "text",
        use_colors: bool | None = None,
        proxy_headers: bool = True,
        forwarded_allow_ips: list[str] | str | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile_password: str | None = None,
        ssl_version: int = DEFAULT_SSL_VERSION,
        ssl_cert_reqs: int = DEFAULT_SSL_CERT_REQS,
        ssl_ca_certs: str | None = None,
        ssl_ciphers: str = "TLSv1",
        ssl_context_factory: Callable[[], ssl.SSLContext] | None = None,
        secure_scheme_headers: dict[str, str] | None = None,
        timeout_tls_handshake: float = DEFAULT_TIMEOUT_TLS_HANDSHAKE,
        server_header: bool = True,
        date_header: bool = True,
        root_path: str = "",
        limit_concurrency: int | None = None,
        backlog: int = 2048,
        limit_max_requests: int | None = None,
        limit_max_requests_jitter: int = 0,
        timeout_keep_alive: float = 5,
        timeout_graceful_shutdown: float | None = None,
        timeout_request_header: float = DEFAULT_TIMEOUT_REQUEST_HEADER,
        timeout_lifespan_startup: float = DEFAULT_TIMEOUT_LIFESPAN,
        timeout_lifespan_shutdown: float = DEFAULT_TIMEOUT_LIFESPAN,
        headers: Sequence[tuple[str, str]] | None = None,
        factory: bool = False,
        app_dir: str | None = "",
        h11_max_incomplete_event_size: int | None = None,
        limit_request_line: int = DEFAULT_LIMIT_REQUEST_LINE,
        limit_request_fields: int = DEFAULT_LIMIT_REQUEST_FIELDS,
        limit_request_field_size: int = DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
        workers: int | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = _int("port", port, 0, 65535)
        self.uds = uds
        self.uds_mode = _int("uds_mode", uds_mode, 0, 0o7777)
        self.fd = None if fd is None else _int("fd", fd, 0)
        self.loop = _choice("loop", loop)
        self.http = _choice("http", http)
        self.ws = _choice("ws", ws)
        self.ws_max_size = _int("ws_max_size", ws_max_size, 1)
        self.ws_max_queue = _int("ws_max_queue", ws_max_queue, 1)
        self.ws_ping_interval = _seconds("ws_ping_interval", ws_ping_interval or 0)
        self.ws_ping_timeout = _seconds("ws_ping_timeout", ws_ping_timeout or 0)
        self.ws_per_message_deflate = bool(ws_per_message_deflate)
        self.lifespan = _choice("lifespan", lifespan)
        self.interface = _choice("interface", interface)
        self.env_file = env_file
        self.log_config = log_config
        if isinstance(log_level, str) and log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
        self.log_level = log_level
        self.access_log = access_log
        if access_log_format:
            compile_access_format(access_log_format)  # a bad atom is a ConfigError now, not after binding
        self.access_log_format = access_log_format
        self.log_format = _choice("log_format", log_format)
        self.use_colors = use_colors
        self.proxy_headers = proxy_headers
        if forwarded_allow_ips is None:  # uvicorn reads the variable here too
            forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
        self.forwarded_allow_ips = forwarded_allow_ips
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile_password = ssl_keyfile_password
        self.ssl_version = _int("ssl_version", ssl_version, 0)
        self.ssl_cert_reqs = _int("ssl_cert_reqs", ssl_cert_reqs, 0, 2)
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_ciphers = ssl_ciphers
        self.ssl_context_factory = ssl_context_factory
        self.secure_scheme_headers = dict(secure_scheme_headers or {})  # gunicorn's setting (its worker)
        if ssl_keyfile and not ssl_certfile:
            raise ConfigError("ssl_keyfile needs ssl_certfile (the certificate that goes with the key)")
        self.timeout_tls_handshake = _seconds("timeout_tls_handshake", timeout_tls_handshake)
        if not self.timeout_tls_handshake:
            raise ConfigError("timeout_tls_handshake must be more than 0 seconds")
        self.server_header = server_header
        self.date_header = date_header
        if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
            raise ConfigError(f"root_path must start with '/' and not end with one, not {root_path!r}")
        self.root_path = root_path
        self.limit_concurrency = (
            None if limit_concurrency is None else _int("limit_concurrency", limit_concurrency, 1)
        )
        self.backlog = _int("backlog", backlog, 1)
        self.limit_max_requests = (
            None if limit_max_requests is None else _int("limit_max_requests", limit_max_requests, 1)
        )
        self.limit_max_requests_jitter = _int("limit_max_requests_jitter", limit_max_requests_jitter, 0)
        self.timeout_keep_alive = _seconds("timeout_keep_alive", timeout_keep_alive)
        self.timeout_graceful_shutdown = (
            None
            if timeout_graceful_shutdown is None
            else _seconds("timeout_graceful_shutdown", timeout_graceful_shutdown)
        )
        self.timeout_request_header = _seconds("timeout_request_header", timeout_request_header)
        self.timeout_lifespan_startup = _seconds("timeout_lifespan_startup", timeout_lifespan_startup)
        self.timeout_lifespan_shutdown = _seconds("timeout_lifespan_shutdown", timeout_lifespan_shutdown)
        self.headers = [_header_pair(pair) for pair in headers or ()]
        self.factory = factory
        self.app_dir = app_dir
        self.h11_max_incomplete_event_size = h11_max_incomplete_event_size
        self.head_limits = HeadLimits(
            request_line=_int("limit_request_line", limit_request_line, 0),
            fields=_int("limit_request_fields", limit_request_fields, 0),
            field_size=_int("limit_request_field_size", limit_request_field_size, 0),
            head=DEFAULT_LIMIT_REQUEST_HEAD
            if h11_max_incomplete_event_size is None
            else _int("h11_max_incomplete_event_size", h11_max_incomplete_event_size, 0),
        )
        self.limit_request_line = limit_request_line
        self.limit_request_fields = limit_request_fields
        self.limit_request_field_size = limit_request_field_size
        self.workers = workers
        self.loaded = False
        self.loaded_app: ASGIApp | None = None
        self.parser_class: Callable[[HeadLimits, bool], Any] | None = None
        self.max_requests: int | None = None
        self.ssl: ssl.SSLContext | None = None
        self.ws_enabled = False

    @property
    def is_ssl(self) -> bool:
        """Whether this server speaks TLS (a certificate or a context factory was given)."""
        return bool(self.ssl_certfile or self.ssl_context_factory)

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
        if self.is_ssl:
            self.ssl = create_ssl_context(self)
        self.parser_class = resolve_parser(self.http)
        self.ws_enabled = resolve_ws(self.ws)
        self.loaded_app = load_app(self.app, self.factory, self.interface, self.app_dir)
        self.max_requests = self.limit_max_requests
        if self.max_requests is not None and self.limit_max_requests_jitter:
            self.max_requests += random.randint(0, self.limit_max_requests_jitter)
        self.loaded = True

    @property
    def encoded_headers(self) -> list[tuple[bytes, bytes]]:
        """``headers`` as lowercased-name byte pairs, the form a response carries them in."""
        return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers]


def resolve_parser(http: str) -> Callable[[HeadLimits, bool], Any]:
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


def _choice(name: str, value: str) -> str:
    if value not in _CHOICES[name]:
        raise ConfigError(f"{name} must be one of {', '.join(_CHOICES[name])}, not {value!r}")
    return value


def _int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ConfigError(f"{name} must be a whole number {bounds}, not {value!r}")
    return value


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{name} must be a number of seconds (0 or more), not {value!r}")
    return float(value)


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
