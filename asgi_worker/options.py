"""Every setting, declared once: its ``Config`` name, flag, environment variable, type and help.

``cli.py`` builds its parser from this table, and a test holds ``Config.__init__`` and ``run()`` to
the same names and defaults. Flag names are uvicorn 0.54's wherever uvicorn has the setting;
gunicorn's names (``--limit-request-line`` ...) for the limits only gunicorn has. Each option can
also come from ``ASGI_WORKER_<NAME>`` in the environment (uvicorn reads ``UVICORN_<NAME>``); a few
read the variable uvicorn documents (``WEB_CONCURRENCY``, ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgi_worker.http.limits import (
    DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
    DEFAULT_LIMIT_REQUEST_FIELDS,
    DEFAULT_LIMIT_REQUEST_LINE,
)

__all__ = ["OPTIONS", "Option", "env_name"]

# A head that has started must be complete within this many seconds, and a new connection must
# start one. Apache's mod_reqtimeout allows 20-40 s for the header, nginx's client_header_timeout
# is 60 s; browsers send a whole head in one packet, so 20 s is generous and still stops slowloris.
DEFAULT_TIMEOUT_REQUEST_HEADER = 20.0
# hypercorn bounds lifespan startup and shutdown at 60 s each; uvicorn does not bound them at all.
DEFAULT_TIMEOUT_LIFESPAN = 60.0
# A TLS handshake must finish within this many seconds. asyncio's default is 60 s, which lets a
# client that opens connections and never says hello hold each one for a minute; nginx gives the
# whole client header 60 s, Apache's mod_reqtimeout gives the handshake 5 s. A real client needs
# one or two round trips.
DEFAULT_TIMEOUT_TLS_HANDSHAKE = 10.0
# ssl.PROTOCOL_TLS_SERVER and ssl.CERT_NONE, the values uvicorn's --ssl-version/--ssl-cert-reqs
# default to; numbers here so that this table does not import ssl.
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


def _octal(text: str) -> int:
    return int(text, 8)


@dataclass(frozen=True)
class Option:
    """One setting. ``kind`` is "value", "flag" (store true), "switch" (--x/--no-x) or "append"."""

    name: str
    flag: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = str
    kind: str = "value"
    choices: tuple[str, ...] | None = None
    env: str | None = None
    metavar: str | None = None


def env_name(option: Option) -> str:
    """The environment variable the option is read from when its flag is absent."""
    return option.env or f"ASGI_WORKER_{option.name.upper()}"


OPTIONS: tuple[Option, ...] = (
    Option("host", "--host", "127.0.0.1", "Bind socket to this host."),
    Option("port", "--port", 8000, "Bind socket to this port. If 0, an available port is picked.", int),
    Option("uds", "--uds", None, "Bind to a UNIX domain socket."),
    Option(
        "uds_mode",
        "--uds-mode",
        DEFAULT_UDS_MODE,
        "Permissions of the --uds socket file, in octal. [default: 666]",
        _octal,
        metavar="MODE",
    ),
    Option("fd", "--fd", None, "Bind to socket from this file descriptor.", int),
    Option("loop", "--loop", "auto", "Event loop implementation.", choices=("auto", "asyncio", "uvloop")),
    Option("http", "--http", "auto", "HTTP parser implementation.", choices=("auto", "h11", "httptools")),
    Option(
        "ws",
        "--ws",
        "auto",
        "WebSocket implementation: websockets, or none to serve upgrade requests as plain HTTP.",
        choices=("auto", "websockets", "none"),
    ),
    Option(
        "ws_max_size",
        "--ws-max-size",
        DEFAULT_WS_MAX_SIZE,
        "WebSocket max size message in bytes; a bigger message closes with 1009.",
        int,
    ),
    Option(
        "ws_max_queue",
        "--ws-max-queue",
        DEFAULT_WS_MAX_QUEUE,
        "The maximum length of the WebSocket message queue; past it the connection stops reading.",
        int,
    ),
    Option(
        "ws_ping_interval",
        "--ws-ping-interval",
        DEFAULT_WS_PING_INTERVAL,
        "WebSocket ping interval in seconds (0: no pings).",
        float,
    ),
    Option(
        "ws_ping_timeout",
        "--ws-ping-timeout",
        DEFAULT_WS_PING_TIMEOUT,
        "WebSocket ping timeout in seconds; an unanswered ping closes with 1011 (0: wait forever).",
        float,
    ),
    Option(
        "ws_per_message_deflate",
        "--ws-per-message-deflate",
        True,
        "WebSocket per-message-deflate compression.",
        type=lambda text: text.lower() in ("1", "true", "yes"),
    ),
    Option("lifespan", "--lifespan", "auto", "Lifespan implementation.", choices=("auto", "on", "off")),
    Option(
        "interface",
        "--interface",
        "auto",
        "Select ASGI3, ASGI2 or WSGI as the application interface.",
        choices=("auto", "asgi3", "asgi2", "wsgi"),
    ),
    Option(
        "env_file",
        "--env-file",
        None,
        "Environment configuration file (KEY=VALUE lines), loaded before the app is imported.",
        metavar="PATH",
    ),
    Option("log_config", "--log-config", None, "Logging configuration file (.json, .yaml or .ini)."),
    Option(
        "log_level",
        "--log-level",
        None,
        "Log level. [default: info]",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    ),
    Option("access_log", "--access-log", True, "Enable/Disable access log.", kind="switch"),
    Option(
        "access_log_format",
        "--access-log-format",
        None,
        "Access log line in gunicorn's atoms, e.g. '%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s'.",
        metavar="FORMAT",
    ),
    Option(
        "log_format",
        "--log-format",
        "text",
        "Error and access log lines as text or as one JSON object per line.",
        choices=("text", "json"),
    ),
    Option(
        "use_colors",
        "--use-colors",
        None,
        "Enable/Disable colorized logging. [default: when stderr is a terminal]",
        kind="switch",
    ),
    Option(
        "proxy_headers",
        "--proxy-headers",
        True,
        "Enable/Disable X-Forwarded-Proto, X-Forwarded-For to populate url scheme and remote address.",
        kind="switch",
    ),
    Option(
        "forwarded_allow_ips",
        "--forwarded-allow-ips",
        None,
        "Comma-separated IPs, networks or literals trusted with proxy headers; '*' trusts all. "
        "[default: 127.0.0.1,::1]",
        env="FORWARDED_ALLOW_IPS",
    ),
    Option("ssl_keyfile", "--ssl-keyfile", None, "SSL key file.", metavar="PATH"),
    Option("ssl_certfile", "--ssl-certfile", None, "SSL certificate file.", metavar="PATH"),
    Option("ssl_keyfile_password", "--ssl-keyfile-password", None, "SSL keyfile password."),
    Option(
        "ssl_version",
        "--ssl-version",
        DEFAULT_SSL_VERSION,
        "SSL version to use (see stdlib ssl module's). [default: 17, PROTOCOL_TLS_SERVER]",
        int,
    ),
    Option(
        "ssl_cert_reqs",
        "--ssl-cert-reqs",
        DEFAULT_SSL_CERT_REQS,
        "Whether client certificate is required (see stdlib ssl module's: 0 none, 1 optional, 2 required).",
        int,
    ),
    Option("ssl_ca_certs", "--ssl-ca-certs", None, "CA certificates file, to verify client certificates."),
    Option("ssl_ciphers", "--ssl-ciphers", "TLSv1", "Ciphers to use (see stdlib ssl module's)."),
    Option(
        "timeout_tls_handshake",
        "--timeout-tls-handshake",
        DEFAULT_TIMEOUT_TLS_HANDSHAKE,
        "Close a connection whose TLS handshake is not done within this many seconds.",
        float,
    ),
    Option("server_header", "--server-header", True, "Enable/Disable default Server header.", kind="switch"),
    Option("date_header", "--date-header", True, "Enable/Disable default Date header.", kind="switch"),
    Option("root_path", "--root-path", "", "Set the ASGI 'root_path' for apps mounted below a URL path."),
    Option(
        "limit_concurrency",
        "--limit-concurrency",
        None,
        "Maximum number of concurrent connections or tasks to allow, before issuing HTTP 503 responses.",
        int,
    ),
    Option("backlog", "--backlog", 2048, "Maximum number of connections to hold in backlog.", int),
    Option(
        "limit_max_requests",
        "--limit-max-requests",
        None,
        "Maximum number of requests to service before terminating the process.",
        int,
    ),
    Option(
        "limit_max_requests_jitter",
        "--limit-max-requests-jitter",
        0,
        "Maximum jitter to add to limit_max_requests, to stagger worker restarts.",
        int,
    ),
    Option(
        "timeout_keep_alive",
        "--timeout-keep-alive",
        5,
        "Close Keep-Alive connections if no new data is received within this timeout (seconds).",
        float,
    ),
    Option(
        "timeout_graceful_shutdown",
        "--timeout-graceful-shutdown",
        None,
        "Maximum number of seconds to wait for graceful shutdown.",
        float,
    ),
    Option(
        "timeout_request_header",
        "--timeout-request-header",
        DEFAULT_TIMEOUT_REQUEST_HEADER,
        "Close a connection whose request head is not complete within this many seconds (0: never).",
        float,
    ),
    Option(
        "timeout_lifespan_startup",
        "--timeout-lifespan-startup",
        DEFAULT_TIMEOUT_LIFESPAN,
        "Fail startup if lifespan startup takes longer than this (seconds, 0: never).",
        float,
    ),
    Option(
        "timeout_lifespan_shutdown",
        "--timeout-lifespan-shutdown",
        DEFAULT_TIMEOUT_LIFESPAN,
        "Abandon lifespan shutdown after this many seconds (0: never).",
        float,
    ),
    Option(
        "headers",
        "--header",
        None,
        "Specify custom default HTTP response headers as a Name:Value pair (repeatable).",
        kind="append",
        metavar="NAME:VALUE",
    ),
    Option("factory", "--factory", False, "Treat APP as an application factory.", kind="flag"),
    Option(
        "app_dir",
        "--app-dir",
        "",
        "Look for APP in the specified directory, by adding it to the PYTHONPATH. Default: the current one.",
    ),
    Option(
        "h11_max_incomplete_event_size",
        "--h11-max-incomplete-event-size",
        None,
        "Maximum size of a request head in bytes, for both parsers (uvicorn's name). [default: 65536]",
        int,
    ),
    Option(
        "limit_request_line",
        "--limit-request-line",
        DEFAULT_LIMIT_REQUEST_LINE,
        "Maximum size of the request target in bytes, 0 for no limit (gunicorn's name). Past it: 414.",
        int,
    ),
    Option(
        "limit_request_fields",
        "--limit-request-fields",
        DEFAULT_LIMIT_REQUEST_FIELDS,
        "Maximum number of request header fields, 0 for no limit (gunicorn's name). Past it: 431.",
        int,
    ),
    Option(
        "limit_request_field_size",
        "--limit-request-field-size",
        DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
        "Maximum size of one request header field, 0 for no limit (gunicorn's name). Past it: 431.",
        int,
    ),
    Option(
        "workers",
        "--workers",
        None,
        "Number of worker processes: this command runs one; use asgi-supervise for more.",
        int,
        env="WEB_CONCURRENCY",
    ),
)
