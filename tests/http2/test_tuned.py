"""``tuned.py`` against hpack's and h2's own: the field codec against hpack's reference decoder and
stock decoder, the stream count and the fast send paths against h2, and one real connection."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from collections.abc import Callable
from typing import Any

import hpack
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    DataReceived,
    ResponseReceived,
    StreamEnded,
)
from h2.exceptions import TooManyStreamsError
from h2.settings import SettingCodes
from hpack.table import table_entry_size
from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame

from asgi_worker.http2 import tuned
from asgi_worker.http2.tuned import VOLATILE, CachingDecoder, FieldEncoder, ServerConnection, server_config
from tests.http2.served import h2_server, respond
from tests.http2.wire import parse_frames
from tests.timing import TIMEOUT

Fields = list[tuple[bytes, bytes]]

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"example.com")]

# -- helpers -------------------------------------------------------------------------------------


def _size_updates(block: bytes) -> list[int]:
    """The dynamic table size updates a header block starts with (RFC 7541 6.3, 5.1 integers)."""
    sizes = []
    pos = 0
    while pos < len(block) and block[pos] & 0xE0 == 0x20:
        value = block[pos] & 0x1F
        pos += 1
        if value == 0x1F:
            shift = 0
            while True:
                byte = block[pos]
                pos += 1
                value += (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
        sizes.append(value)
    return sizes


def _table_size(decoder: hpack.Decoder) -> int:
    """What the decoder's dynamic table holds, by RFC 7541 4.1's accounting."""
    return sum(table_entry_size(name, value) for name, value in decoder.header_table.dynamic_entries)


def _response_fields(rng: random.Random, table_size: int) -> Fields:
    """A response head mixing every kind of field the encoder treats differently."""
    fields: Fields = [(b":status", rng.choice([b"200", b"200", b"404", b"500", b"201", b"418"]))]
    kinds: list[Callable[[], tuple[bytes, bytes]]] = [
        # Full matches of the static table (RFC 7541 A).
        lambda: rng.choice([(b"accept-ranges", b""), (b"content-type", b""), (b"vary", b"")]),
        # Static names with values of their own.
        lambda: (
            b"content-type",
            rng.choice([b"text/plain", b"application/json", b"text/html; charset=utf-8"]),
        ),
        lambda: (b"cache-control", rng.choice([b"no-store", b"max-age=60", b"private"])),
        lambda: (b"server", b"asgi-worker"),
        # Names of no table, a few values each: they repeat, so they are indexed.
        lambda: (b"x-fixed", b"yes"),
        lambda: (b"x-cycle-%d" % rng.randrange(8), b"v%d" % rng.randrange(4)),
        # A new name and value each time.
        lambda: (b"x-unique-%d" % rng.randrange(10**6), b"%d" % rng.randrange(10**9)),
        # Volatile names (never indexed by FieldEncoder).
        lambda: (b"content-length", b"%d" % rng.randrange(10**7)),
        lambda: (
            b"date",
            b"Mon, 0%d Jan 2024 12:%02d:%02d GMT" % (rng.randrange(10), *rng.sample(range(60), 2)),
        ),
        lambda: (b"etag", b'"%x"' % rng.getrandbits(64)),
        lambda: (b"x-request-id", b"%032x" % rng.getrandbits(128)),
        # Sensitive names.
        lambda: (b"set-cookie", b"session=%x; HttpOnly" % rng.getrandbits(32)),
        lambda: (b"set-cookie", b""),
        # Empty values.
        lambda: (b"x-empty", b""),
        lambda: (b"x-empty-%d" % rng.randrange(3), b""),
        # Longer than a quarter of the table.
        lambda: (b"x-long", bytes(rng.choice(b"abcxyz") for _ in range(table_size // 4 + rng.randrange(64)))),
        lambda: (b"link", b"</style.css>; rel=preload" * rng.randrange(1, 80)),
    ]
    fields += [rng.choice(kinds)() for _ in range(rng.randrange(0, 12))]
    return fields


def _client(**settings: int) -> H2Connection:
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    if settings:
        client.update_settings({getattr(SettingCodes, name): value for name, value in settings.items()})
    return client


def _server(client: H2Connection) -> ServerConnection:
    """A ServerConnection that has read ``client``'s preface; ``client`` has read its SETTINGS."""
    server = ServerConnection(config=server_config())
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())  # the SETTINGS ack
    server.data_to_send()
    return server


# -- FieldEncoder against hpack.Decoder (the reference) -------------------------------------------


def test_field_encoder_round_trips_through_hpacks_decoder():
    """Every block decodes to exactly the fields encoded, in order, block after block on one
    connection's pair of dynamic tables (RFC 7541 2.2, 2.3)."""
    rng = random.Random(7541)
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    decoder.max_header_list_size = 2**20
    sent: list[Fields] = []
    for _ in range(400):
        fields = rng.choice(sent) if sent and rng.random() < 0.3 else _response_fields(rng, 4096)
        sent.append(fields)
        assert decoder.decode(encoder.encode(fields), raw=True) == fields
    assert decoder.header_table.dynamic_entries, "nothing was indexed: the test lost its point"


@pytest.mark.parametrize("size", [0, 64, 256, 4096])
def test_small_tables_evict_in_step_with_the_decoder(size):
    """The peer's SETTINGS_HEADER_TABLE_SIZE bounds both tables (RFC 7541 4.2, 6.3; RFC 9113 6.5.2),
    here ``size`` and changes to it mid-connection: the round trip stays exact and the decoder's
    table never holds more than its limit."""
    rng = random.Random(size)
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    decoder.max_header_list_size = 2**20
    limits = [size, 4096, size, 0, size, 256, 64, size]
    sent: list[Fields] = []
    for step in range(320):
        if step % 40 == 0:
            limit = limits[step // 40]
            decoder.max_allowed_table_size = limit
            encoder.header_table_size = limit
        fields = rng.choice(sent) if sent and rng.random() < 0.3 else _response_fields(rng, limit)
        sent.append(fields)
        assert decoder.decode(encoder.encode(fields), raw=True) == fields
        assert decoder.header_table.maxsize == limit
        assert _table_size(decoder) <= limit


@pytest.mark.parametrize("size", [0, 64, 256, 4096, 65536])
def test_the_first_block_after_a_size_change_starts_with_a_table_size_update(size):
    """RFC 7541 4.2: a change of the maximum is signalled at the start of the next block (6.3)."""
    encoder = FieldEncoder()
    encoder.encode([(b":status", b"200"), (b"x-fixed", b"yes")])
    encoder.header_table_size = size
    first = encoder.encode([(b":status", b"200"), (b"x-fixed", b"yes")])
    assert first[0] & 0xE0 == 0x20
    assert _size_updates(first) == [size]
    assert _size_updates(encoder.encode([(b":status", b"200")])) == []


def test_a_size_lowered_then_raised_between_blocks_signals_the_smallest_first():
    """RFC 7541 4.2: when the maximum changes more than once between two blocks, the smallest value
    MUST be signalled, then the final one. hpack's own encoder does; a decoder such as nghttp2's
    expects an update no larger than the smallest (a client that sends SETTINGS_HEADER_TABLE_SIZE
    0 and then 4096 to flush our table) and fails the connection with COMPRESSION_ERROR otherwise."""
    ours, reference = FieldEncoder(), hpack.Encoder()
    for encoder in (ours, reference):
        encoder.encode([(b"x-fixed", b"yes")])
        encoder.header_table_size = 0
        encoder.header_table_size = 4096
    assert _size_updates(reference.encode([(b":status", b"200")])) == [0, 4096]
    assert _size_updates(ours.encode([(b":status", b"200")])) == [0, 4096]


def test_volatile_fields_never_enter_the_decoders_table():
    """Values that change with each response are literals without indexing (RFC 7541 6.2.2, 7.1):
    they would only evict the fields that repeat."""
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    for n in range(100):
        fields = [
            (b":status", b"200"),
            (b"content-length", b"%d" % (1000 + n)),
            (b"date", b"Tue, 02 Jan 2024 10:%02d:%02d GMT" % divmod(n, 60)),
            (b"etag", b'"%d"' % n),
            (b"x-fixed", b"yes"),
        ]
        assert decoder.decode(encoder.encode(fields), raw=True) == fields
    assert list(decoder.header_table.dynamic_entries) == [(b"x-fixed", b"yes")]
    assert not {name for name, _ in decoder.header_table.dynamic_entries} & VOLATILE


def test_a_repeating_field_is_one_byte_the_second_time():
    """Literal with incremental indexing the first time (RFC 7541 6.2.1), then the newest dynamic
    entry's index, 62, as one byte (6.1, 2.3.3)."""
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    first = encoder.encode([(b"x-fixed", b"yes")])
    assert first[0] & 0xC0 == 0x40
    second = encoder.encode([(b"x-fixed", b"yes")])
    assert second == b"\xbe"
    assert decoder.decode(first, raw=True) == decoder.decode(second, raw=True) == [(b"x-fixed", b"yes")]


def test_sensitive_fields_decode_as_never_indexed():
    """RFC 7541 6.2.3, 7.1.3: ``set-cookie`` (and the credentials) are literals never indexed, so no
    intermediary compresses them either, each time they are sent."""
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    secrets = [(b"set-cookie", b"session=abc; Secure"), (b"authorization", b"Bearer x"), (b"cookie", b"a=b")]
    for _ in range(3):
        fields = [(b":status", b"200"), *secrets]
        decoded = decoder.decode(encoder.encode(fields), raw=True)
        assert decoded == fields
        assert not isinstance(decoded[0], hpack.NeverIndexedHeaderTuple)
        assert all(isinstance(field, hpack.NeverIndexedHeaderTuple) for field in decoded[1:])
    assert not decoder.header_table.dynamic_entries


def _footprint(obj: object) -> int:
    """Bytes held by ``obj``'s own attributes, containers followed (module-wide caches not)."""
    seen: set[int] = set()
    total = 0
    stack = list(vars(obj).values())
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            stack += item
    return total


def test_an_encoder_holds_bounded_memory_over_a_long_connection():
    """30,000 responses whose head is steady (its indexed fields already in the table) but for
    ``content-length`` and ``etag``: what one connection's encoder holds must not grow with them."""
    encoder = FieldEncoder()
    for n in range(30_000):
        encoder.encode(
            [(b":status", b"200"), (b"x-fixed", b"yes"), (b"content-length", b"%d" % n), (b"etag", b"%x" % n)]
        )
    assert _footprint(encoder) < 1 << 20


# -- CachingDecoder against hpack.Decoder -----------------------------------------------------------


_PATHS = [b"/", b"/a", b"/static/app.js", b"/api/items?page=1"]
_HEADS = [
    [(b":method", method), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", path)]
    + [(b"user-agent", b"test/1.0"), (b"accept", b"*/*"), (b"accept-encoding", b"gzip, deflate")]
    + ([(b"cookie", b"id=1")] if method == b"POST" else [])
    for method in (b"GET", b"POST")
    for path in _PATHS
]


def _request_fields(rng: random.Random) -> Fields:
    """A browser-like request: mostly one of a few heads again (all indexes once the table holds
    their fields), sometimes with a field never seen (a literal with indexing)."""
    fields = list(rng.choice(_HEADS))
    novelty = rng.random()
    if novelty < 0.04:
        fields.append((b"x-trace", b"%x" % rng.getrandbits(48)))
    elif novelty < 0.06:
        fields.append((b"x-big", b"b" * rng.randrange(1000, 3000)))  # past the cached block size
    elif novelty < 0.08:
        fields[3] = (b":path", b"/new/%d" % rng.randrange(10**6))
    return fields


def _decode_both(stock: hpack.Decoder, caching: CachingDecoder, block: Any, raw: bool = True) -> Any:
    """Both decoders' answer to ``block``: the fields, or the type of what was raised."""
    answers = []
    for decoder in (stock, caching):
        try:
            answers.append(decoder.decode(block, raw=raw))
        except hpack.HPACKError as error:
            answers.append(type(error))
    assert answers[0] == answers[1]
    if isinstance(answers[0], list):
        assert [type(field) for field in answers[0]] == [type(field) for field in answers[1]]
    return answers[1]


def test_caching_decoder_decodes_as_hpacks_decoder(monkeypatch):
    """In lockstep on the blocks of a stock, indexing ``hpack.Encoder``: equal results for every
    block, through repeats (cache hits), literals with indexing and table size updates."""
    rng = random.Random(9113)
    encoder, stock, caching = hpack.Encoder(), hpack.Decoder(), CachingDecoder()
    decoded_by_hpack = [0]
    original = hpack.Decoder.decode

    def counting(self: hpack.Decoder, data: Any, raw: bool = False) -> Any:
        if self is caching:
            decoded_by_hpack[0] += 1
        return original(self, data, raw)

    monkeypatch.setattr(hpack.Decoder, "decode", counting)
    blocks = 0
    sizes = {200: 1024, 300: 0, 350: 256, 400: 4096, 500: 2048}
    for step in range(600):
        if step in sizes:
            size = sizes[step]
            for decoder in (stock, caching):
                decoder.max_allowed_table_size = size
            encoder.header_table_size = size
        block = encoder.encode(_request_fields(rng))
        _decode_both(stock, caching, block, raw=rng.random() < 0.95)
        blocks += 1
        if rng.random() < 0.2:  # the same bytes again, back to back
            _decode_both(stock, caching, block)
            blocks += 1
    assert blocks - decoded_by_hpack[0] > blocks / 4, "the cache was hardly used: the test lost its point"


def test_a_table_change_invalidates_the_cached_blocks():
    """The same bytes against a changed table are other fields: index 62 is the newest dynamic
    entry (RFC 7541 2.3.3), and a size update can evict it (4.3)."""
    stock, caching = hpack.Decoder(), CachingDecoder()
    encoder = hpack.Encoder()
    _decode_both(stock, caching, encoder.encode([(b"x-a", b"1")]))
    newest = b"\xbe"
    assert _decode_both(stock, caching, newest) == [(b"x-a", b"1")]
    assert _decode_both(stock, caching, newest) == [(b"x-a", b"1")]  # from the cache
    _decode_both(stock, caching, encoder.encode([(b"x-b", b"2")]))  # literal with indexing
    assert _decode_both(stock, caching, newest) == [(b"x-b", b"2")]
    _decode_both(stock, caching, b"\x20")  # a size update to 0 empties the table (RFC 7541 6.3)
    assert _decode_both(stock, caching, newest) is hpack.InvalidTableIndex


def test_a_lowered_header_list_limit_applies_to_cached_blocks():
    """A block cached under the old limit raises once SETTINGS_MAX_HEADER_LIST_SIZE is lowered
    (RFC 9113 6.5.2; hpack's ``max_header_list_size``), as the stock decoder does."""
    stock, caching = hpack.Decoder(), CachingDecoder()
    encoder = hpack.Encoder()
    _decode_both(stock, caching, encoder.encode([(b"x-fixed", b"yes")]))
    after = encoder.encode([(b"x-fixed", b"yes")])  # an index: a block that leaves the table as it was
    assert after == b"\xbe"
    assert _decode_both(stock, caching, after) == [(b"x-fixed", b"yes")]
    assert _decode_both(stock, caching, after) == [(b"x-fixed", b"yes")]
    for decoder in (stock, caching):
        decoder.max_header_list_size = table_entry_size(b"x-fixed", b"yes") - 1
    assert _decode_both(stock, caching, after) is hpack.OversizedHeaderListError
    for decoder in (stock, caching):
        decoder.max_header_list_size = 2**16
    assert _decode_both(stock, caching, after) == [(b"x-fixed", b"yes")]


def test_memoryview_input_decodes_the_same():
    """h2 hands the decoder whatever its frame parser holds; a memoryview is the same block."""
    stock, caching = hpack.Decoder(), CachingDecoder()
    encoder = hpack.Encoder()
    for _ in range(3):
        block = encoder.encode(REQUEST)
        assert caching.decode(memoryview(block), raw=True) == stock.decode(block, raw=True) == REQUEST
        assert caching.decode(bytearray(block), raw=True) == stock.decode(block, raw=True) == REQUEST


def test_decoded_lists_are_independent_copies():
    """The caller (h2, then our request reader) may keep or change the list it gets."""
    caching, encoder = CachingDecoder(), hpack.Encoder()
    caching.decode(encoder.encode(REQUEST), raw=True)
    repeat = encoder.encode(REQUEST)  # indexes only now: a block that leaves the table as it was
    first = caching.decode(repeat, raw=True)
    assert first == REQUEST
    first.append((b"x-mine", b"1"))
    first[0] = (b":method", b"PUT")
    second = caching.decode(repeat, raw=True)
    assert second == REQUEST
    second.clear()
    assert caching.decode(repeat, raw=True) == REQUEST


# -- ServerConnection: the stream count ---------------------------------------------------------------


def test_sequential_streams_do_not_pile_up():
    """h2 forgets a closed stream when it counts the open ones; counted less often, the streams held
    must still stay bounded over a long connection (RFC 9113 5.1.2 counts only open streams)."""
    client = _client()
    server = _server(client)
    held = []
    ended = 0
    for n in range(1000):
        stream_id = 1 + 2 * n
        client.send_headers(stream_id, REQUEST, end_stream=True)
        server.receive_data(client.data_to_send())
        server.queue_head(stream_id, [(b":status", b"200"), (b"content-length", b"2")], False)
        server.queue_data(stream_id, b"ok", True)
        events = client.receive_data(server.data_to_send())
        ended += sum(isinstance(event, StreamEnded) for event in events)
        held.append(len(server.streams))
    assert ended == 1000
    assert max(held) < 100, max(held)


def test_open_streams_are_counted_and_h2s_limit_still_holds():
    """``open_inbound_streams`` never undercounts, so h2 still refuses a stream past its own
    SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 5.1.2): TooManyStreamsError and a GOAWAY with
    PROTOCOL_ERROR. The client has not read the server's SETTINGS, so it does not hold back."""
    client = _client()
    server = ServerConnection(config=server_config())
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.data_to_send()
    limit = server.local_settings.max_concurrent_streams
    # Some closed streams first: held by h2 until a count forgets them.
    for n in range(20):
        client.send_headers(1 + 2 * n, REQUEST, end_stream=True)
        server.receive_data(client.data_to_send())
        server.queue_head(1 + 2 * n, [(b":status", b"204")], True)
    server.data_to_send()
    first_open = 41
    for n in range(limit):
        client.send_headers(first_open + 2 * n, REQUEST, end_stream=True)
        server.receive_data(client.data_to_send())
        if n + 1 == 50:
            assert server.open_inbound_streams >= 50
    assert server.open_inbound_streams == limit
    client.send_headers(first_open + 2 * limit, REQUEST, end_stream=True)
    with pytest.raises(TooManyStreamsError):
        server.receive_data(client.data_to_send())
    (goaway,) = parse_frames(server.data_to_send())
    assert isinstance(goaway, GoAwayFrame) and goaway.error_code == 1  # PROTOCOL_ERROR


# -- ServerConnection: the fast send paths --------------------------------------------------------------


def test_the_fast_paths_match_the_installed_h2():
    assert tuned.fast_path_mismatch() is None
    assert tuned._fast_paths is True


def test_an_h2_whose_internals_moved_gets_its_own_calls_and_one_warning(monkeypatch, caplog):
    """The comparison itself failing (an h2 release that renamed what it drives) is a mismatch:
    connections made afterwards send through h2's own calls, and serving goes on."""

    def moved() -> str | None:
        raise AttributeError("'H2Stream' object has no attribute 'state_machine'")

    monkeypatch.setattr(tuned, "_compare_with_h2", moved)
    monkeypatch.setattr(tuned, "_fast_paths", None)
    with caplog.at_level("WARNING", logger="asgi_worker.http2"):
        conn = ServerConnection(config=server_config())
    assert tuned._fast_paths is False
    assert conn.queue_head.__name__ == "_stock_head" and conn.queue_data.__name__ == "_stock_data"
    assert [r.getMessage() for r in caplog.records if "h2's own send calls" in r.getMessage()] != []


def _script(server: ServerConnection) -> None:
    """A response of every shape, interleaved over five streams."""
    big = [(b":status", b"200"), (b"x-big", b"y" * 40000), (b"x-fixed", b"yes")]
    server.queue_head(
        1, [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-fixed", b"yes")], False
    )
    server.queue_head(3, [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")], False)
    server.queue_data(1, b"", False)
    server.queue_data(1, b"a", False)
    server.queue_head(3, [(b":status", b"100")], False)
    server.queue_head(3, big, False)  # a block past any frame size: HEADERS + CONTINUATION
    server.queue_data(1, memoryview(b"b" * 40000)[: server.max_outbound_frame_size], False)
    server.queue_head(5, [(b":status", b"204"), (b"x-fixed", b"yes"), (b"date", b"now")], True)
    server.queue_data(3, b"c" * 1000, False)
    server.queue_head(1, [(b"grpc-status", b"0"), (b"x-fixed", b"yes")], True)  # trailers
    server.queue_data(3, b"", True)
    server.queue_head(7, [(b":status", b"200"), (b"set-cookie", b"s=1"), (b"content-length", b"3")], False)
    server.queue_data(7, b"xyz", True)
    server.queue_head(9, [(b":status", b"200"), (b"x-fixed", b"yes")], False)
    server.queue_data(9, b"d" * 999, False)
    server.queue_head(9, [(b"x-trailer", b"1"), (b"x-big", b"t" * 20000)], True)  # trailers, CONTINUATION


@pytest.mark.parametrize(
    "settings",
    [{}, {"MAX_FRAME_SIZE": 32768, "HEADER_TABLE_SIZE": 256}, {"HEADER_TABLE_SIZE": 0}],
    ids=["defaults", "frames-32k-table-256", "table-0"],
)
def test_fast_and_stock_paths_send_the_same_bytes(monkeypatch, settings):
    """``queue_head``/``queue_data`` against h2's ``send_headers``/``send_data`` on the same
    connection: the same frames (RFC 9113 6.1, 6.2, 6.10), windows and stream states."""
    tuned.fast_path_mismatch()
    servers = []
    for fast in (True, False):
        monkeypatch.setattr(tuned, "_fast_paths", fast)
        client = _client(**settings)
        for stream_id in (1, 3, 5, 7, 9):
            client.send_headers(stream_id, REQUEST, end_stream=stream_id != 9)
        server = _server(client)
        if not fast:
            assert server.queue_head == server._stock_head and server.queue_data == server._stock_data
        _script(server)
        servers.append((server, client, server.data_to_send()))
    monkeypatch.undo()
    (fast_server, client, sent), (stock_server, _, stock_sent) = servers
    assert sent == stock_sent
    assert fast_server.outbound_flow_control_window == stock_server.outbound_flow_control_window
    for stream_id in (1, 3, 5, 7, 9):
        mine, theirs = fast_server.streams[stream_id], stock_server.streams[stream_id]
        assert mine.state_machine.state == theirs.state_machine.state
        assert mine.outbound_flow_control_window == theirs.outbound_flow_control_window
    frames = parse_frames(sent)
    assert any(isinstance(frame, ContinuationFrame) for frame in frames)
    limit = fast_server.max_outbound_frame_size
    assert all(len(frame.data) <= limit for frame in frames if isinstance(frame, HeadersFrame | DataFrame))
    # And what the client reads is the script.
    events = client.receive_data(sent)
    heads = [
        (type(event).__name__, event.stream_id, list(event.headers))
        for event in events
        if hasattr(event, "headers")
    ]
    fixed = (b"x-fixed", b"yes")
    assert heads == [
        ("ResponseReceived", 1, [(b":status", b"200"), (b"content-type", b"text/plain"), fixed]),
        ("InformationalResponseReceived", 3, [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]),
        ("InformationalResponseReceived", 3, [(b":status", b"100")]),
        ("ResponseReceived", 3, [(b":status", b"200"), (b"x-big", b"y" * 40000), fixed]),
        ("ResponseReceived", 5, [(b":status", b"204"), fixed, (b"date", b"now")]),
        ("TrailersReceived", 1, [(b"grpc-status", b"0"), fixed]),
        ("ResponseReceived", 7, [(b":status", b"200"), (b"set-cookie", b"s=1"), (b"content-length", b"3")]),
        ("ResponseReceived", 9, [(b":status", b"200"), fixed]),
        ("TrailersReceived", 9, [(b"x-trailer", b"1"), (b"x-big", b"t" * 20000)]),
    ]
    bodies: dict[int, bytes] = {}
    for event in events:
        if isinstance(event, DataReceived):
            bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
    assert bodies == {1: b"a" + b"b" * limit, 3: b"c" * 1000, 7: b"xyz", 9: b"d" * 999}
    assert sorted(event.stream_id for event in events if isinstance(event, StreamEnded)) == [1, 3, 5, 7, 9]


def test_queue_data_refuses_beyond_the_windows_or_the_frame_size():
    """RFC 9113 6.9.1 (a sender must not exceed either window) and 4.2 (SETTINGS_MAX_FRAME_SIZE):
    ValueError, and the windows and the bytes to send are left as they were."""
    client = _client()
    client.send_headers(1, REQUEST, end_stream=True)
    client.send_headers(3, REQUEST, end_stream=True)
    server = _server(client)
    for stream_id in (1, 3):
        server.queue_head(stream_id, [(b":status", b"200")], False)
    server.data_to_send()

    def refused(stream_id: int, size: int) -> None:
        before = (server.outbound_flow_control_window, server.streams[stream_id].outbound_flow_control_window)
        state = server.streams[stream_id].state_machine.state
        with pytest.raises(ValueError):
            server.queue_data(stream_id, b"z" * size, False)
        after = (server.outbound_flow_control_window, server.streams[stream_id].outbound_flow_control_window)
        assert after == before and server.streams[stream_id].state_machine.state == state
        assert server.data_to_send() == b""

    for _ in range(3):
        server.queue_data(1, b"z" * 16384, False)
    server.data_to_send()
    assert server.streams[1].outbound_flow_control_window == 65535 - 3 * 16384
    refused(1, 16384)  # past the stream's window
    server.queue_data(1, b"z" * 16383, False)  # the stream's (and the connection's) last bytes
    server.data_to_send()
    assert (
        server.outbound_flow_control_window == 0 and server.streams[3].outbound_flow_control_window == 65535
    )
    refused(3, 1)  # past the connection's window
    client.increment_flow_control_window(10**6)
    client.increment_flow_control_window(10**6, stream_id=3)
    server.receive_data(client.data_to_send())
    refused(3, server.max_outbound_frame_size + 1)  # within the windows, past the frame size
    server.queue_data(3, b"z" * server.max_outbound_frame_size, True)


def test_empty_trailers_end_the_stream():
    """An app may send ``http.response.trailers`` with no fields (ASGI trailers extension); an empty
    header block is valid HPACK (RFC 7541 3) and a HEADERS frame with END_STREAM ends the stream."""
    client = _client()
    client.send_headers(1, REQUEST, end_stream=True)
    server = _server(client)
    server.queue_head(1, [(b":status", b"200")], False)
    server.queue_head(1, [], True)
    events = client.receive_data(server.data_to_send())
    assert isinstance(events[-1], StreamEnded)


# -- over a real socket ---------------------------------------------------------------------------------


def test_varying_response_heads_over_a_real_connection():
    """300 responses on one connection, 25 streams at a time, whose heads mix fields that repeat,
    cycle, change each time and are sensitive: h2's client decodes every one exactly."""

    def head(n: int) -> Fields:
        return [
            (b"content-length", b"%d" % (n % 97 + 1)),
            (b"x-fixed", b"yes"),
            (b"x-cycle", b"c%d" % (n % 5)),
            (b"etag", b'"%d"' % n),
            (b"set-cookie", b"s=%d" % (n % 3)),
            (b"server", b"test"),
            (b"date", b"Wed, 03 Jan 2024 00:%02d:%02d GMT" % divmod(n % 3600, 60)),
        ]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        n = int(scope["query_string"])
        await respond(send, 200, b"x" * (n % 97 + 1), head(n))

    received: dict[int, Fields] = {}
    bodies: dict[int, bytes] = {}
    ended: set[int] = set()
    with (
        h2_server(app) as server,
        socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock,
    ):
        client = _client()
        sock.sendall(client.data_to_send())
        numbers: dict[int, int] = {}
        for batch in range(0, 300, 25):
            for n in range(batch, batch + 25):
                stream_id = 1 + 2 * n
                numbers[stream_id] = n
                path = b"/?%d" % n
                client.send_headers(stream_id, [*REQUEST[:2], (b":path", path), REQUEST[3]], end_stream=True)
            sock.sendall(client.data_to_send())
            while len(ended) < batch + 25:
                data = sock.recv(65536)
                assert data, "the server closed the connection"
                for event in client.receive_data(data):
                    if isinstance(event, ResponseReceived):
                        received[event.stream_id] = list(event.headers)
                    elif isinstance(event, DataReceived):
                        bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                        client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, StreamEnded):
                        ended.add(event.stream_id)
                sock.sendall(client.data_to_send())
    assert len(received) == 300
    for stream_id, n in numbers.items():
        assert received[stream_id] == [(b":status", b"200"), *head(n)], n
        assert bodies[stream_id] == b"x" * (n % 97 + 1)


# -- memory bounds a client (or an app echoing it) could push ----------------------------------------------


def test_a_decoders_cache_holds_a_few_blocks_however_many_distinct_ones_come():
    """Literal blocks without indexing leave the table unchanged, so each is cacheable: 200 distinct
    ones (a client varying a header on purpose) must not make the connection hold 200."""
    decoder, stock = CachingDecoder(), hpack.Encoder()
    for n in range(200):
        block = stock.encode([hpack.NeverIndexedHeaderTuple(b":path", b"/%d" % n)], huffman=False)
        assert block[0] & 0xF0 == 0x10  # never indexed: the table is unchanged, the block cacheable
        assert decoder.decode(block, raw=True) == [(b":path", b"/%d" % n)]
        assert len(decoder._decoded) <= tuned._DECODED_LIMIT


def test_a_large_volatile_value_is_not_kept_for_every_connection():
    """The shared literals are for small values (content-length, date, etag): a large one an app
    sends (a long set-cookie, say) is encoded each time, not kept in the process-wide dict."""
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    value = b"v" * 4000
    fields = [(b":status", b"200"), (b"set-cookie", value)]
    assert decoder.decode(encoder.encode(fields), raw=True) == fields
    assert (b"set-cookie", value) not in tuned._shared
