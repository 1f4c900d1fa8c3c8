"""The ASGI side of one WebSocket: ``websocket.*`` messages in and out, and how the app ends.

States (``WsState``) and what each accepts from the app:
- CONNECTING: ``websocket.accept`` -> OPEN; ``websocket.close`` -> DENIED (HTTP 403);
  ``websocket.http.response.start`` -> RESPONDING (the denial-response extension).
- RESPONDING: ``websocket.http.response.body`` until ``more_body`` is false -> DENIED.
- OPEN: ``websocket.send``; ``websocket.close`` -> CLOSING.
- CLOSING, DENIED, CLOSED: nothing; once the client is gone every ``send`` raises
  ``ClientDisconnected`` (an ``OSError``, as ASGI 2.4 asks), so an app loop stops.
Any other message is an ``AppProtocolError`` naming the state and the message type.

Receiving: the first ``receive`` is ``websocket.connect``; then client messages in order, then
``websocket.disconnect`` with the close code (repeated on every later call). Messages wait in a
bounded queue: past ``max_queue`` the connection stops reading from the socket until the app
catches up, so a fast client cannot fill our memory.

How the app ends decides the answer: returning or raising before ``websocket.accept`` is HTTP 500
(also after ``websocket.http.response.start`` while none of the denial is written, and when the
accept or the denial head is invalid: nothing is on the wire yet); raising after it closes with
1011 (traceback logged); returning while open closes with 1000.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from typing import Any, Protocol

from asgi_worker.errors import AppProtocolError, ClientDisconnected

__all__ = ["WsHost", "WsSession", "WsState"]

logger = logging.getLogger("asgi_worker.error")

# RFC 6455 7.4.1 codes the server chooses.
NORMAL_CLOSURE, INTERNAL_ERROR = 1000, 1011
# What the app hears when the TCP connection ends without a close frame: uvicorn's convention
# (1005 once the handshake is done, 1006 before).
DROPPED_OPEN, DROPPED_CONNECTING = 1005, 1006

_CONNECT = {"type": "websocket.connect"}


class WsState(enum.Enum):
    CONNECTING = "connecting"
    RESPONDING = "sending the denial response"
    OPEN = "open"
    CLOSING = "closing"
    DENIED = "denied"
    CLOSED = "closed"


_CONNECTING, _RESPONDING, _OPEN = WsState.CONNECTING, WsState.RESPONDING, WsState.OPEN
_CLOSING, _DENIED, _CLOSED = WsState.CLOSING, WsState.DENIED, WsState.CLOSED

# The app's messages each state accepts, and where they lead (None: the state decides itself).
TRANSITIONS: dict[tuple[WsState, str], WsState | None] = {
    (_CONNECTING, "websocket.accept"): _OPEN,
    (_CONNECTING, "websocket.close"): _DENIED,
    (_CONNECTING, "websocket.http.response.start"): _RESPONDING,
    (_RESPONDING, "websocket.http.response.body"): None,
    (_OPEN, "websocket.send"): _OPEN,
    (_OPEN, "websocket.close"): _CLOSING,
}


class WsHost(Protocol):
    """What a session needs from its connection. Implemented by ``ws.connection.WebSocketConnection``."""

    write_paused: bool

    def accept(self, subprotocol: str | None, headers: Any) -> None: ...
    def refuse(self, status: int) -> None: ...
    def deny(self, status: int, headers: Any, body: bytes, more_body: bool) -> None: ...
    def send_data(self, data: str | bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def queue_drained(self) -> None: ...
    async def wait_writable(self) -> None: ...


class WsSession:
    """One WebSocket as the app sees it. Created by the connection after a valid handshake request."""

    def __init__(self, host: WsHost, scope: dict[str, Any], max_queue: int) -> None:
        self.scope = scope
        self.state = _CONNECTING
        self.task: asyncio.Task[None] | None = None
        self.max_queue = max_queue
        self._host = host
        self._connected = False  # websocket.connect handed out
        self._queue: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._disconnect: dict[str, Any] | None = None  # set once the client is gone
        self._denial: tuple[int, Any] | None = None  # websocket.http.response.start, until its body
        self._denial_written = False  # part of the denial response is on the wire

    # Called by the connection.

    @property
    def queue_full(self) -> bool:
        """True while the app lags ``max_queue`` messages behind: stop reading from the socket."""
        return len(self._queue) >= self.max_queue

    def feed_message(self, data: str | bytes) -> None:
        """A complete client message (text as ``str``, binary as ``bytes``)."""
        if self._disconnect is not None:
            return
        key = "text" if type(data) is str else "bytes"
        self._queue.append({"type": "websocket.receive", key: data})
        self._wake()

    def disconnected(self, code: int, reason: str = "") -> None:
        """The WebSocket is over for the app (closed, failed or dropped); ``send`` raises from now on."""
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self.state = _CLOSED
            self._wake()

    def dropped(self) -> None:
        """The TCP connection ended without a close handshake."""
        self.disconnected(DROPPED_CONNECTING if self.state is _CONNECTING else DROPPED_OPEN)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # The app's receive and send.

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: connect, the client's messages, then ``websocket.disconnect``."""
        if not self._connected:
            self._connected = True
            return _CONNECT
        while True:
            if self._queue:
                message = self._queue.popleft()
                if len(self._queue) == self.max_queue - 1:
                    self._host.queue_drained()
                return message
            if self._disconnect is not None:
                return self._disconnect
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``. Raises ``ClientDisconnected`` once the client is gone, ``AppProtocolError``
        for a message the state does not allow."""
        if self._disconnect is not None:
            raise ClientDisconnected(f"WebSocket closed ({self._disconnect['code']}): cannot send")
        mtype = message["type"]
        state = self.state
        # The hot pair is checked by identity first: hashing an Enum member for the table lookup
        # runs Python code, and this is paid on every message.
        if not (state is _OPEN and mtype == "websocket.send") and (state, mtype) not in TRANSITIONS:
            raise AppProtocolError(f"ASGI message {mtype!r} is not allowed in state {state.value!r}")
        host = self._host
        if mtype == "websocket.send":
            data = _payload(message)
            if host.write_paused:
                await host.wait_writable()
                if self._disconnect is not None:
                    raise ClientDisconnected("WebSocket closed: cannot send")
            host.send_data(data)
        elif mtype == "websocket.accept":
            # A bad app header raises here, before any byte is written: the app's end answers 500.
            host.accept(message.get("subprotocol"), message.get("headers", ()))
            if self.state is _CONNECTING:  # early frames may already have closed it (a close frame)
                self.state = _OPEN
        elif mtype == "websocket.close":
            if state is _CONNECTING:
                self.state = _DENIED
                host.refuse(403)
            else:
                self.state = _CLOSING
                host.close(message.get("code") or NORMAL_CLOSURE, message.get("reason") or "")
        elif mtype == "websocket.http.response.start":
            self.state = _RESPONDING
            self._denial = (message["status"], message.get("headers", ()))
        else:  # websocket.http.response.body
            assert self._denial is not None
            more = message.get("more_body", False)
            host.deny(*self._denial, message.get("body", b""), more)  # a bad head raises, unwritten
            self._denial_written = True
            if not more:
                self.state = _DENIED

    # The app itself.

    async def run_asgi(self, app: Any, tasks: Any) -> None:
        """Run the app; turn every way it can end into the right HTTP answer or close code."""
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._ended(None)
            raise
        except BaseException as exc:
            self._ended(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._ended(None, returned=True)
        finally:
            tasks.task_finished(self.task)

    def _ended(self, exc: BaseException | None, returned: bool = False) -> None:
        if exc is not None and not isinstance(exc, ClientDisconnected):
            logger.error("Exception in ASGI application", exc_info=exc)
        state = self.state
        if self._disconnect is not None and state is _CLOSED:
            return
        host = self._host
        if state is _CONNECTING:
            if returned:
                logger.error("ASGI callable returned without accepting or denying the WebSocket")
            self.state = _DENIED
            host.refuse(500)
        elif state is _RESPONDING:
            self.state = _DENIED
            if self._denial_written:
                host.close(INTERNAL_ERROR, "")  # a half-sent denial response: only closing is left
            else:
                host.refuse(500)  # its head is still unwritten (or was invalid)
        elif state is _OPEN:
            self.state = _CLOSING
            host.close(NORMAL_CLOSURE if exc is None else INTERNAL_ERROR, "")


def _payload(message: dict[str, Any]) -> str | bytes:
    text, data = message.get("text"), message.get("bytes")
    if text is not None and data is None:
        if type(text) is not str:
            raise AppProtocolError("websocket.send 'text' must be a str")
        return text
    if data is not None and text is None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise AppProtocolError("websocket.send 'bytes' must be bytes")
        return bytes(data)
    raise AppProtocolError("websocket.send needs exactly one of 'text' and 'bytes'")
