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
  payload object (servers never mask, RFC 6455 5.1). A smaller message without extensions is our
  header plus its payload in one ``bytes`` (``send_message``): the library's ``Frame.serialize``
  costs a ``BytesIO`` and more Python per message than the whole echo of a chat message.
- Receiving small frames: between frames (the parser waits in ``at_eof`` with nothing buffered),
  whole, final, masked text or binary frames of under 64 KiB without extensions, outside a
  fragmented message, are cut from the scratch buffer here (``_cut_frames``) and queued as the
  library's own ``Frame`` events; the first byte that is anything else (a control frame, a
  fragment, a partial frame, a reserved bit, an unmasked frame, a frame over the size limit) and
  all after it go to the library's parser, which decides as before. What is cut this way is what
  the parser would have produced from the same bytes (checked by ``library_mismatch``).
- All this leans on library internals (the reader, the parser generator, ``writes``, how
  ``Frame.parse`` reads a payload), which the version cap in pyproject.toml alone does not
  guard. So the first accepted WebSocket checks them (``library_mismatch``: frames fed through
  ``ServerFrames``, no I/O, once per process). If one changed, one warning says which, and every
  WebSocket is served by ``StockFrames``: the library's public API only, slower, same behaviour.
"""

from __future__ import annotations

import functools
import inspect
import logging
import struct
from collections.abc import Callable, Generator
from types import GeneratorType
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.streams import StreamReader
from websockets.version import version as websockets_version

try:  # the library's C unmasking, as its own parser uses it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without the extension
    from websockets.utils import apply_mask

__all__ = [
    "AHEAD_BUDGET",
    "EAGER_PAYLOAD",
    "LARGE_PAYLOAD",
    "MIN_PAYLOAD_BUFFER",
    "PayloadReader",
    "ReadMemory",
    "ServerFrames",
    "StockFrames",
    "frames_type",
    "library_mismatch",
]

logger = logging.getLogger("asgi_worker.error")

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
_MID_HEADER = struct.Struct("!BBH").pack
_MID_LENGTH = struct.Struct("!H").unpack_from
# The two header bytes of a final, unmasked text (0x81) or binary (0x82) frame of 0-125 bytes.
_SHORT_HEADERS = {first: [bytes((first, size)) for size in range(126)] for first in (0x81, 0x82)}
_TEXT, _BINARY = Opcode.TEXT, Opcode.BINARY
_OPEN = State.OPEN


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
        self.between_frames = False  # the parser waits in at_eof for a frame's first byte

    def at_eof(self) -> Generator[None, None, bool]:
        # The library's at_eof, noting while it waits: the parser calls it between frames only.
        while True:
            if self.buffer:
                return False
            if self.eof:
                return True
            self.between_frames = True
            yield
            self.between_frames = False

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


class StockFrames(Protocol):
    """The library's server-side ``Protocol`` as it ships, born OPEN (after our 101).

    Contract: everything the library's ``Protocol`` promises, plus ``receive_buffer()`` /
    ``received(nbytes)`` for an ``asyncio.BufferedProtocol``: after writing ``nbytes`` at the start
    of the memory ``receive_buffer()`` returned (valid until then), call ``received(nbytes)``, then
    ``data_to_send()`` and ``events_received()`` exactly as after ``receive_data``; and
    ``send_message(text, payload)``, one whole message (``send_text`` or ``send_binary``). Here the
    bytes land in the shared scratch and go to ``receive_data``: public API only, what every
    WebSocket uses when ``library_mismatch`` finds a change.
    """

    receive_buffer: Callable[[], memoryview]  # an attribute, not a method: one call less per read

    def __init__(self, max_size: int | None, logger: Any, memory: ReadMemory) -> None:
        super().__init__(Side.SERVER, state=State.OPEN, max_size=max_size, logger=logger)
        scratch = self._scratch = memory.scratch
        self.receive_buffer = lambda: scratch

    def received(self, nbytes: int) -> None:
        """``nbytes`` were written into ``receive_buffer()``: hand them to the library."""
        self.receive_data(bytes(self._scratch[:nbytes]))

    def send_message(self, text: bool, payload: bytes) -> None:
        """One whole message; the state is OPEN (the caller checks)."""
        if text:
            self.send_text(payload)
        else:
            self.send_binary(payload)


class ServerFrames(StockFrames):
    """``StockFrames`` on a ``PayloadReader``: large payloads are read in place, sent uncopied;
    small whole messages are cut and framed here, without the library's per-frame generators.

    Contract: as ``StockFrames``; ``data_to_send()`` may return a large frame as two chunks
    (header, payload). Use it only while ``library_mismatch()`` finds nothing (``frames_type``).
    """

    def __init__(self, max_size: int | None, logger: Any, memory: ReadMemory) -> None:
        super().__init__(max_size, logger, memory)
        # Swap in our reader before any byte arrives, and restart the parser on it (the one the
        # library started is suspended on the stock reader, which is then dropped).
        reader = self.reader = self._payload_reader = PayloadReader(memory)
        self.parser = self.parse()
        next(self.parser)
        self.receive_buffer = reader.receive_buffer
        # What a frame cut here may carry: --ws-max-size, and under LARGE_PAYLOAD (those are read
        # in place by the parser). The fragmented-message counter was renamed in websockets 15.
        self._cut_limit = LARGE_PAYLOAD - 1 if max_size is None else min(max_size, LARGE_PAYLOAD - 1)
        self._fragment_attribute = "current_size" if hasattr(self, "current_size") else "cur_size"

    def received(self, nbytes: int) -> None:
        """The in-place ``receive_data``: ``nbytes`` were written into ``receive_buffer()``."""
        reader = self._payload_reader
        if (
            reader.between_frames
            and reader._payload is None
            and self._state is _OPEN
            and not self.extensions
            and not self.debug
            and getattr(self, self._fragment_attribute) is None
        ):
            cut = self._cut_frames(nbytes)
            if cut == nbytes:
                return  # all were whole small messages: the parser still waits between frames
            reader.buffer += self._scratch[cut:nbytes]
        else:
            reader.received(nbytes)
        next(self.parser)

    def _cut_frames(self, nbytes: int) -> int:
        """Queue the whole small messages at the start of the scratch; return the bytes they took."""
        scratch = self._scratch
        limit = self._cut_limit
        events = self.events
        start = 0
        while nbytes - start >= 6:
            first, second = scratch[start], scratch[start + 1]
            if (first != 0x81 and first != 0x82) or second < 0x80:  # not final text/binary, or unmasked
                break
            size = second & 0x7F
            head = start + 6
            if size == 126:
                if nbytes - start < 8:
                    break
                size = _MID_LENGTH(scratch, start + 2)[0]
                head = start + 8
            elif size == 127:
                break
            end = head + size
            if size > limit or end > nbytes:
                break
            payload = apply_mask(scratch[head:end], scratch[head - 4 : head])  # type: ignore[arg-type]
            events.append(Frame(_TEXT if first == 0x81 else _BINARY, payload))
            start = end
        return start

    def discard(self) -> Generator[None]:
        # The library replaces the parser with this once the connection has failed or closed; the
        # payload the old parser was reading is dropped now, not whenever that parser is freed.
        self._payload_reader.release()
        yield from super().discard()

    def send_message(self, text: bool, payload: bytes) -> None:
        if self.extensions or self.debug or self.expect_continuation_frame:
            super().send_message(text, payload)
            return
        first = 0x81 if text else 0x82
        size = len(payload)
        if size < 126:
            self.writes.append(_SHORT_HEADERS[first][size] + payload)
        elif size < LARGE_PAYLOAD:
            self.writes.append(_MID_HEADER(first, 126, size) + payload)
        else:
            self.writes += (_LONG_HEADER(first, 127, size), payload)

    def send_frame(self, frame: Frame) -> None:
        data = frame.data
        if len(data) < LARGE_PAYLOAD or self.extensions or self.debug:
            super().send_frame(frame)
            return
        frame.check()
        first = (0x80 if frame.fin else 0) | frame.opcode
        # The payload object itself, not a copy: uvloop and asyncio accept any bytes-like chunk.
        self.writes += (_LONG_HEADER(first, 127, len(data)), cast(bytes, data))


# The self-check: what ServerFrames relies on beyond the library's documented API, each named for
# the warning. Attributes first (the precise name of what went missing), then behaviour: a large
# frame fed in place, one sent, one dropped by a failing connection.

_probe_logger = logging.Logger("asgi_worker.ws.probe")
_probe_logger.disabled = True  # the probe's protocols log nothing (and so never debug)
_PROBE_MASK = b"\x5a\xa5\x0f\xf0"
_PROBE_HEADER = _LONG_HEADER(0x80 | Opcode.BINARY, 0x80 | 127, LARGE_PAYLOAD) + _PROBE_MASK


@functools.cache
def frames_type() -> type[StockFrames]:
    """The frame protocol for every WebSocket of this process: ``ServerFrames``, or ``StockFrames``
    after one warning (logger ``asgi_worker.error``) when ``library_mismatch()`` finds a change.

    Checked on the first call, then cached: one check and at most one warning per process."""
    mismatch = library_mismatch()
    if mismatch is None:
        return ServerFrames
    logger.warning(
        "websockets %s changed what asgi_worker.ws.wire relies on (%s): WebSockets are served by the "
        "library's stock Protocol instead, with more copies per large message",
        websockets_version,
        mismatch,
    )
    return StockFrames


def library_mismatch() -> str | None:
    """The first websockets internal ``ServerFrames`` relies on that is missing or behaves otherwise
    in the installed version, or None when all hold.

    Cheap and pure: two protocols built, three frames through them, no I/O. Never raises: an error
    while checking is reported as the mismatch of the step it happened in."""
    step = "Protocol(Side.SERVER, state=State.OPEN, max_size=None, logger=...)"
    try:
        stock = Protocol(Side.SERVER, state=State.OPEN, max_size=None, logger=_probe_logger)
        for step, holds in _attribute_checks(stock):
            if not holds():
                return step
        step = "ServerFrames on this version"
        return _behaviour_mismatch()
    except Exception as exc:  # a changed library may fail in any way: that is the finding
        return f"{step}: {exc!r}"


def _attribute_checks(stock: Protocol) -> list[tuple[str, Callable[[], bool]]]:
    return [
        ("Protocol.reader, a StreamReader", lambda: isinstance(stock.reader, StreamReader)),
        ("StreamReader.buffer, a bytearray", lambda: type(stock.reader.buffer) is bytearray),
        ("StreamReader.eof, a bool", lambda: stock.reader.eof is False),
        (
            "StreamReader.read_exact() and feed_data(), methods",
            lambda: (
                inspect.isgeneratorfunction(StreamReader.read_exact)
                and inspect.isfunction(StreamReader.feed_data)
            ),
        ),
        (
            "Protocol.parser, the running parse() generator",
            lambda: (
                isinstance(stock.parser, GeneratorType) and stock.parser.gi_code is Protocol.parse.__code__
            ),
        ),
        ("Protocol.discard(), a generator method", lambda: inspect.isgeneratorfunction(Protocol.discard)),
        ("Protocol.send_frame(), a method", lambda: inspect.isfunction(Protocol.send_frame)),
        ("Protocol.writes, a list", lambda: type(stock.writes) is list),
        ("Protocol.extensions, a list", lambda: type(stock.extensions) is list),
        ("Protocol.debug, a bool", lambda: type(stock.debug) is bool),
    ]


def _behaviour_mismatch() -> str | None:
    memory = ReadMemory(MIN_PAYLOAD_BUFFER)
    frames = ServerFrames(None, _probe_logger, memory)
    reader = frames._payload_reader
    _feed(frames, _PROBE_HEADER)
    if reader._payload is None:
        return "Frame.parse() reading a payload with one Protocol.reader.read_exact(length)"
    _feed(frames, _PROBE_MASK * (LARGE_PAYLOAD // 4))  # masked zeros
    events = frames.events_received()
    frame = cast(Frame, events[0]) if len(events) == 1 else None
    if (
        frame is None
        or frame.opcode is not Opcode.BINARY
        or frame.data != bytes(LARGE_PAYLOAD)
        or memory.ahead
    ):
        failure = f" ({frames.parser_exc!r})" if frames.parser_exc else ""
        return f"Protocol.parser taking a payload read in place{failure}"
    payload = bytes(LARGE_PAYLOAD)
    frames.send_binary(payload)
    sent = frames.data_to_send()
    if len(sent) != 2 or sent[1] is not payload:
        return "Protocol.send_binary() through send_frame(), data_to_send() returning writes"
    _feed(frames, _PROBE_HEADER)  # a payload in progress when the connection fails
    frames.fail(1011)
    if reader._payload is not None or memory.ahead:
        return "Protocol.fail() replacing the parser with discard()"
    return _small_frames_mismatch()


# Small messages both ways, as the library frames and parses them: sizes around each header form.
_PROBE_SIZES = (0, 1, 125, 126, 300, LARGE_PAYLOAD - 1)


def _small_frames_mismatch() -> str | None:
    """``send_message`` and ``_cut_frames`` against the library's own serialize and parse."""
    memory = ReadMemory()
    sender = ServerFrames(None, _probe_logger, memory)
    for size in _PROBE_SIZES:
        for text in (True, False):
            payload = b"a" * size
            sender.send_message(text, payload)
            expected = Frame(_TEXT if text else _BINARY, payload).serialize(mask=False, extensions=[])
            if b"".join(sender.data_to_send()) != expected:
                return f"Frame.serialize() of a {size}-byte message, as send_message() frames it"
    frames = ServerFrames(None, _probe_logger, memory)
    if not frames._payload_reader.between_frames:
        return "Protocol.parse() waiting in reader.at_eof() between frames"
    _feed(frames, _PROBE_HEADER[:1])  # a frame begun: the parser must no longer be between frames
    if frames._payload_reader.between_frames:
        return "Protocol.parse() calling reader.at_eof() only between frames"
    wire = b"".join(
        Frame(_TEXT if size % 2 else _BINARY, b"m" * size).serialize(mask=True, extensions=[])
        for size in _PROBE_SIZES
    )
    frames = ServerFrames(None, _probe_logger, memory)
    _feed(frames, wire)
    stock = Protocol(Side.SERVER, state=State.OPEN, max_size=None, logger=_probe_logger)
    stock.receive_data(wire)
    cut = [(f.opcode, f.fin, bytes(f.data)) for f in cast(list[Frame], frames.events_received())]
    parsed = [(f.opcode, f.fin, bytes(f.data)) for f in cast(list[Frame], stock.events_received())]
    if cut != parsed or frames._payload_reader.buffer:
        return "Frame.parse() of small masked messages, as _cut_frames() cuts them"
    return None


def _feed(frames: ServerFrames, data: bytes) -> None:
    """``data`` through ``receive_buffer`` / ``received``, as the event loop would write it."""
    view = memoryview(data)
    while view:
        target = frames.receive_buffer()
        taken = min(len(target), len(view))
        target[:taken] = view[:taken]
        del target  # a payload buffer may be handed over (and resized) by the next step
        frames.received(taken)
        view = view[taken:]
