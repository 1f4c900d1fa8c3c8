"""Wrappers that present other application interfaces as ASGI 3."""

from __future__ import annotations

from asgi_worker.types import ASGI2App, ASGIApp, Receive, Scope, Send

__all__ = ["asgi2_to_asgi3"]


def asgi2_to_asgi3(app: ASGI2App) -> ASGIApp:
    """ASGI 2 (``app(scope)`` returns ``instance(receive, send)``) as an ASGI 3 callable."""

    async def asgi3(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi3
