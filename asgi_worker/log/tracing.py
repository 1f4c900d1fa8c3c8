"""``--log-level trace``: connection events and every ASGI message, for debugging a deployment.

Rules:
- Tracing costs nothing unless the level is on: the server wraps the app in ``TracingApp`` once,
  at startup, only when ``asgi_worker.error`` is enabled for TRACE, and the connection checks one
  cached flag (``ServerContext.trace``) before logging that it was made or lost.
- Bodies and other bytes are summarised as sizes (``<1024 bytes>``): a trace must not copy a
  request body into the log, nor leak its content; header values are shown escaped.
- Each request gets a number so that interleaved messages of concurrent requests can be told apart.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from asgi_worker.log.text import TRACE_LOG_LEVEL, escape_controls, peer_text
from asgi_worker.types import ASGIApp, Receive, Scope, Send

__all__ = ["TracingApp", "summarise", "tracing_enabled"]

logger = logging.getLogger("asgi_worker.error")


def tracing_enabled() -> bool:
    """Whether trace lines would be emitted (checked once per server, at startup)."""
    return logger.isEnabledFor(TRACE_LOG_LEVEL)


def summarise(message: Any) -> str:
    """A one-line rendering of an ASGI message or scope: bytes as sizes, control characters escaped."""
    if not isinstance(message, dict):
        return escape_controls(repr(message))
    parts = []
    for key, value in message.items():
        if isinstance(value, bytes | bytearray) and key in ("body", "bytes"):
            shown = f"<{len(value)} bytes>"
        elif key == "headers":
            shown = f"<{len(value)} headers>"
        elif key == "state" and isinstance(value, dict):
            shown = f"<{len(value)} keys>"
        else:
            shown = repr(value)
        parts.append(f"{key!r}: {shown}")
    return escape_controls("{" + ", ".join(parts) + "}")


class TracingApp:
    """Wraps an ASGI app and logs its scope, each message both ways, and how it ended."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._numbers = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        number = next(self._numbers)
        prefix = f"{peer_text(scope.get('client'))} - ASGI [{number}]"
        logger.log(TRACE_LOG_LEVEL, "%s Started scope=%s", prefix, summarise(scope))

        async def traced_receive() -> Any:
            message = await receive()
            logger.log(TRACE_LOG_LEVEL, "%s Receive %s", prefix, summarise(message))
            return message

        async def traced_send(message: Any) -> None:
            logger.log(TRACE_LOG_LEVEL, "%s Send %s", prefix, summarise(message))
            await send(message)

        try:
            await self.app(scope, traced_receive, traced_send)
        except BaseException as exc:
            logger.log(TRACE_LOG_LEVEL, "%s Raised exception %s", prefix, type(exc).__name__)
            raise
        logger.log(TRACE_LOG_LEVEL, "%s Completed", prefix)
