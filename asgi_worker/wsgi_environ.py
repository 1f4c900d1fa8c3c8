"""PEP 3333 translation, free of I/O: the ASGI HTTP scope as a WSGI environ, and the app's
``start_response`` status and headers as ASGI's.

Rules:
- PATH_INFO and SCRIPT_NAME are "bytes as latin-1" strings (PEP 3333's native strings), SCRIPT_NAME
  being the scope's ``root_path``; repeated headers are joined with ``,`` as CGI does.
- Header names with ``_`` are dropped: ``X-Auth_User`` would fill the same ``HTTP_X_AUTH_USER`` key
  as a proxy's ``X-Auth-User`` (gunicorn and nginx drop them too).
- A status or header the app gets wrong is a ``TypeError``/``ValueError`` that the cycle answers
  with 500, never bytes on the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from asgi_worker.types import Scope, WSGIEnviron

__all__ = ["build_environ", "encode_headers", "encode_status"]

logger = logging.getLogger("asgi_worker.error")

# Distinct header names whose environ key is remembered (names come from clients: keep it bounded).
_KEY_CACHE_SIZE = 256


class _ErrorStream:
    """``wsgi.errors``: one ``asgi_worker.error`` record per write, bare newlines dropped (``print``
    writes them separately). Stateless, so one instance serves every thread."""

    def write(self, text: str) -> int:
        message = text.rstrip("\n")
        if message:
            logger.error(message)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


_ERRORS = _ErrorStream()
_HEADER_KEYS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}


def _environ_key(name: bytes) -> str:
    key = _HEADER_KEYS.get(name)
    if key is None:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(_HEADER_KEYS) < _KEY_CACHE_SIZE:
            _HEADER_KEYS[name] = key
    return key


def _native(text: str) -> str:
    """PEP 3333's "bytes as latin-1" string for a decoded URL path."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


def _split_host(host: str, scheme: str) -> tuple[str, str]:
    default = "443" if scheme == "https" else "80"
    if ":" not in host or host.endswith("]"):
        return host or "localhost", default
    name, _, port = host.rpartition(":")
    return name, port if port.isdigit() else default


def build_environ(scope: Scope, body: Any, multithread: bool = True) -> WSGIEnviron:
    """The PEP 3333 environ for an ASGI ``http`` scope (SCRIPT_NAME is ``root_path``); ``body`` is
    the ``wsgi.input`` object. ``multithread`` is False when the app runs in a single thread."""
    root_path: str = scope.get("root_path", "")
    path: str = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    scheme = scope.get("scheme", "http")
    environ: WSGIEnviron = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": _native(root_path),
        "PATH_INFO": _native(path),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/2.0"
        if scope.get("http_version") == "2"
        else "HTTP/" + scope.get("http_version", "1.1"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": body,
        "wsgi.errors": _ERRORS,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        # The body stream ends where the request body ends (chunked too): werkzeug reads it directly.
        "wsgi.input_terminated": True,
    }
    for name, value in scope.get("headers", ()):
        if b"_" in name:
            # X-Auth_User would become HTTP_X_AUTH_USER, the key a proxy's X-Auth-User fills:
            # dropped, as gunicorn and nginx drop them, so a client cannot spoof the proxy's header.
            continue
        key = _environ_key(name)
        text = value.decode("latin-1")
        environ[key] = environ[key] + "," + text if key in environ else text
    server = scope.get("server")
    if server is not None and server[1] is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    else:  # a UNIX socket: the client's Host is the best name there is
        environ["SERVER_NAME"], environ["SERVER_PORT"] = _split_host(environ.get("HTTP_HOST", ""), scheme)
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    return environ


def encode_status(status: str) -> int:
    """``"200 OK"`` -> 200; the reason phrase is dropped (ASGI has no field for it)."""
    if type(status) is not str or len(status) < 3 or not status[:3].isdigit() or status[3:4] not in ("", " "):
        raise ValueError(f"invalid WSGI status {status!r} (want a str like '200 OK')")
    return int(status[:3])


def encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """``start_response`` headers (native strings) as ASGI byte pairs with lowercased names."""
    encoded = []
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"WSGI header {name!r}: {value!r} must be a pair of native strings")
        encoded.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return encoded
