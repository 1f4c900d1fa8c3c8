"""The exception tree: every error knows who it is for and, for bad requests, what to answer.

Rules:
- ``RequestError`` and its subclasses are raised by the sans-I/O HTTP layer for untrusted input. Each
  carries the status to answer with; the connection writes ``exc.status`` and closes, with no
  isinstance ladder anywhere else.
- ``ConfigError`` and ``AppLoadError`` are operator mistakes: the CLI prints their message on one line
  and exits with their ``exit_code`` (``exitcodes``: 1 for a setting, 3 for an app that cannot be
  loaded, as uvicorn exits).
- ``AppProtocolError`` is an application that broke the ASGI contract (wrong message order, bad
  header); the server logs it and answers 500 or closes the connection.
"""

from __future__ import annotations

from asgi_worker.exitcodes import BOOT_ERROR, CONFIG_ERROR

__all__ = [
    "AppLoadError",
    "AppProtocolError",
    "ClientDisconnected",
    "ConfigError",
    "HeadersTooLarge",
    "MalformedRequest",
    "RequestError",
    "ServerError",
    "StartupError",
    "TargetTooLong",
    "TransferCodingNotImplemented",
    "VersionNotSupported",
]


class ServerError(Exception):
    """Base of every exception this package raises on purpose."""


class ConfigError(ServerError, ValueError):
    """A setting has a value the server cannot use; the message names the setting."""

    exit_code = CONFIG_ERROR


class AppLoadError(ServerError):
    """The application could not be imported or is not callable; the message says what was wrong.

    Exits 3, as uvicorn does for an import string it cannot resolve (its STARTUP_FAILURE).
    """

    exit_code = BOOT_ERROR


class StartupError(ServerError):
    """The server could not start: lifespan startup failed or a socket could not be bound."""


class AppProtocolError(ServerError, RuntimeError):
    """The application sent a message the ASGI state machine does not allow in its current state."""


class ClientDisconnected(ServerError, OSError):
    """Raised inside the app by ``send`` on a WebSocket the client has left (ASGI 2.4: an OSError)."""


class RequestError(ServerError):
    """Untrusted request bytes that we refuse. ``status`` is the answer, ``detail`` is safe to log."""

    status: int = 400
    reason: bytes = b"Bad Request"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason.decode())
        self.detail = detail or self.reason.decode()


class MalformedRequest(RequestError):
    """Syntax the RFC does not allow: answer 400."""


class BodyTooLarge(RequestError):
    """The body is longer than ``--limit-request-body``: declared (before the app runs) or as it arrives."""

    status = 413
    reason = b"Content Too Large"


class TargetTooLong(RequestError):
    status = 414
    reason = b"URI Too Long"


class HeadersTooLarge(RequestError):
    status = 431
    reason = b"Request Header Fields Too Large"


class TransferCodingNotImplemented(RequestError):
    status = 501
    reason = b"Not Implemented"


class VersionNotSupported(RequestError):
    status = 505
    reason = b"HTTP Version Not Supported"
