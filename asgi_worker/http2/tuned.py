"""h2's connection with the per-stream costs a profile put first replaced; used by ``session.py``.

py-spy profiles of h2load (one connection, 100 streams in flight; a hello app and a 64 KiB one) put
most of the server's CPU in four places of h2 and hpack that do the same work for every stream:

- ``hpack.Decoder.decode``, field by field in Python, although a client sends the same few header
  blocks again and again (after the first request they are indexes into the dynamic table).
  ``CachingDecoder`` keeps the fields of a block whose decoding left the dynamic table as it was:
  the same bytes against the same table decode to the same fields (a few blocks per connection).
- ``hpack.Encoder.encode``, which searches the dynamic table and Huffman-codes every value, and
  indexes every field, so values that change with each response (``content-length``, ``date``)
  keep rewriting the table. ``FieldEncoder`` indexes only fields that repeat (not ``VOLATILE`` or
  ``SENSITIVE`` names), sends the rest as literals that never touch the table (shared by every
  connection), and keeps each indexed field's encoding while the table does not change, so a
  steady response head costs a few dict lookups.
- ``H2Connection.open_inbound_streams`` walks every stream h2 still holds on each new stream (it
  also forgets closed ones as it goes): O(n) per stream with n in flight. ``ServerConnection``
  answers with the number of streams held when that is already under the limit, and walks (and
  forgets) only once about as many closed streams as open ones have gathered.
- ``send_headers``/``send_data``: a hyperframe object per frame, its serialisation, and three
  copies of every DATA payload on its way out. ``queue_head``/``queue_data`` make the same state
  changes and window accounting and append the frames' bytes directly.

Before -> after (``benchmarks/instructions.py --h2 100``): hello 775k -> 391k instructions per
request, 64 KiB 1,207k -> 532k. Each replacement is a drop-in for an object h2 documents
(``encoder``, ``decoder``) or a property it reads, or is checked against h2's own calls on the
installed version (``fast_path_mismatch``); ``tests/http2/test_tuned.py`` checks all of them
against hpack's and h2's own.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from typing import Any

from h2.config import H2Configuration
from h2.connection import ConnectionInputs, H2Connection
from h2.stream import StreamInputs
from hpack import Decoder, HeaderTuple
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

__all__ = [
    "VOLATILE",
    "CachingDecoder",
    "FieldEncoder",
    "ServerConnection",
    "fast_path_mismatch",
    "server_config",
]

logger = logging.getLogger("asgi_worker.http2")

# Response fields whose values differ from one response to the next: adding them to the dynamic
# table would only evict the fields that do repeat (RFC 7541 7.1 leaves the choice to the encoder).
VOLATILE = frozenset(
    {
        b"content-length",
        b"date",
        b"etag",
        b"last-modified",
        b"expires",
        b"age",
        b"content-range",
        b"location",
        b"content-disposition",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
    }
)
# Sent "never indexed" (RFC 7541 6.2.3, 7.1.3): an intermediary must not compress them either.
SENSITIVE = frozenset({b"set-cookie", b"authorization", b"proxy-authorization", b"cookie"})

_STATIC = HeaderTable.STATIC_TABLE_MAPPING  # name -> (first index of the name, {value: index})
_DYNAMIC_BASE = HeaderTable.STATIC_TABLE_LENGTH + 1  # index of the newest dynamic entry (62)
_ENTRY_OVERHEAD = 32  # RFC 7541 4.1
_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_DEFAULT_TABLE_SIZE = 4096  # RFC 7541 4.2 / RFC 9113 6.5.2: the peer's table until it says otherwise

# Encodings that depend on no dynamic table (static-table names, literal values), for every
# connection of the process; cleared when full, so a value that changes each second stays cheap
# without the dict growing.
_SHARED_LIMIT = 4096
_SHARED_FIELD_LIMIT = 256  # bytes of name and value: the dict stays under about 2 MiB
_shared: dict[tuple[bytes, bytes], bytes] = {}


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 5.1: ``value`` with an N-bit prefix, ``flags`` in the bits above it."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((flags | value,))
    out = bytearray((flags | top,))
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    """RFC 7541 5.2: a string literal, Huffman-coded when that is shorter."""
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        return _integer(len(coded), 7, 0x80) + coded
    return _integer(len(data), 7, 0) + data


def _literal(flags: int, prefix_bits: int, name: bytes, value: bytes) -> bytes:
    """A literal field: the name by static index when it has one, else as a string."""
    static = _STATIC.get(name)
    if static is not None:
        return _integer(static[0], prefix_bits, flags) + _string(value)
    return bytes((flags,)) + _string(name) + _string(value)


class FieldEncoder:
    """An HPACK encoder for response heads: a drop-in for h2's ``encoder`` (``encode`` and the
    ``header_table_size`` h2 sets from the peer's SETTINGS_HEADER_TABLE_SIZE)."""

    def __init__(self) -> None:
        self._limit = _DEFAULT_TABLE_SIZE  # the most the peer lets our table hold
        self._size = 0
        self._entries: list[tuple[bytes, bytes, int]] = []  # oldest first: name, value, serial
        self._serials: dict[tuple[bytes, bytes], int] = {}  # each entry's serial; newest is highest
        self._next_serial = 0
        self._size_update: int | None = None  # a table size update owed at the next block's start
        self._size_low = 0  # ... and the smallest size set since the last block
        # Indexed fields (static, or dynamic while the table is unchanged): at most one per entry.
        self._pieces: dict[tuple[bytes, bytes], bytes] = {}

    @property
    def header_table_size(self) -> int:
        return self._limit

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        # RFC 7541 4.2: after the peer changes its limit the next block starts with our new size,
        # preceded by the smallest one set meanwhile if that was smaller.
        self._limit = value
        self._evict_to(value)
        self._size_low = value if self._size_update is None else min(self._size_low, value)
        self._size_update = value
        self._pieces.clear()

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        """One header block. ``headers`` are (name, value) byte pairs, lowercase and checked."""
        parts: list[bytes] = []
        if self._size_update is not None:
            if self._size_low < self._size_update:
                parts.append(_integer(self._size_low, 5, 0x20))
            parts.append(_integer(self._size_update, 5, 0x20))
            self._size_update = None
        pieces = self._pieces
        for field in headers:
            key = (field[0], field[1])
            piece = pieces.get(key) or _shared.get(key)
            if piece is None:
                piece = self._encode_field(key)
            parts.append(piece)
        return b"".join(parts)

    def _encode_field(self, key: tuple[bytes, bytes]) -> bytes:
        name, value = key
        static = _STATIC.get(name)
        if static is not None:
            index = static[1].get(value)
            if index is not None:
                piece = _integer(index, 7, 0x80)
                self._pieces[key] = piece
                return piece
        serial = self._serials.get(key)
        if serial is not None:
            piece = _integer(_DYNAMIC_BASE + self._next_serial - 1 - serial, 7, 0x80)
            self._pieces[key] = piece
            return piece
        if name in VOLATILE or name in SENSITIVE:
            # A literal that never enters the table (6.2.2, 6.2.3), by its name alone: the same bytes
            # on every connection. Not in ``_pieces``, where each response's value would stay for good.
            piece = _literal(0x10 if name in SENSITIVE else 0x00, 4, name, value)
            if len(name) + len(value) <= _SHARED_FIELD_LIMIT:
                if len(_shared) >= _SHARED_LIMIT:
                    _shared.clear()
                _shared[key] = piece
            return piece
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if size > self._limit // 4:  # would crowd the table (and this connection's limit decides)
            return _literal(0x00, 4, name, value)
        # Literal with incremental indexing (6.2.1): later responses send its index.
        piece = _literal(0x40, 6, name, value)
        self._insert(name, value, size)
        return piece

    def _insert(self, name: bytes, value: bytes, size: int) -> None:
        self._evict_to(self._limit - size)
        self._entries.append((name, value, self._next_serial))
        self._serials[(name, value)] = self._next_serial
        self._next_serial += 1
        self._size += size
        self._pieces.clear()  # every dynamic index just moved by one

    def _evict_to(self, room: int) -> None:
        entries = self._entries
        dropped = 0
        while self._size > room and dropped < len(entries):
            name, value, serial = entries[dropped]
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD
            if self._serials.get((name, value)) == serial:
                del self._serials[(name, value)]
            dropped += 1
        if dropped:
            del entries[:dropped]
            self._pieces.clear()


class _CountedTable(HeaderTable):
    """hpack's dynamic table, counting its changes so a cached decoding knows it still holds."""

    def __init__(self) -> None:
        super().__init__()
        self.changes = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.changes += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.changes += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


# Per connection, at most 16 blocks of 512 bytes and their fields (some 30 KiB), however many
# distinct blocks a client sends: a browser or a proxy repeats a handful.
_DECODED_LIMIT = 16
_BLOCK_LIMIT = 512  # bytes: larger blocks are decoded every time


class CachingDecoder(Decoder):
    """hpack's decoder, keeping the fields of each recent block that did not change the table."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table = self._table = _CountedTable()
        self._decoded: dict[bytes, list[HeaderTuple]] = {}
        self._valid_for: tuple[int, int, int] = (-1, 0, 0)

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:
        table = self._table
        state = (table.changes, self.max_header_list_size, self.max_allowed_table_size)
        decoded = self._decoded
        if state != self._valid_for:
            decoded.clear()
            self._valid_for = state
        block = bytes(data)
        if raw:
            fields = decoded.get(block)
            if fields is not None:
                return fields.copy()
        fields = list(super().decode(block, raw))
        if raw and table.changes == state[0] and len(block) <= _BLOCK_LIMIT:
            if len(decoded) >= _DECODED_LIMIT:
                decoded.clear()
            decoded[block] = fields.copy()
        return fields


_FRAME_HEAD = struct.Struct(">HBBBL")  # RFC 9113 4.1: a 24-bit length as 16 + 8 bits, type, flags, id
_DATA, _HEADERS, _CONTINUATION = 0x0, 0x1, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_STATUS_1XX = b"1"


def _frame_head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return _FRAME_HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


class ServerConnection(H2Connection):
    """h2's connection with our codec, a stream count that does not walk every stream, and
    ``queue_head``/``queue_data``: h2's ``send_headers``/``send_data`` for a server's response,
    with the same checks and state changes but without a frame object per frame (a quarter of a
    small response's CPU). ``fast_path_mismatch`` compares them with h2's on the installed
    version; on a mismatch they are h2's own calls."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder = FieldEncoder()  # type: ignore[assignment]
        self.decoder = CachingDecoder()
        self._walk_at = 32  # streams held before the next walk
        if _fast_paths is None:
            fast_path_mismatch()
        if _fast_paths is False:
            self.queue_head = self._stock_head  # type: ignore[method-assign]
            self.queue_data = self._stock_data  # type: ignore[method-assign]

    def queue_head(self, stream_id: int, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        """Response headers (or a 1xx, or trailers) on an open stream; ``fields`` checked by us."""
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        stream = self.streams[stream_id]
        machine = stream.state_machine
        informational = bool(fields) and fields[0][0] == b":status" and fields[0][1].startswith(_STATUS_1XX)
        if informational and end_stream:
            raise ValueError("a 1xx response cannot end the stream")
        machine.process_input(
            StreamInputs.SEND_INFORMATIONAL_HEADERS if informational else StreamInputs.SEND_HEADERS
        )
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
        elif machine.trailers_sent:
            raise ValueError("trailers must end the stream")
        block = self.encoder.encode(fields)
        limit = self.max_outbound_frame_size
        out = self._data_to_send
        flags = _END_STREAM if end_stream else 0
        if len(block) <= limit:
            out += _frame_head(len(block), _HEADERS, flags | _END_HEADERS, stream_id)
            out += block
            return
        view = memoryview(block)
        kind = _HEADERS
        for offset in range(0, len(block), limit):
            piece = view[offset : offset + limit]
            if offset + limit >= len(block):
                flags |= _END_HEADERS
            out += _frame_head(len(piece), kind, flags, stream_id)
            out += piece
            kind, flags = _CONTINUATION, 0

    def queue_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        """One DATA frame; the caller keeps it within the send windows and the peer's frame size."""
        size = len(data)
        stream = self.streams[stream_id]
        if size > stream.outbound_flow_control_window or size > self.outbound_flow_control_window:
            raise ValueError("DATA beyond the peer's window")
        if size > self.max_outbound_frame_size:
            raise ValueError("DATA beyond the peer's frame size")
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        machine = stream.state_machine
        machine.process_input(StreamInputs.SEND_DATA)
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        out = self._data_to_send
        out += _frame_head(size, _DATA, _END_STREAM if end_stream else 0, stream_id)
        out += data

    def _stock_head(self, stream_id: int, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.send_headers(stream_id, fields, end_stream)

    def _stock_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        self.send_data(stream_id, data, end_stream)

    @property
    def open_inbound_streams(self) -> int:
        held = len(self.streams)
        if held < self._walk_at and held < self.local_settings.max_concurrent_streams:
            return held  # at least as many as are open, and already under the limit
        count = self._open_streams(1)  # h2's walk, which also forgets the closed streams
        self._walk_at = 2 * count + 32
        return count


# None: not checked yet; True: the fast paths match h2's own; False: they do not (h2's are used).
_fast_paths: bool | None = None


def server_config() -> H2Configuration:
    """h2's settings for a server whose own code checks and cleans every field (``request.py``,
    ``response.py``)."""
    return H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


def _compare_with_h2() -> str | None:
    """One scripted exchange on two server connections, ours and h2's calls; the first difference."""

    def server() -> ServerConnection:
        conn = ServerConnection(config=server_config())
        conn.initiate_connection()
        return conn

    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
    for stream_id in (1, 3, 5, 7):
        client.send_headers(stream_id, request, end_stream=stream_id != 7)
    opening = client.data_to_send()
    script: list[tuple[str, int, Any, bool]] = [
        ("head", 1, [(b":status", b"200"), (b"content-type", b"text/plain")], False),
        ("data", 1, b"hello", True),
        ("head", 3, [(b":status", b"103"), (b"link", b"</a>")], False),
        ("head", 3, [(b":status", b"200"), (b"x", b"y" * 20000)], False),
        ("data", 3, b"", False),
        ("data", 3, memoryview(b"z" * 16384), False),
        ("head", 3, [(b"grpc-status", b"0")], True),
        ("head", 5, [(b":status", b"204")], True),
        ("head", 7, [(b":status", b"200")], False),
        ("data", 7, b"", True),
    ]
    fast, stock = server(), server()
    stock.queue_head, stock.queue_data = stock._stock_head, stock._stock_data  # type: ignore[method-assign]
    for conn in (fast, stock):
        conn.receive_data(opening)
        conn.data_to_send()
        for kind, stream_id, value, end in script:
            if kind == "head":
                conn.queue_head(stream_id, value, end)
            else:
                conn.queue_data(stream_id, value, end)
    if fast.data_to_send() != stock.data_to_send():
        return "the frames differ"
    if fast.outbound_flow_control_window != stock.outbound_flow_control_window:
        return "the connection windows differ"
    for stream_id in (1, 3, 5, 7):
        mine, theirs = fast.streams.get(stream_id), stock.streams.get(stream_id)
        if mine is None or theirs is None:
            if mine is not theirs:
                return f"stream {stream_id} is held by one side only"
        elif (
            mine.state_machine.state != theirs.state_machine.state
            or mine.outbound_flow_control_window != theirs.outbound_flow_control_window
        ):
            return f"stream {stream_id} differs"
    return None


def fast_path_mismatch() -> str | None:
    """What differs between ``queue_head``/``queue_data`` and h2's own calls on the installed h2
    (the bytes sent, the streams' states and windows), or None. Run once, by the first session."""
    global _fast_paths
    _fast_paths = True  # for the scratch connections of the comparison
    try:
        problem = _compare_with_h2()
    except Exception as error:  # an h2 whose internals moved: fall back, never fail to serve
        problem = f"raised {error!r}"
    _fast_paths = problem is None
    if problem is not None:
        logger.warning("HTTP/2: h2's own send calls are used (the fast paths do not match h2: %s)", problem)
    return problem
