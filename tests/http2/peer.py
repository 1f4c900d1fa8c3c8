"""An HTTP/2 client over a real socket that sends exactly the frames a test asks for.

Built on hyperframe and hpack rather than h2's client: h2 refuses every frame after a GOAWAY it
received, and a graceful stop is a GOAWAY followed by the rest of the responses. It answers
SETTINGS and PING as any client must, opens its receive windows as DATA arrives (except on the
streams in ``hold``), and records every frame and each stream's response.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.timing import TICK, TIMEOUT

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 6.5.2's default, which the server's SETTINGS does not change for frames we send it.
FRAME_SIZE = 16384


class Response:
    """What one stream received: the final head, the body, trailers, and how it ended."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.interim: list[int] = []  # 1xx statuses
        self.trailers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.ended = False  # END_STREAM received
        self.reset: int | None = None  # the RST_STREAM error code received

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class H2Peer:
    """One client connection. ``read(until)`` pumps frames until ``until()`` holds or the server closes."""

    def __init__(
        self,
        address: tuple[str, int],
        settings: dict[int, int] | None = None,
        preface: bool = True,
        timeout: float = TIMEOUT,
    ) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 2**31  # the server's responses are not under test here
        self.frames: list[Frame] = []
        self.streams: dict[int, Response] = {}
        self.server_settings: dict[int, int] = {}
        self.goaway: GoAwayFrame | None = None
        self.closed = False
        self.send_failed = False  # the server closed while we were still sending
        self.hold: set[int] = set()  # streams whose DATA we do not acknowledge (no WINDOW_UPDATE)
        self.next_stream_id = 1
        self._buffer = bytearray()
        self._block: tuple[int, bytearray, bool] | None = None  # a header block being received
        if preface:
            self.send(PREFACE + SettingsFrame(0, settings or {}).serialize())

    def __enter__(self) -> H2Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # Sending

    def send(self, data: bytes) -> None:
        """Write ``data``; a server that already closed is recorded, not raised (floods expect it)."""
        try:
            self.sock.sendall(data)
        except OSError:
            self.send_failed = True

    def send_frames(self, frames: Iterable[Frame]) -> None:
        self.send(b"".join(frame.serialize() for frame in frames))

    def header_frames(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], end_stream: bool
    ) -> list[Frame]:
        """A header block as HEADERS (+ CONTINUATION) frames of at most ``FRAME_SIZE`` bytes."""
        block = self.encoder.encode(fields)
        pieces = [block[i : i + FRAME_SIZE] for i in range(0, len(block), FRAME_SIZE)] or [b""]
        frames: list[Frame] = []
        for index, piece in enumerate(pieces):
            flags = {"END_HEADERS"} if index == len(pieces) - 1 else set()
            if index == 0:
                frames.append(
                    HeadersFrame(stream_id, piece, flags=flags | ({"END_STREAM"} if end_stream else set()))
                )
            else:
                frames.append(ContinuationFrame(stream_id, piece, flags=flags))
        return frames

    def request(
        self,
        path: bytes = b"/",
        method: bytes = b"GET",
        extra: Iterable[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
        authority: bytes = b"example.com",
        scheme: bytes = b"http",
        end_stream: bool = True,
        stream_id: int | None = None,
    ) -> int:
        """Open a stream with a request (and its body, in frames, when it fits the default window)."""
        if stream_id is None:
            stream_id = self.next_stream_id
        self.next_stream_id = max(self.next_stream_id, stream_id + 2)
        self.streams[stream_id] = Response()
        fields = [(b":method", method), (b":scheme", scheme), (b":authority", authority), (b":path", path)]
        fields += list(extra)
        frames = self.header_frames(stream_id, fields, end_stream and not body)
        if body:
            for offset in range(0, len(body), FRAME_SIZE):
                last = offset + FRAME_SIZE >= len(body)
                chunk = body[offset : offset + FRAME_SIZE]
                frames.append(
                    DataFrame(stream_id, chunk, flags={"END_STREAM"} if last and end_stream else set())
                )
        self.send_frames(frames)
        return stream_id

    def open_window(self, stream_id: int, increment: int) -> None:
        """Stop holding ``stream_id`` and give it (and the connection) ``increment`` more bytes."""
        self.hold.discard(stream_id)
        self.send_frames([WindowUpdateFrame(stream_id, increment), WindowUpdateFrame(0, increment)])

    # Receiving

    def read(self, until: Callable[[], object] = lambda: False, timeout: float = TIMEOUT) -> bool:
        """Receive frames until ``until()`` holds (True), or the server closed or ``timeout`` passed
        (then ``until()`` as it stands)."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(max(left, TICK / 10))
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            except OSError:  # a reset: the server closed with our bytes unread
                data = b""
            if not data:
                self.closed = True
            self._receive(data)
        return bool(until())

    def read_until_closed(self, timeout: float = TIMEOUT) -> bool:
        """Everything until the server closes; whether it did within ``timeout``."""
        return self.read(lambda: self.closed, timeout)

    def response(self, stream_id: int, timeout: float = TIMEOUT) -> Response:
        """The stream's response once it is complete (or reset); fails the test after ``timeout``."""
        stream = self.streams[stream_id]
        assert self.read(lambda: stream.done, timeout), f"stream {stream_id} unfinished: {self.summary()}"
        return stream

    def of_type(self, kind: type) -> list[Any]:
        return [frame for frame in self.frames if isinstance(frame, kind)]

    def summary(self) -> str:
        """The frames received so far, short: for assertion messages."""
        names = [f"{type(f).__name__}({f.stream_id})" for f in self.frames[-20:]]
        return f"closed={self.closed} goaway={self.goaway_code()} last frames={names}"

    def goaway_code(self) -> int | None:
        return None if self.goaway is None else self.goaway.error_code

    def _receive(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        while len(buffer) - pos >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buffer)[pos : pos + 9])
            if len(buffer) - pos - 9 < length:
                break
            frame.parse_body(memoryview(bytes(buffer[pos + 9 : pos + 9 + length])))
            pos += 9 + length
            self.frames.append(frame)
            self._on_frame(frame)
        del buffer[:pos]

    def _stream(self, stream_id: int) -> Response:
        return self.streams.setdefault(stream_id, Response())

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                self.server_settings.update(frame.settings)
                self.send_frames([SettingsFrame(0, flags={"ACK"})])
        elif isinstance(frame, PingFrame):
            if "ACK" not in frame.flags:
                self.send_frames([PingFrame(0, frame.opaque_data, flags={"ACK"})])
        elif isinstance(frame, HeadersFrame):
            self._block = (frame.stream_id, bytearray(frame.data), "END_STREAM" in frame.flags)
            if "END_HEADERS" in frame.flags:
                self._end_block()
        elif isinstance(frame, ContinuationFrame):
            assert self._block is not None and self._block[0] == frame.stream_id, "a stray CONTINUATION"
            self._block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags:
                self._end_block()
        elif isinstance(frame, DataFrame):
            stream = self._stream(frame.stream_id)
            stream.body += frame.data
            if "END_STREAM" in frame.flags:
                stream.ended = True
            size = frame.flow_controlled_length
            if size and frame.stream_id not in self.hold:
                self.send_frames([WindowUpdateFrame(frame.stream_id, size), WindowUpdateFrame(0, size)])
        elif isinstance(frame, RstStreamFrame):
            self._stream(frame.stream_id).reset = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame

    def _end_block(self) -> None:
        assert self._block is not None
        stream_id, block, end_stream = self._block
        self._block = None
        fields = [(bytes(name), bytes(value)) for name, value in self.decoder.decode(bytes(block), raw=True)]
        stream = self._stream(stream_id)
        if stream.status is not None:
            stream.trailers = fields
        else:
            status = int(dict(fields)[b":status"])
            if status < 200:
                stream.interim.append(status)
                return
            stream.status = status
            stream.headers = [(name, value) for name, value in fields if not name.startswith(b":")]
        if end_stream:
            stream.ended = True
