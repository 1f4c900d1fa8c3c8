"""``Http2Session``: one server-side HTTP/2 connection as bytes in, events and bytes out (no I/O).

The only module that drives h2 (``tuned.py`` replaces three of its per-stream costs). The asyncio
shell drives it:

    session = Http2Session(request_limits, http2_limits, clock)
    events = session.start(bytes_read_while_sniffing)   # our SETTINGS, then those bytes
    events = session.feed(data)                         # on every read
    session.send_head / send_data / send_trailers / reset / consumed / goaway
    transport.write(session.data_to_send())             # after each of the above

What the shell must do with each event is in ``events.py``. Three duties are the shell's: stop
reading while the transport's write buffer is over its high-water mark (so the replies a peer asks
for, PING and SETTINGS ACKs, cannot pile up unread); reset a stream whose ``blocked_since`` is older
than its send timeout (a peer that never opens its window); and close the transport after a
``ConnectionEnded``, or once ``open_streams`` is 0 after ``goaway``.

How h2 is used, and where it is worked around:

- Its inbound header checks are off: ``request.py`` does them in one pass, as stream errors.
- It only reads whole frames, so ``frames.FrameScanner`` walks frame headers first (sizes, floods,
  header blocks, content-length) and the session feeds h2 up to each decision point.
- It would end the connection for one stream too many (``TooManyStreamsError``, PROTOCOL_ERROR); RFC
  9113 5.1.2 wants REFUSED_STREAM. So h2 enforces twice our advertised limit (``start``), and the
  session refuses the first stream past it, before h2 sees the next header block.
- Once a GOAWAY is sent through h2 it refuses to send anything more, so a graceful ``goaway`` writes
  its own GOAWAY frame and in-flight streams finish; h2's is used only to end the connection.
  The same holds for a GOAWAY h2 receives: the connection ends there, and responses still in
  flight are cut (clients send one when they are done, so this rarely costs anything).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    TrailersReceived,
    WindowUpdated,
)
from h2.events import StreamEnded as H2StreamEnded
from h2.events import StreamReset as H2StreamReset
from h2.exceptions import DenialOfServiceError, FlowControlError, H2Error, ProtocolError
from h2.settings import SettingCodes, Settings

from asgi_worker.errors import RequestError
from asgi_worker.http.limits import RequestLimits
from asgi_worker.http2.events import (
    ConnectionEnded,
    ErrorCode,
    Http2Event,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamRefused,
    StreamReset,
    StreamTrailers,
    WindowOpened,
)
from asgi_worker.http2.frames import FrameScanner
from asgi_worker.http2.request import Malformed, read_request, read_trailers
from asgi_worker.http2.response import response_fields, trailer_fields
from asgi_worker.http2.settings import Http2Limits, header_list_sizes
from asgi_worker.http2.tuned import ServerConnection, server_config

__all__ = ["REFUSALS", "Http2Session"]

# One key per kind of refusal, in ``Http2Session.counts`` (``refusals`` is their sum): the shell logs
# each at debug level and the metrics count them. A GOAWAY's kinds first, then a stream's.
REFUSALS = (
    "bad_preface",
    "frame_too_large",
    "frame_size_error",
    "header_block_too_large",
    "continuation_flood",
    "header_list_too_large",
    "settings_flood",
    "ping_flood",
    "empty_data_flood",
    "priority_flood",
    "window_update_flood",
    "unknown_frame_flood",
    "rapid_reset",
    "flow_control_error",
    "protocol_error",
    "internal_error",
    "stream_ids_exhausted",
    "too_many_streams",
    "refused_after_goaway",
    "malformed_request",
    "refused_request",
    "body_too_large",
    "content_length_mismatch",
)

# The GOAWAY code for each connection-level refusal of the frame scanner.
_CONNECTION_CODES = {
    "bad_preface": ErrorCode.PROTOCOL_ERROR,  # RFC 9113 3.4
    "frame_too_large": ErrorCode.FRAME_SIZE_ERROR,  # 4.2
    "frame_size_error": ErrorCode.FRAME_SIZE_ERROR,  # 6.3, 6.4, 6.5, 6.7, 6.9
}
# The initial connection window every peer starts with (RFC 9113 6.9.2).
_DEFAULT_WINDOW = 65535
_LAST_STREAM_ID = 2**31 - 1


class _Stream:
    """What the session keeps of one stream the shell knows (opened, or refused with a status)."""

    __slots__ = (
        "blocked_since",
        "expected",
        "local_done",
        "received",
        "refused",
        "remote_done",
        "scanned",
        "stream_id",
        "tunnel",
        "unacked",
    )

    def __init__(self, stream_id: int, expected: int) -> None:
        self.stream_id = stream_id
        self.expected = expected  # content-length, -1 if none
        self.scanned = 0  # body bytes the frame scanner let through (content-length check)
        self.received = 0  # body bytes delivered (--limit-request-body)
        self.unacked = 0  # flow-controlled bytes delivered and not yet consumed
        self.remote_done = False  # END_STREAM received
        self.local_done = False  # our END_STREAM sent
        self.refused = False  # no more body is delivered: the status is the answer
        self.blocked_since: float | None = None  # waiting for the peer's window since
        self.tunnel = False  # an extended CONNECT (RFC 8441): its DATA is a byte stream, not a body


class Http2Session:
    """The protocol state of one HTTP/2 connection; see the module docstring for the shell's part."""

    def __init__(self, limits: RequestLimits, settings: Http2Limits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.settings = settings
        self.counts: dict[str, int] = dict.fromkeys(REFUSALS, 0)
        self.refusals = 0  # the sum of ``counts``: one comparison tells the shell whether any moved
        self._clock = clock
        self._list_limit, self._list_hard_limit = header_list_sizes(limits)
        self._conn = ServerConnection(config=server_config())
        self._scanner = FrameScanner(settings, self._list_hard_limit, clock, self._check_data)
        self._streams: dict[int, _Stream] = {}
        self._events: list[Http2Event] = []
        self._opened_now: set[int] = set()  # streams opened in the current feed
        self._vanished: set[int] = set()  # ... and reset by the peer in the same feed
        self._out = bytearray()  # our own frames, after whatever h2 had queued before them
        self._blocked = 0  # streams waiting for a send window
        self._ended = False
        self._goaway_last: int | None = None
        # Past this stream id we ask the client to reconnect while ids remain for its open streams.
        self._last_useful_id = _LAST_STREAM_ID - 2 * settings.max_concurrent_streams

    # -- state the shell reads -------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        """Streams the shell still has to finish (opened, or refused and not yet answered)."""
        return len(self._streams)

    @property
    def highest_stream_id(self) -> int:
        """The highest stream id the peer has opened: a graceful GOAWAY's last stream."""
        return self._conn.highest_inbound_stream_id

    @property
    def ended(self) -> bool:
        """A GOAWAY that ends the connection was sent or received."""
        return self._ended

    @property
    def draining(self) -> bool:
        """A graceful GOAWAY was sent: finish the open streams, then close."""
        return self._goaway_last is not None

    def stream_open(self, stream_id: int) -> bool:
        """True while the shell may still send on ``stream_id``."""
        return stream_id in self._streams and not self._ended

    def blocked_since(self, stream_id: int) -> float | None:
        """When the stream last sent a byte while waiting for the peer's window; None if not waiting."""
        stream = self._streams.get(stream_id)
        return None if stream is None else stream.blocked_since

    # -- bytes in ----------------------------------------------------------------------------------

    def start(self, preface_seen: bytes = b"") -> list[Http2Event]:
        """Queue our SETTINGS (and the connection window's raise), then read ``preface_seen``: the
        bytes the shell already took from the transport to recognise the client preface."""
        settings = self.settings
        values = {
            SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: self._list_limit,
            SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
            SettingCodes.HEADER_TABLE_SIZE: settings.header_table_size,
        }
        if settings.enable_connect_protocol:
            values[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        conn = self._conn
        conn.local_settings = Settings(client=False, initial_values=values)
        conn.initiate_connection()
        # What h2 itself enforces from now on: the same but twice the stream limit (module
        # docstring). Our values are in force at once: a client that races ahead with the RFC's
        # defaults sends less, never more.
        values[SettingCodes.MAX_CONCURRENT_STREAMS] = 2 * settings.max_concurrent_streams
        conn.local_settings = Settings(client=False, initial_values=values)
        conn.max_inbound_frame_size = settings.max_frame_size
        conn.decoder.max_header_list_size = self._list_hard_limit
        conn.decoder.max_allowed_table_size = settings.header_table_size
        if settings.connection_window_size > _DEFAULT_WINDOW:
            conn.increment_flow_control_window(settings.connection_window_size - _DEFAULT_WINDOW)
        return self.feed(preface_seen) if preface_seen else []

    def feed(self, data: bytes) -> list[Http2Event]:
        """The events ``data`` completes, in order. Never raises for bad bytes: a refusal is a reset
        stream or a ``ConnectionEnded``, and after that every feed returns nothing."""
        if self._ended or not data:
            return []
        pending = self._conn.data_to_send()
        if pending:  # h2 drops what it has queued when a GOAWAY arrives; keep what the shell sent
            self._out += pending
        events = self._events = []
        scanner = self._scanner
        size = len(data)
        fed = 0
        pos = 0
        while True:
            cut = scanner.scan(data, pos)
            if cut > fed:
                self._receive(data if fed == 0 and cut == size else memoryview(data)[fed:cut])
                fed = cut
                if self._ended:
                    break
            if scanner.stop is not None:
                self._refuse(scanner.stop, scanner.stop_stream)
                if self._ended:
                    break
            pos = scanner.pos
            if pos >= size:
                break
        if self._vanished:
            vanished = self._vanished
            events = [event for event in events if getattr(event, "stream_id", 0) not in vanished]
            vanished.clear()
        self._opened_now.clear()
        self._events = []
        return events

    # -- bytes out ---------------------------------------------------------------------------------

    def send_head(
        self, stream_id: int, status: int, headers: Iterable[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        """Queue the response head (or a 1xx, with ``end_stream`` False). Connection-specific
        headers are dropped; ``date``/``server`` defaults are the shell's to add."""
        stream = self._streams.get(stream_id)
        if stream is None or self._ended:
            return
        self._conn.queue_head(stream_id, response_fields(status, headers), end_stream)
        self._scanner.credit(1)
        if end_stream:
            self._local_end(stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> int:
        """Queue as much of ``data`` as the stream's and the connection's send windows allow, in
        frames of the peer's maximum size; return how much. The caller resends the rest after a
        ``WindowOpened``; ``end_stream`` takes effect with the last byte. On a stream that is gone
        (``StreamReset``) the data is dropped and counted as sent."""
        stream = self._streams.get(stream_id)
        if stream is None or self._ended:
            return len(data)
        conn = self._conn
        size = len(data)
        window = conn.local_flow_control_window(stream_id)
        count = size if size <= window else max(window, 0)
        frame_size = conn.max_outbound_frame_size
        last = end_stream and count == size
        if count <= frame_size:
            frames = 0
            if count or last:
                conn.queue_data(stream_id, data if count == size else memoryview(data)[:count], last)
                frames = 1
        else:
            view = memoryview(data)
            frames = 0
            for offset in range(0, count, frame_size):
                chunk = view[offset : min(offset + frame_size, count)]
                conn.queue_data(stream_id, chunk, last and offset + frame_size >= count)
                frames += 1
        self._scanner.credit(frames)
        if count < size:
            if stream.blocked_since is None:
                self._blocked += 1
                stream.blocked_since = self._clock()
            elif count:
                stream.blocked_since = self._clock()  # progress: the stall clock starts again
        elif stream.blocked_since is not None:
            stream.blocked_since = None
            self._blocked -= 1
        if last:
            self._local_end(stream)
        return count

    def send_trailers(self, stream_id: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Queue the response trailers; they end the stream."""
        stream = self._streams.get(stream_id)
        if stream is None or self._ended:
            return
        fields = trailer_fields(headers)
        if fields:
            self._conn.queue_head(stream_id, fields, True)
        else:  # no field left: END_STREAM on an empty DATA frame (h2 cannot send an empty block)
            self._conn.queue_data(stream_id, b"", True)
        self._scanner.credit(1)
        self._local_end(stream)

    def reset(self, stream_id: int, code: int = ErrorCode.INTERNAL_ERROR) -> None:
        """Abandon a stream (an app that failed after its head, a send timeout, a shutdown)."""
        stream = self._streams.get(stream_id)
        if stream is None or self._ended:
            return
        self._conn.reset_stream(stream_id, code)
        self._close(stream)

    def consumed(self, stream_id: int, count: int) -> None:
        """The app took ``count`` flow-controlled bytes (``StreamData.flow_length``) of this stream:
        let the peer send that much more. Never more than it sent, so the windows stay bounded."""
        stream = self._streams.get(stream_id)
        if stream is None or count <= 0 or self._ended:
            return
        if count > stream.unacked:
            count = stream.unacked
        if count:
            stream.unacked -= count
            self._conn.acknowledge_received_data(count, stream_id)

    def goaway(self, code: int = ErrorCode.NO_ERROR, last_stream_id: int | None = None) -> None:
        """NO_ERROR: a graceful stop; streams up to ``last_stream_id`` (default: the highest opened)
        finish, later ones are refused, and the shell closes once ``open_streams`` is 0. Any other
        code ends the connection now (flush ``data_to_send()`` and close)."""
        if self._ended:
            return
        last = self.highest_stream_id if last_stream_id is None else last_stream_id
        if code != ErrorCode.NO_ERROR:
            self._conn.close_connection(code, last_stream_id=last)
            self._ended = True
            return
        if self._goaway_last is not None and last >= self._goaway_last:
            return
        self._goaway_last = last
        self._out += self._conn.data_to_send()
        self._out += _goaway_frame(last, code)

    def data_to_send(self) -> bytes:
        """Everything queued for the transport since the last call."""
        data = self._conn.data_to_send()
        if self._out:
            data = bytes(self._out) + data
            self._out.clear()
        return data

    # -- h2's events -------------------------------------------------------------------------------

    def _receive(self, data: bytes | memoryview) -> None:
        try:
            h2_events = self._conn.receive_data(data)
        except H2Error as error:
            self._h2_failed(error)
            return
        except Exception as error:  # a bug of h2's on hostile bytes must not escape feed
            self._end("internal_error", ErrorCode.INTERNAL_ERROR, f"h2 raised {error!r}")
            return
        for event in h2_events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
                if self._ended:
                    return

    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if self._goaway_last is not None and stream_id > self._goaway_last:
            reason = "opened after our GOAWAY"
            self._refuse_stream(stream_id, ErrorCode.REFUSED_STREAM, "refused_after_goaway", reason)
            return
        if len(self._streams) >= self.settings.max_concurrent_streams:
            self._refuse_stream(
                stream_id, ErrorCode.REFUSED_STREAM, "too_many_streams", "over the concurrent stream limit"
            )
            return
        try:
            request = read_request(
                event.headers,  # bytes pairs: header_encoding is None
                event.stream_ended is not None,
                self.limits,
                self._list_limit,
                self.settings.enable_connect_protocol,
            )
        except Malformed as error:
            self._refuse_stream(stream_id, ErrorCode.PROTOCOL_ERROR, "malformed_request", error.reason)
            return
        except RequestError as error:
            stream = self._streams[stream_id] = _Stream(stream_id, -1)
            stream.refused = True
            self._count("body_too_large" if error.status == 413 else "refused_request")
            self._events.append(StreamRefused(stream_id, error.status, error.detail))
            self._spend_reset()
            return
        stream = self._streams[stream_id] = _Stream(stream_id, request.content_length)
        stream.tunnel = request.protocol is not None
        self._opened_now.add(stream_id)
        self._events.append(StreamOpened(stream_id, request.head, request.scheme, request.protocol))
        if stream_id >= self._last_useful_id and self._goaway_last is None:
            self._count("stream_ids_exhausted")
            self.goaway(ErrorCode.NO_ERROR, stream_id)

    def _on_data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        flow = event.flow_controlled_length
        stream = self._streams.get(stream_id)
        if stream is None or stream.refused:
            if flow:
                self._conn.acknowledge_received_data(flow, stream_id)
            return
        data = event.data
        stream.received += len(data)
        body_limit = self.limits.body
        if body_limit and stream.received > body_limit and not stream.tunnel:
            stream.refused = True
            self._count("body_too_large")
            if flow:
                self._conn.acknowledge_received_data(flow, stream_id)
            reason = f"request body over the {body_limit}-byte limit"
            self._events.append(StreamRefused(stream_id, 413, reason))
            return
        if data:
            stream.unacked += flow
            self._events.append(StreamData(stream_id, data, flow))
        elif flow:
            self._conn.acknowledge_received_data(flow, stream_id)  # padding alone: nothing to read

    def _on_trailers(self, event: TrailersReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.refused:
            return
        try:
            trailers = read_trailers(event.headers)
        except Malformed as error:
            self._count("malformed_request")
            self._reset_stream(stream, ErrorCode.PROTOCOL_ERROR, error.reason)
            return
        self._events.append(StreamTrailers(event.stream_id, trailers))

    def _on_stream_ended(self, event: H2StreamEnded) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        stream.remote_done = True
        if not stream.refused:
            if stream.expected >= 0 and stream.received != stream.expected:  # ended by trailers
                self._count("content_length_mismatch")
                self._reset_stream(stream, ErrorCode.PROTOCOL_ERROR, "body shorter than its content-length")
                return
            self._events.append(StreamEnded(event.stream_id))
        if stream.local_done:
            self._close(stream)

    def _on_reset(self, event: H2StreamReset) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        self._close(stream)
        if event.remote_reset:
            if event.stream_id in self._opened_now:
                self._vanished.add(event.stream_id)  # opened and reset in one read: the app never runs
                return
            reason = "the peer reset the stream"
        else:
            reason = "h2 reset the stream for a protocol error"
        self._events.append(StreamReset(event.stream_id, int(event.error_code), event.remote_reset, reason))

    def _on_window(self, event: WindowUpdated) -> None:
        if not self._blocked:
            return
        if event.stream_id == 0:
            self._events.append(WindowOpened(0))
        else:
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.blocked_since is not None:
                self._events.append(WindowOpened(event.stream_id))

    def _on_settings(self, event: RemoteSettingsChanged) -> None:
        if self._blocked and SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._events.append(WindowOpened(0))

    def _on_goaway(self, event: ConnectionTerminated) -> None:
        # h2 refuses to send anything after a GOAWAY it received, so the connection ends here.
        self._ended = True
        code = int(event.error_code) if event.error_code is not None else 0
        last = event.last_stream_id if event.last_stream_id is not None else 0
        self._events.append(ConnectionEnded(code, last, "the peer sent GOAWAY"))

    # -- refusals ----------------------------------------------------------------------------------

    def _count(self, kind: str) -> None:
        self.counts[kind] += 1
        self.refusals += 1

    def _check_data(self, stream_id: int, size: int, end_stream: bool) -> str | None:
        """The scanner's question on each DATA frame before h2 reads it: does it break the declared
        content-length (RFC 9113 8.1.1)? h2 would end the connection for it; we reset the stream."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.expected < 0 or stream.refused:
            return None
        scanned = stream.scanned + size
        if scanned > stream.expected or (end_stream and scanned != stream.expected):
            return "content_length_mismatch"
        stream.scanned = scanned
        return None

    def _refuse(self, kind: str, stream_id: int) -> None:
        """Act on the frame scanner's stop."""
        if stream_id:
            self._count(kind)
            stream = self._streams.get(stream_id)
            if stream is not None:
                reason = "body length differs from its content-length"
                self._reset_stream(stream, ErrorCode.PROTOCOL_ERROR, reason)
            return
        code = _CONNECTION_CODES.get(kind, ErrorCode.ENHANCE_YOUR_CALM)
        self._end(kind, code, f"refused: {kind.replace('_', ' ')}")

    def _refuse_stream(self, stream_id: int, code: int, kind: str, reason: str) -> None:
        """Reset a stream the shell has not heard of; it costs the peer from its reset budget."""
        self._count(kind)
        self._conn.reset_stream(stream_id, code)
        self._events.append(StreamReset(stream_id, code, False, reason))
        self._spend_reset()

    def _reset_stream(self, stream: _Stream, code: int, reason: str) -> None:
        """Reset a stream the shell knows, and tell it."""
        self._conn.reset_stream(stream.stream_id, code)
        self._close(stream)
        self._events.append(StreamReset(stream.stream_id, code, False, reason))
        self._spend_reset()

    def _spend_reset(self) -> None:
        if not self._ended and not self._scanner.resets.take(self._clock()):
            self._end("rapid_reset", ErrorCode.ENHANCE_YOUR_CALM, "streams refused or reset too fast")

    def _h2_failed(self, error: H2Error) -> None:
        """h2 refused a frame; for a ``ProtocolError`` it has queued its GOAWAY already."""
        if isinstance(error, DenialOfServiceError):
            kind = "header_list_too_large"
        elif isinstance(error, FlowControlError):
            kind = "flow_control_error"
        else:
            kind = "protocol_error"
        if isinstance(error, ProtocolError):
            self._count(kind)
            self._ended = True
            self._events.append(ConnectionEnded(int(error.error_code), self.highest_stream_id, str(error)))
        else:
            self._end(kind, ErrorCode.PROTOCOL_ERROR, str(error))

    def _end(self, kind: str, code: int, reason: str) -> None:
        """End the connection with a GOAWAY carrying ``code``."""
        self._count(kind)
        self._ended = True
        last = self.highest_stream_id
        try:
            self._conn.close_connection(code, last_stream_id=last)
        except H2Error:  # h2 already closed it; its GOAWAY is queued
            pass
        self._events.append(ConnectionEnded(code, last, reason))

    # -- stream bookkeeping ------------------------------------------------------------------------

    def _local_end(self, stream: _Stream) -> None:
        stream.local_done = True
        if not stream.remote_done:
            # RFC 9113 8.1: the response is complete; ask the client to stop sending the request.
            self._conn.reset_stream(stream.stream_id, ErrorCode.NO_ERROR)
        self._close(stream)

    def _close(self, stream: _Stream) -> None:
        """Forget a stream; the body it received and nobody consumed reopens the connection window."""
        del self._streams[stream.stream_id]
        if stream.unacked:
            self._conn.acknowledge_received_data(stream.unacked, stream.stream_id)
            stream.unacked = 0
        if stream.blocked_since is not None:
            self._blocked -= 1


def _goaway_frame(last_stream_id: int, code: int) -> bytes:
    """A GOAWAY frame (RFC 9113 6.8), built here so h2's connection stays open for in-flight streams."""
    return (
        b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
        + (last_stream_id & _LAST_STREAM_ID).to_bytes(4, "big")
        + int(code).to_bytes(4, "big")
    )


# h2's events we act on, by exact type (one dict lookup per event); the rest need nothing from us.
_HANDLERS: dict[type, Callable[[Http2Session, Any], None]] = {
    RequestReceived: Http2Session._on_request,
    DataReceived: Http2Session._on_data,
    TrailersReceived: Http2Session._on_trailers,
    H2StreamEnded: Http2Session._on_stream_ended,
    H2StreamReset: Http2Session._on_reset,
    WindowUpdated: Http2Session._on_window,
    RemoteSettingsChanged: Http2Session._on_settings,
    ConnectionTerminated: Http2Session._on_goaway,
}
