"""A walk over the frame headers of inbound bytes, one step ahead of h2, for what h2 does not bound.

h2 reads a frame only once all of it has arrived, so by itself it would hold a frame header's
claimed 16 MiB before refusing it, buffer a header block of 64 frames of any size, and answer every
PING and SETTINGS it is sent. The scanner sees each 9-byte frame header as it arrives (a few
integer reads per frame, nothing copied) and tells the session where to pause feeding h2:

- a frame larger than our SETTINGS_MAX_FRAME_SIZE: refused at its header (RFC 9113 4.2), and a
  fixed-size frame of another size (6.3, 6.4, 6.5, 6.7, 6.9) with the RFC's FRAME_SIZE_ERROR;
- a header block past ``max_header_frames`` frames or ``block_limit`` bytes (CONTINUATION flood);
- SETTINGS, PING, empty DATA, PRIORITY, WINDOW_UPDATE, RST_STREAM and unknown frames past their
  budgets (``Http2Limits``), before h2 queues one reply for any of them;
- each DATA frame's payload length (padding removed), through ``check_data``, so a body longer or
  shorter than its content-length resets that stream before h2 would end the whole connection;
- the end of every header block, so the session learns about a new stream (its content-length,
  whether it is refused) before it scans the frames that follow it.

Anything else malformed is left to h2, which ends the connection for it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from asgi_worker.http2.budget import TokenBucket
from asgi_worker.http2.settings import Budget, Http2Limits

__all__ = ["PREFACE", "FrameScanner"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 6: frame types and the flags we read.
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
_PING, _WINDOW_UPDATE, _CONTINUATION = 0x6, 0x8, 0x9
_KNOWN_TYPES = 0x9  # types above this are extensions (RFC 9113 5.5)
# Frames whose payload has one size (RFC 9113 6.3, 6.4, 6.7, 6.9); any other is FRAME_SIZE_ERROR.
_FIXED_SIZES = {_PRIORITY: 5, _RST_STREAM: 4, _PING: 8, _WINDOW_UPDATE: 4}
_END_STREAM = _ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8

# length (24 bits, as 16 + 8), type, flags, reserved bit + stream id.
_FRAME_HEADER = struct.Struct(">HBBBL")
_HEADER_SIZE = 9

# check_data(stream_id, payload length, end_stream) -> a refusal kind, or None to let it through.
DataCheck = Callable[[int, int, bool], str | None]


def _bucket(budget: Budget, now: float) -> TokenBucket:
    return TokenBucket(budget.burst, budget.per_second, now)


class FrameScanner:
    """Frame boundaries and budgets of one connection's inbound bytes.

    ``scan(data, pos)`` walks ``data`` from ``pos`` and returns how far h2 may be fed now. Then
    ``pos`` is where to resume scanning, and ``stop`` is None, or the refusal kind (a ``counts`` key)
    of the frame just read, with ``stop_stream`` its stream for a stream-level refusal (0: the
    connection). On a stop, what h2 may be fed ends before the frame's header in ``data`` (or
    before a padded DATA frame's pad length), so h2 has read every frame before it and not this
    one when the session acts.
    """

    __slots__ = (
        "_block_bytes",
        "_block_frames",
        "_check_data",
        "_clock",
        "_empty_data",
        "_ends_block",
        "_first_frame",
        "_head",
        "_in_block",
        "_max_frame_size",
        "_max_header_frames",
        "_pad_for",
        "_pings",
        "_preface_left",
        "_priorities",
        "_settings",
        "_skip",
        "_unknown",
        "_window_updates",
        "block_limit",
        "pos",
        "resets",
        "stop",
        "stop_stream",
    )

    def __init__(
        self, limits: Http2Limits, block_limit: int, clock: Callable[[], float], check_data: DataCheck
    ) -> None:
        now = clock()
        self._clock = clock
        self._check_data = check_data
        self._max_frame_size = limits.max_frame_size
        self._max_header_frames = limits.max_header_frames
        self.block_limit = block_limit
        self._settings = _bucket(limits.settings_budget, now)
        self._pings = _bucket(limits.ping_budget, now)
        self._empty_data = _bucket(limits.empty_data_budget, now)
        self._priorities = _bucket(limits.priority_budget, now)
        self._window_updates = _bucket(limits.window_update_budget, now)
        self._unknown = _bucket(limits.unknown_frame_budget, now)
        # Shared with the session, which spends it on every stream it refuses.
        self.resets = _bucket(limits.reset_budget, now)
        self._preface_left = len(PREFACE)
        self._first_frame = True  # RFC 9113 3.4: the preface's SETTINGS frame
        self._skip = 0  # payload bytes of the current frame not yet seen
        self._head = b""  # the start of a frame header cut by the end of a read
        self._pad_for: tuple[int, int, bool] | None = None  # a padded DATA frame awaiting its pad length
        self._in_block = False  # inside a header block (CONTINUATION expected)
        self._ends_block = False  # the current frame ends a header block
        self._block_frames = 0
        self._block_bytes = 0
        self.pos = 0
        self.stop: str | None = None
        self.stop_stream = 0

    def credit(self, frames: int) -> None:
        """We sent ``frames`` HEADERS or DATA frames: a PING and two WINDOW_UPDATEs each are expected."""
        self._pings.give(frames)
        self._window_updates.give(2 * frames)

    def scan(self, data: bytes, pos: int) -> int:
        self.stop = None
        end = len(data)
        if self._preface_left:
            pos = self._scan_preface(data, pos)
            if self.stop is not None:
                return pos
        while True:
            if self._skip:
                if self._pad_for is not None and pos < end and self._padded_data(data[pos]):
                    self.pos = pos
                    return pos
                if end - pos < self._skip:
                    self._skip -= end - pos
                    self.pos = end
                    return end
                pos += self._skip
                self._skip = 0
            if self._ends_block:
                self._ends_block = False
                self.pos = pos
                return pos  # h2 reads the whole block now; the session sees its stream first
            if pos >= end:
                self.pos = end
                return end
            start = pos  # where this frame's bytes in ``data`` begin: h2 must not get past it yet
            if self._head or end - pos < _HEADER_SIZE:
                taken = data[pos : pos + _HEADER_SIZE - len(self._head)]
                pos += len(taken)
                self._head += taken
                if len(self._head) < _HEADER_SIZE:
                    self.pos = pos
                    return end
                high, low, kind, flags, stream = _FRAME_HEADER.unpack(self._head)
                self._head = b""
            else:
                high, low, kind, flags, stream = _FRAME_HEADER.unpack_from(data, pos)
                pos += _HEADER_SIZE
            length = high << 8 | low
            self._skip = length
            stop = self._frame(kind, flags, length, stream & 0x7FFFFFFF)
            if stop is not None:
                self.stop = stop
                self.pos = pos
                return start

    def _scan_preface(self, data: bytes, pos: int) -> int:
        """Check the client preface byte by byte (RFC 9113 3.4); h2 would raise without a GOAWAY."""
        done = len(PREFACE) - self._preface_left
        taken = data[pos : pos + self._preface_left]
        if taken != PREFACE[done : done + len(taken)]:
            self.stop = "bad_preface"
            self.stop_stream = 0
            self.pos = pos
            return pos
        self._preface_left -= len(taken)
        return pos + len(taken)

    def _frame(self, kind: int, flags: int, length: int, stream: int) -> str | None:
        """The verdict on a frame header: a refusal kind or None."""
        self.stop_stream = 0
        if length > self._max_frame_size:
            return "frame_too_large"
        if _FIXED_SIZES.get(kind, length) != length or (
            kind == _SETTINGS and (length % 6 if not flags & _ACK else length)
        ):
            return "frame_size_error"  # h2 calls some of these PROTOCOL_ERROR (RFC 9113 6.5: an ACK's)
        if self._first_frame:
            self._first_frame = False
            if kind != _SETTINGS or flags & _ACK:
                return "bad_preface"
            return None
        if self._in_block:
            if kind != _CONTINUATION:
                return None  # h2 refuses any other frame inside a block (RFC 9113 6.10)
            self._block_frames += 1
            self._block_bytes += length
            if self._block_frames > self._max_header_frames:
                return "continuation_flood"
            if self._block_bytes > self.block_limit:
                return "header_block_too_large"
            if flags & _END_HEADERS:
                self._in_block = False
                self._ends_block = True
            return None
        if kind == _DATA:
            if not length:
                if flags & _END_STREAM or self._empty_data.take(self._clock()):
                    return self._data_check(stream, 0, bool(flags & _END_STREAM))
                return "empty_data_flood"
            if flags & _PADDED:
                self._pad_for = (stream, length, bool(flags & _END_STREAM))
                return None
            return self._data_check(stream, length, bool(flags & _END_STREAM))
        if kind == _HEADERS:
            if length > self.block_limit:
                return "header_block_too_large"
            self._block_frames = 1
            self._block_bytes = length
            if flags & _END_HEADERS:
                self._ends_block = True
            else:
                self._in_block = True
            return None
        if kind == _SETTINGS:
            return None if flags & _ACK or self._settings.take(self._clock()) else "settings_flood"
        if kind == _PING:
            return None if flags & _ACK or self._pings.take(self._clock()) else "ping_flood"
        if kind == _WINDOW_UPDATE:
            return None if self._window_updates.take(self._clock()) else "window_update_flood"
        if kind == _RST_STREAM:
            return None if self.resets.take(self._clock()) else "rapid_reset"
        if kind == _PRIORITY:
            return None if self._priorities.take(self._clock()) else "priority_flood"
        if kind > _KNOWN_TYPES:
            return None if self._unknown.take(self._clock()) else "unknown_frame_flood"
        return None  # PUSH_PROMISE, GOAWAY, a stray CONTINUATION: h2 decides

    def _padded_data(self, pad_length: int) -> bool:
        """The first payload byte of a padded DATA frame arrived: check its real length."""
        assert self._pad_for is not None
        stream, length, end_stream = self._pad_for
        self._pad_for = None
        size = length - 1 - pad_length
        if size < 0:
            return False  # padding longer than the frame: h2 ends the connection (RFC 9113 6.1)
        stop = self._data_check(stream, size, end_stream)
        self.stop = stop
        return stop is not None

    def _data_check(self, stream: int, size: int, end_stream: bool) -> str | None:
        stop = self._check_data(stream, size, end_stream)
        if stop is not None:
            self.stop_stream = stream
        return stop
