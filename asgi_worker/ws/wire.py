"""The websockets library's frame ``Protocol``, with a large message's bytes moved fewer times.

Why: echoing a 1 MiB message through the stock library costs five user-space copies besides the
kernel's two: the event loop's ``bytes`` object, the reader's bytearray growing by realloc, the
payload sliced out of it, unmasking, and ``Frame.serialize`` building header plus payload in a
``BytesIO``. Only unmasking is needed. The library's parser, state machine, close handling and
extensions are used unchanged; this module changes where the bytes sit, nothing about what they
mean.

Rules:
- Receiving: ``PayloadReader`` keeps the library's ``StreamReader`` interface (the parser calls
  ``read_exact``). A payload of ``LARGE_PAYLOAD`` bytes or more gets its own bytearray, and the
  event loop reads straight into it (``asyncio.BufferedProtocol``: ``receive_buffer`` then
  ``received``). Everything else lands in one shared scratch buffer (``ReadMemory``) and is
  appended to the library's buffer, as before.
- Memory follows the bytes. A header may announce up to ``--ws-max-size``. While all the server's
  WebSockets together hold less than ``AHEAD_BUDGET`` bytes for payloads still to arrive, a
  payload's buffer starts at up to ``EAGER_PAYLOAD`` (a 1 MiB message never regrows); otherwise at
  twice what has arrived (at least ``MIN_PAYLOAD_BUFFER``). Either way a full buffer doubles. So
  peers that send headers and stall cost ``AHEAD_BUDGET`` once, then ``MIN_PAYLOAD_BUFFER`` each;
  beyond that no peer makes us hold more than twice what it sent (three times for the instant of
  a regrow, old and new buffer together).
- When the library stops parsing (a failed or closed connection: ``discard()``), a payload in
  progress is dropped at once.
- Sending: a large frame without extensions leaves as two chunks, our header and the app's own
  payload object (servers never mask, RFC 6455 5.1); every other frame is the library's.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import Any, cast

from websockets.frames import Frame
from websockets.protocol import Protocol, Side, State
from websockets.streams import StreamReader

__all__ = [
    "AHEAD_BUDGET",
    "EAGER_PAYLOAD",
    "LARGE_PAYLOAD",
    "MIN_PAYLOAD_BUFFER",
    "PayloadReader",
    "ReadMemory",
    "ServerFrames",
]

# Payloads at least this long get their own buffer and are read into directly; below it, slicing
# out of the shared buffer is cheaper than a buffer of their own. Also the 64-bit-length threshold
# of RFC 6455 5.2, so every frame we serialise ourselves has the same header form.
LARGE_PAYLOAD = 65536
# Bytes of a payload's buffer allocated before its bytes arrive, within AHEAD_BUDGET (then doubled
# as it fills): a message up to 1 MiB arrives without a regrow, each of which copies what came so
# far. Allocating the announced size whole would let a header reserve --ws-max-size (16 MiB).
EAGER_PAYLOAD = 1 << 20

# Bytes all of one server's WebSockets may hold, together, for payloads not yet arrived: 32 large
# messages arriving at once at full speed. Past it, buffers grow with what arrives only.
AHEAD_BUDGET = 32 << 20
# Bytes a payload's buffer starts at outside the budget: what a header alone can then cost us.
MIN_PAYLOAD_BUFFER = 4096

# Bytes of the one read buffer all of a server's WebSockets share for everything but large
# payloads: libuv's suggested read size. The start of a large payload that arrives with its header
# is copied twice (scratch, library buffer, payload), so bigger is slower there: 256 KiB cost the
# 1 MiB echo benchmark about 10%; bursts of small messages need far less.
SCRATCH_SIZE = 64 * 1024

_LONG_HEADER = struct.Struct("!BBQ").pack


class ReadMemory:
    """What all WebSockets of one server (one event loop) share for reading.

    ``scratch`` is filled and emptied within one read callback, so one is enough; ``ahead`` counts
    the bytes of payload buffers allocated but not yet received, against ``AHEAD_BUDGET``.
    """

    __slots__ = ("ahead", "scratch")

    def __init__(self, scratch_size: int = SCRATCH_SIZE) -> None:
        self.scratch = memoryview(bytearray(scratch_size))
        self.ahead = 0


class PayloadReader(StreamReader):
    """The library's stream reader, reading large payloads in place.

    Contract: the parser uses it exactly as the stock reader (``feed_data``, ``feed_eof``,
    ``read_exact``, ``at_eof``, ``discard``). The event loop side may instead call
    ``receive_buffer()`` and then ``received(nbytes)`` after writing ``nbytes`` into it; the buffer
    is valid until that call only.
    """

    def __init__(self, memory: ReadMemory) -> None:
        super().__init__()
        self._memory = memory
        self._scratch = memory.scratch
        self._payload: bytearray | None = None  # the large payload being read, if any
        self._size = 0  # its announced length
        self._filled = 0  # bytes of it received

    def read_exact(self, n: int) -> Generator[None, None, bytearray]:
        if n < LARGE_PAYLOAD:
            return (yield from super().read_exact(n))
        buffer = self.buffer
        if len(buffer) >= n:  # all here already: hand over the buffer itself, keep the tail
            self.buffer = buffer[n:]
            del buffer[n:]
            return buffer
        have = len(buffer)
        memory = self._memory
        capacity = min(n, max(EAGER_PAYLOAD, have))
        if memory.ahead + capacity - have > AHEAD_BUDGET:
            capacity = min(n, max(2 * have, MIN_PAYLOAD_BUFFER))
        payload = bytearray(capacity)
        payload[:have] = buffer
        del buffer[:]
        self._payload, self._size, self._filled = payload, n, have
        memory.ahead += capacity - have
        try:
            while self._filled < n:
                if self.eof:
                    raise EOFError(f"stream ends after {self._filled} bytes, expected {n} bytes")
                yield
            payload = self._payload  # not the one allocated above: it may have been regrown
            assert payload is not None
            return payload
        finally:
            self.release()

    def release(self) -> None:
        """Drop the payload in progress, if any (read whole, or the connection is done). Idempotent."""
        payload = self._payload
        if payload is not None:
            self._memory.ahead -= len(payload) - self._filled
            self._payload = None

    def feed_data(self, data: bytes | bytearray) -> None:
        if self._payload is None:
            super().feed_data(data)
            return
        if self.eof:
            raise EOFError("stream ended")
        view = memoryview(data)
        while view and self._filled < self._size:
            target = self.receive_buffer()
            taken = min(len(target), len(view))
            target[:taken] = view[:taken]
            self._filled += taken
            self._memory.ahead -= taken
            view = view[taken:]
        self.buffer += view  # bytes past the payload: the next frame's

    def receive_buffer(self) -> memoryview:
        """Memory for the next read: the rest of the large payload being read, else the scratch."""
        payload = self._payload
        if payload is None:
            return self._scratch
        filled = self._filled
        if filled == len(payload):  # full but not complete: double it (copies what came so far)
            grown = bytearray(min(self._size, 2 * filled))
            grown[:filled] = payload
            payload = self._payload = grown
            self._memory.ahead += len(grown) - filled
        return memoryview(payload)[filled:]

    def received(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the memory ``receive_buffer`` returned."""
        if self._payload is None:
            self.buffer += self._scratch[:nbytes]
        else:
            self._filled += nbytes
            self._memory.ahead -= nbytes


class ServerFrames(Protocol):
    """A server-side websockets ``Protocol`` born OPEN (after our 101), on a ``PayloadReader``.

    Contract: everything the library's ``Protocol`` promises, plus ``receive_buffer()`` /
    ``received(nbytes)`` as the in-place form of ``receive_data(data)``: after ``received``,
    call ``data_to_send()`` and ``events_received()`` exactly as after ``receive_data``.
    ``data_to_send()`` may return a large frame as two chunks (header, payload).
    """

    def __init__(self, max_size: int | None, logger: Any, memory: ReadMemory) -> None:
        super().__init__(Side.SERVER, state=State.OPEN, max_size=max_size, logger=logger)
        # Swap in our reader before any byte arrives, and restart the parser on it (the one the
        # library started is suspended on the stock reader, which is then dropped).
        reader = self.reader = self._payload_reader = PayloadReader(memory)
        self.parser = self.parse()
        next(self.parser)
        self.receive_buffer = reader.receive_buffer

    def received(self, nbytes: int) -> None:
        """The in-place ``receive_data``: ``nbytes`` were written into ``receive_buffer()``."""
        self._payload_reader.received(nbytes)
        next(self.parser)

    def discard(self) -> Generator[None]:
        # The library replaces the parser with this once the connection has failed or closed; the
        # payload the old parser was reading is dropped now, not whenever that parser is freed.
        self._payload_reader.release()
        yield from super().discard()

    def send_frame(self, frame: Frame) -> None:
        data = frame.data
        if len(data) < LARGE_PAYLOAD or self.extensions or self.debug:
            super().send_frame(frame)
            return
        frame.check()
        first = (0x80 if frame.fin else 0) | frame.opcode
        # The payload object itself, not a copy: uvloop and asyncio accept any bytes-like chunk.
        self.writes += (_LONG_HEADER(first, 127, len(data)), cast(bytes, data))
