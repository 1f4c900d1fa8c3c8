"""Test helpers: an ``Http2Session`` on a fake clock, a real h2 client, raw frames, parsed output."""

from __future__ import annotations

from typing import Any

import hpack
from h2.config import H2Configuration
from h2.connection import H2Connection
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

from asgi_worker.http.limits import RequestLimits
from asgi_worker.http2.events import ConnectionEnded, StreamOpened
from asgi_worker.http2.session import Http2Session
from asgi_worker.http2.settings import Http2Limits

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", b"/")]


def request(
    method: bytes = b"GET", path: bytes = b"/", *extra: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """A request header block: the four pseudo-header fields, then ``extra``."""
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", path),
        *extra,
    ]


class FakeClock:
    """The session's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def parse_frames(data: bytes) -> list[Frame]:
    """Every frame in ``data``; fails unless ``data`` is whole, well-formed frames."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 9, "a cut frame header"
        frame, length = Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        assert pos + 9 + length <= len(data), "a cut frame"
        frame.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        frames.append(frame)
        pos += 9 + length
    return frames


def raw(kind: int, flags: int, stream_id: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """Any frame, including ones no library would build (``length`` may lie about the payload)."""
    size = len(payload) if length is None else length
    return size.to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


class Server:
    """A session under test, its events and everything it wrote, parsed into frames."""

    def __init__(
        self,
        limits: RequestLimits | None = None,
        settings: Http2Limits | None = None,
        preface: bool = True,
    ) -> None:
        self.clock = FakeClock()
        self.session = Http2Session(limits or RequestLimits(), settings or Http2Limits(), self.clock)
        self.events: list[Any] = []
        self.frames: list[Frame] = []
        self.session.start()
        self.frames += parse_frames(self.session.data_to_send())
        self.encoder = hpack.Encoder()
        if preface:
            self.feed(PREFACE + SettingsFrame(0).serialize())

    def feed(self, data: bytes) -> list[Any]:
        events = self.session.feed(data)
        self.events += events
        self.frames += parse_frames(self.session.data_to_send())
        return events

    def send(self, *frames: Frame) -> list[Any]:
        return self.feed(b"".join(frame.serialize() for frame in frames))

    def headers(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], end_stream: bool = True, **kwargs: Any
    ) -> HeadersFrame:
        """A HEADERS frame carrying ``fields``, encoded with this connection's HPACK state."""
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        return HeadersFrame(stream_id, self.encoder.encode(fields), flags=flags, **kwargs)

    def block(self, fields: list[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(fields)

    def opened(self) -> list[StreamOpened]:
        return [event for event in self.events if isinstance(event, StreamOpened)]

    def of_type(self, kind: type) -> list[Any]:
        return [frame for frame in self.frames if isinstance(frame, kind)]

    def goaway(self) -> GoAwayFrame | None:
        goaways = self.of_type(GoAwayFrame)
        return goaways[-1] if goaways else None

    def goaway_code(self) -> int | None:
        goaway = self.goaway()
        return None if goaway is None else goaway.error_code

    def resets(self, stream_id: int | None = None) -> list[int]:
        """The error codes of the RST_STREAM frames we sent (on ``stream_id``)."""
        return [
            frame.error_code
            for frame in self.of_type(RstStreamFrame)
            if stream_id is None or frame.stream_id == stream_id
        ]

    def ended(self) -> ConnectionEnded | None:
        ends = [event for event in self.events if isinstance(event, ConnectionEnded)]
        assert len(ends) <= 1
        return ends[0] if ends else None


class Pair:
    """The session and a real h2 client talking: every byte each writes reaches the other."""

    def __init__(
        self,
        limits: RequestLimits | None = None,
        settings: Http2Limits | None = None,
        client_settings: dict[int, int] | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.session = Http2Session(limits or RequestLimits(), settings or Http2Limits(), self.clock)
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)  # in force once the session acknowledges
        self.client_events: list[Any] = []
        self.events: list[Any] = self.session.start()
        self.pump()

    def pump(self) -> list[Any]:
        """Move bytes both ways until both sides are quiet; the session's new events."""
        new: list[Any] = []
        while True:
            to_server = self.client.data_to_send()
            if to_server:
                new += self.session.feed(to_server)
            to_client = self.session.data_to_send()
            if to_client:
                parse_frames(to_client)
                self.client_events += self.client.receive_data(to_client)
            if not to_server and not to_client:
                break
        self.events += new
        return new

    def get(self, stream_id: int, path: bytes = b"/", *extra: tuple[bytes, bytes]) -> list[Any]:
        self.client.send_headers(stream_id, request(b"GET", path, *extra), end_stream=True)
        return self.pump()

    def client_window(self, stream_id: int) -> int:
        return self.client.local_flow_control_window(stream_id)


def data_frame(stream_id: int, data: bytes, end_stream: bool = False, **kwargs: Any) -> DataFrame:
    return DataFrame(stream_id, data, flags=["END_STREAM"] if end_stream else [], **kwargs)


def continuation(stream_id: int, data: bytes, end_headers: bool = False) -> ContinuationFrame:
    return ContinuationFrame(stream_id, data, flags=["END_HEADERS"] if end_headers else [])
