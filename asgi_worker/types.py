"""ASGI and WSGI type aliases used across the package (the specs' callables, loosely typed on messages)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import TracebackType
from typing import Any

__all__ = [
    "ASGI2App",
    "ASGIApp",
    "ExcInfo",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "StartResponse",
    "WSGIApp",
    "WSGIEnviron",
    "WSGIWrite",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ASGI2App = Callable[[Scope], Callable[[Receive, Send], Awaitable[None]]]

# WSGI (PEP 3333). ``start_response(status, headers, exc_info=None)`` returns ``write(data)``.
WSGIEnviron = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
WSGIWrite = Callable[[bytes], None]
StartResponse = Callable[..., WSGIWrite]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
