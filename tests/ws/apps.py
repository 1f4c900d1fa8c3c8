"""ASGI WebSocket apps shared by the tests, and a thread-safe ``Recorder`` for what they saw.

The apps run on the server's loop thread; the test thread reads the recorder, waiting with
``wait_for`` (bounded by ``TIMEOUT``) instead of sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.timing import TIMEOUT


class Recorder:
    """Items appended from the server thread, awaited from the test thread."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = threading.Condition()

    def add(self, item: Any) -> None:
        with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = TIMEOUT) -> list[Any]:
        """The items once ``predicate(items)`` holds; fails the test after ``timeout``."""
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.items), timeout), self.items
            return list(self.items)

    def wait_len(self, count: int, timeout: float = TIMEOUT) -> list[Any]:
        return self.wait_for(lambda items: len(items) >= count, timeout)

    def disconnect(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The ``websocket.disconnect`` message the app received."""
        items = self.wait_for(lambda items: any(_is_disconnect(item) for item in items), timeout)
        return next(item for item in items if _is_disconnect(item))


def _is_disconnect(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "websocket.disconnect"


def echo_app(recorder: Recorder | None = None, **accept: Any) -> Any:
    """Accepts (with ``accept`` keys such as ``subprotocol``), echoes every message, records each one."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", **accept})
        while True:
            message = await receive()
            if recorder is not None:
                recorder.add(message)
            if message["type"] == "websocket.disconnect":
                return
            reply = {"type": "websocket.send"}
            if message.get("text") is not None:
                reply["text"] = message["text"]
            else:
                reply["bytes"] = message["bytes"]
            await send(reply)

    return app


def client(srv: Any, path: str = "/", **kwargs: Any) -> ClientConnection:
    """A websockets sync client to ``srv``; every wait bounded by ``TIMEOUT``."""
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    scheme = "wss" if "ssl" in kwargs else "ws"
    return connect(f"{scheme}://127.0.0.1:{srv.port}{path}", **kwargs)


def counting_app(calls: Recorder) -> Any:
    """Records every scope type it is called for; answers HTTP with 200 "http"."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.add(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
            await send({"type": "http.response.body", "body": b"http"})

    return app
