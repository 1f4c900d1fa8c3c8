"""What an HTTP/2 session tells its shell, in our own small classes (h2's events stay inside the session).

A stream the shell hears of starts with ``StreamOpened`` (run the app) or ``StreamRefused`` (answer
the status, no app), then gets ``StreamData``* and ``StreamTrailers``? and ``StreamEnded``, unless a
``StreamReset`` ends it first. ``ConnectionEnded`` is always last: flush ``data_to_send()`` and close.
"""

from __future__ import annotations

from enum import IntEnum

from asgi_worker.http.events import RequestHead

__all__ = [
    "ConnectionEnded",
    "ErrorCode",
    "Http2Event",
    "StreamData",
    "StreamEnded",
    "StreamOpened",
    "StreamRefused",
    "StreamReset",
    "StreamTrailers",
    "WindowOpened",
]


class ErrorCode(IntEnum):
    """RFC 9113 7 error codes, for ``reset`` and ``goaway`` and in events."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class StreamOpened:
    """A valid request head: run the app. ``scheme`` is ``:scheme`` (``http``/``https``) for the
    scope; ``protocol`` is RFC 8441's ``:protocol`` (e.g. ``b"websocket"``) on an extended CONNECT."""

    __slots__ = ("head", "protocol", "scheme", "stream_id")

    def __init__(self, stream_id: int, head: RequestHead, scheme: str, protocol: bytes | None) -> None:
        self.stream_id = stream_id
        self.head = head
        self.scheme = scheme
        self.protocol = protocol

    def __repr__(self) -> str:
        return f"StreamOpened({self.stream_id}, {self.head!r})"


class StreamData:
    """Request body bytes. Pass ``flow_length`` to ``consumed`` once the app has taken them: the
    peer may send more only then (padding included, so the windows add up)."""

    __slots__ = ("data", "flow_length", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow_length: int) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_length = flow_length

    def __repr__(self) -> str:
        return f"StreamData({self.stream_id}, {len(self.data)} bytes)"


class StreamEnded:
    """The request body is complete (END_STREAM)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return f"StreamEnded({self.stream_id})"


class StreamTrailers:
    """Request trailers, validated like headers; a ``StreamEnded`` follows."""

    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.stream_id = stream_id
        self.headers = headers

    def __repr__(self) -> str:
        return f"StreamTrailers({self.stream_id}, {len(self.headers)} fields)"


class StreamReset:
    """The stream is gone: the peer reset it (``remote``), or we did for a protocol error in it.

    The app must see ``http.disconnect``; nothing more can be sent on it. A stream the shell never
    heard of (refused before its head was accepted) only needs a debug line with ``reason``.
    """

    __slots__ = ("error_code", "reason", "remote", "stream_id")

    def __init__(self, stream_id: int, error_code: int, remote: bool, reason: str) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote
        self.reason = reason

    def __repr__(self) -> str:
        side = "peer" if self.remote else "us"
        return f"StreamReset({self.stream_id}, {self.error_code}, by {side}: {self.reason})"


class StreamRefused:
    """Answer ``status`` on this stream (``send_head(..., end_stream=True)``), as HTTP/1.1 would.

    Before a ``StreamOpened``: the head broke a limit or an HTTP rule, and no app runs. After one:
    the body grew past ``--limit-request-body``; the app must see ``http.disconnect``, and the
    status goes out if the response has not begun, else ``reset``. No more body is delivered.
    """

    __slots__ = ("reason", "status", "stream_id")

    def __init__(self, stream_id: int, status: int, reason: str) -> None:
        self.stream_id = stream_id
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"StreamRefused({self.stream_id}, {self.status}: {self.reason})"


class WindowOpened:
    """The peer opened a send window a blocked stream waits on; 0: the connection's (retry all)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return f"WindowOpened({self.stream_id})"


class ConnectionEnded:
    """We or the peer ended the connection (GOAWAY). Send ``data_to_send()``, then close."""

    __slots__ = ("error_code", "last_stream_id", "reason")

    def __init__(self, error_code: int, last_stream_id: int, reason: str) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.reason = reason

    def __repr__(self) -> str:
        return f"ConnectionEnded({self.error_code}, last stream {self.last_stream_id}: {self.reason})"


Http2Event = (
    StreamOpened
    | StreamData
    | StreamEnded
    | StreamTrailers
    | StreamReset
    | StreamRefused
    | WindowOpened
    | ConnectionEnded
)
