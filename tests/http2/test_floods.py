"""Every flood and limit of issue 17, refused with its code within a bounded number of frames.

The budgets are token buckets on the session's clock: a fake one here, so "N frames at once" is
exactly N and refilling is a matter of moving the clock.
"""

from __future__ import annotations

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from asgi_worker.http.limits import RequestLimits
from asgi_worker.http2 import events as ev
from asgi_worker.http2.events import ErrorCode
from asgi_worker.http2.settings import Budget, Http2Limits
from tests.http2.wire import GET, Server, data_frame, raw, request

CALM = ErrorCode.ENHANCE_YOUR_CALM


def frames_until_goaway(server: Server, frames: list[bytes]) -> int:
    """Feed frames one at a time; how many went in when the connection ended (0: it never did)."""
    for count, frame in enumerate(frames, 1):
        server.feed(frame)
        if server.session.ended:
            return count
    return 0


def open_post(server: Server, stream_id: int = 1) -> None:
    server.send(server.headers(stream_id, request(b"POST"), end_stream=False))


FLOODS = {
    # kind: (budget field, frame factory, the reply each frame costs us)
    "settings_flood": ("settings_budget", lambda i: SettingsFrame(0).serialize(), SettingsFrame),
    "ping_flood": ("ping_budget", lambda i: PingFrame(0, b"%08d" % i).serialize(), PingFrame),
    "empty_data_flood": ("empty_data_budget", lambda i: data_frame(1, b"").serialize(), None),
    "priority_flood": ("priority_budget", lambda i: PriorityFrame(2 * i + 3, depends_on=0).serialize(), None),
    "window_update_flood": ("window_update_budget", lambda i: WindowUpdateFrame(0, 1).serialize(), None),
    "unknown_frame_flood": ("unknown_frame_budget", lambda i: raw(0xFA, 0, 0, b"x"), None),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_a_flood_is_refused_right_after_its_burst(kind):
    field, make, reply = FLOODS[kind]
    server = Server()
    open_post(server)
    budget: Budget = getattr(Http2Limits(), field)
    replies_before = len(server.of_type(reply)) if reply else 0
    count = frames_until_goaway(server, [make(i) for i in range(budget.burst + 50)])
    assert count == budget.burst + 1
    assert server.goaway_code() == CALM
    assert server.session.counts[kind] == 1
    assert server.ended().error_code == CALM
    if reply:
        assert len(server.of_type(reply)) - replies_before == budget.burst  # none to the flood frame


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_a_flood_in_one_read_is_cut_at_its_budget(kind):
    """All frames in one read: h2 never sees those past the budget, so never answers them."""
    field, make, reply = FLOODS[kind]
    server = Server()
    open_post(server)
    budget: Budget = getattr(Http2Limits(), field)
    replies_before = len(server.of_type(reply)) if reply else 0
    server.feed(b"".join(make(i) for i in range(10_000)))
    assert server.goaway_code() == CALM
    if reply:
        assert len(server.of_type(reply)) - replies_before == budget.burst


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_a_steady_rate_within_budget_is_served(kind):
    field, make, _ = FLOODS[kind]
    server = Server()
    open_post(server)
    budget: Budget = getattr(Http2Limits(), field)
    per_second = int(budget.per_second)
    for second in range(5):
        server.clock.advance(1.0)
        server.feed(b"".join(make(second * per_second + i) for i in range(per_second)))
    assert not server.session.ended


def test_pings_answered_while_we_send_data_earn_their_tokens_back():
    """gRPC probes the bandwidth with a PING per burst of DATA: that must never trip the budget."""
    server = Server()
    open_post(server)
    server.send(WindowUpdateFrame(0, 10_000_000), WindowUpdateFrame(1, 10_000_000))
    server.session.send_head(1, 200, [])
    for i in range(500):
        server.session.send_data(1, b"x" * 100)
        server.send(PingFrame(0, b"%08d" % i))
    assert not server.session.ended


def test_empty_data_with_end_stream_is_no_flood():
    server = Server()
    for stream_id in range(1, 200, 2):
        server.send(
            server.headers(stream_id, request(b"POST"), end_stream=False), data_frame(stream_id, b"", True)
        )
        server.session.send_head(stream_id, 200, [], end_stream=True)
    assert not server.session.ended
    assert len([e for e in server.events if isinstance(e, ev.StreamEnded)]) == 100


# -- Rapid Reset (CVE-2023-44487) -------------------------------------------------------------------


def test_rapid_reset_in_one_read_is_refused_and_no_app_runs():
    server = Server()
    burst = Http2Limits().reset_budget.burst
    frames = [
        server.headers(stream_id, GET).serialize()
        + RstStreamFrame(stream_id, error_code=ErrorCode.CANCEL).serialize()
        for stream_id in range(1, 2 * burst + 20, 2)
    ]
    server.feed(b"".join(frames))
    assert server.goaway_code() == CALM
    assert server.session.counts["rapid_reset"] == 1
    # Each stream was gone before the shell heard of it, but for the last: its RST_STREAM, past the
    # budget, was never read; the ConnectionEnded after it ends it.
    assert [e.stream_id for e in server.opened()] == [2 * burst + 1]
    assert isinstance(server.events[-1], ev.ConnectionEnded)


def test_rapid_reset_across_reads_is_refused_after_the_budget():
    server = Server()
    burst = Http2Limits().reset_budget.burst
    frames = []
    for stream_id in range(1, 4 * burst, 2):
        frames.append(server.headers(stream_id, request(b"POST"), end_stream=False).serialize())
        frames.append(RstStreamFrame(stream_id, error_code=ErrorCode.CANCEL).serialize())
    count = frames_until_goaway(server, frames)
    assert count == 2 * (burst + 1)  # the RST_STREAM past the burst
    assert server.goaway_code() == CALM
    resets = [e for e in server.events if isinstance(e, ev.StreamReset)]
    assert len(resets) == burst and all(r.remote for r in resets)


def test_resets_at_a_steady_rate_are_served():
    server = Server()
    per_second = int(Http2Limits().reset_budget.per_second)
    stream_id = 1
    for _ in range(5):
        server.clock.advance(1.0)
        for _ in range(per_second):
            server.send(server.headers(stream_id, request(b"POST"), end_stream=False))
            server.send(RstStreamFrame(stream_id, error_code=ErrorCode.CANCEL))
            stream_id += 2
    assert not server.session.ended


def test_streams_we_refuse_spend_the_same_budget():
    """A client that keeps opening streams past the limit is refused stream by stream, then cut off."""
    server = Server(settings=Http2Limits(max_concurrent_streams=1))
    server.send(server.headers(1, request(b"POST"), end_stream=False))
    burst = Http2Limits().reset_budget.burst
    count = frames_until_goaway(server, [server.headers(i, GET).serialize() for i in range(3, 4 * burst, 2)])
    assert count == burst + 1
    assert server.goaway_code() == CALM
    assert server.session.counts["too_many_streams"] == burst + 1
    assert server.session.counts["rapid_reset"] == 1


def test_malformed_requests_spend_the_reset_budget():
    server = Server()
    bad = [*GET, (b"connection", b"close")]
    burst = Http2Limits().reset_budget.burst
    count = frames_until_goaway(server, [server.headers(i, bad).serialize() for i in range(1, 4 * burst, 2)])
    assert count == burst + 1
    assert server.session.counts["malformed_request"] == burst + 1
    assert server.goaway_code() == CALM


def test_many_streams_in_one_read_past_the_limit_are_refused_one_by_one():
    """h2 would end the connection past its own stream limit; we refuse before it gets there."""
    server = Server(settings=Http2Limits(max_concurrent_streams=2))
    server.feed(b"".join(server.headers(i, GET).serialize() for i in range(1, 40, 2)))
    assert [e.stream_id for e in server.opened()] == [1, 3]
    assert server.resets() == [ErrorCode.REFUSED_STREAM] * 18
    assert not server.session.ended


# -- header blocks: CONTINUATION floods, HPACK bombs, header list size ---------------------------------------


def split_block(stream_id: int, block: bytes, size: int = 16384, end_stream: bool = True) -> list[bytes]:
    """A header block as HEADERS + CONTINUATION frames of ``size`` bytes."""
    pieces = [block[i : i + size] for i in range(0, len(block), size)] or [b""]
    frames = [HeadersFrame(stream_id, pieces[0], flags=["END_STREAM"] if end_stream else [])]
    frames += [ContinuationFrame(stream_id, piece) for piece in pieces[1:]]
    frames[-1].flags.add("END_HEADERS")
    return [frame.serialize() for frame in frames]


def test_continuation_flood_of_empty_frames_is_refused_after_max_header_frames():
    server = Server()
    block = server.block(GET)
    frames = [HeadersFrame(1, block[:1], flags=["END_STREAM"]).serialize()]
    frames += [ContinuationFrame(1, b"").serialize() for _ in range(10_000)]
    count = frames_until_goaway(server, frames)
    assert count == Http2Limits().max_header_frames + 1
    assert server.goaway_code() == CALM
    assert server.session.counts["continuation_flood"] == 1


def test_continuation_flood_of_full_frames_is_refused_past_the_block_limit():
    """What the session holds of one header block stays under twice the header list size."""
    server = Server()
    limit = 2 * RequestLimits().head
    frames = [HeadersFrame(1, b"\x00" * 16384, flags=["END_STREAM"]).serialize()]
    frames += [ContinuationFrame(1, b"\x00" * 16384).serialize() for _ in range(100)]
    count = frames_until_goaway(server, frames)
    assert count == limit // 16384 + 1
    assert server.goaway_code() == CALM
    assert server.session.counts["header_block_too_large"] == 1


def test_a_long_header_block_within_the_limits_is_read():
    server = Server()
    fields = [*GET, *[(b"x-%d" % i, b"v" * 500) for i in range(80)]]  # 43 KB, 3 frames
    for frame in split_block(1, server.block(fields), size=16384):
        server.feed(frame)
    assert [e.stream_id for e in server.opened()] == [1]


def test_an_hpack_bomb_is_refused_before_it_is_decoded_whole():
    """One 4 KB field in the dynamic table, then referenced by one byte each: decoding stops at twice
    the advertised list size, and the connection ends (its HPACK state cannot be kept)."""
    server = Server()
    encoder = hpack.Encoder()
    field = (b"x-bomb", b"b" * 4000)
    block = encoder.encode([*GET, field])
    block += b"".join(encoder.encode([field]) for _ in range(200))
    assert len(block) < 5000  # 800 KB decoded
    server.feed(HeadersFrame(1, block, flags=["END_STREAM", "END_HEADERS"]).serialize())
    assert server.goaway_code() == CALM
    assert server.session.counts["header_list_too_large"] == 1


def test_a_header_list_over_the_advertised_size_is_answered_431():
    """Up to twice the advertised size the block is decoded and answered as HTTP/1.1 would (431)."""
    server = Server()
    fields = [*GET, *[(b"x-%d" % i, b"v" * 2000) for i in range(40)]]  # 81 KB > 64 KiB
    for frame in split_block(1, server.block(fields)):
        server.feed(frame)
    assert [(e.stream_id, e.status) for e in server.events if isinstance(e, ev.StreamRefused)] == [(1, 431)]
    assert not server.session.ended


# -- stream ids, stalls, GOAWAY on the way out ---------------------------------------------------------------


def test_stream_id_exhaustion_asks_the_client_to_reconnect():
    server = Server()
    near_end = 2**31 - 1 - 2 * 100  # ids left for every stream the client may have open
    server.send(server.headers(near_end, GET))
    assert [e.stream_id for e in server.opened()] == [near_end]
    goaway = server.goaway()
    assert isinstance(goaway, GoAwayFrame)
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCode.NO_ERROR, near_end)
    assert server.session.counts["stream_ids_exhausted"] == 1
    server.send(server.headers(near_end + 2, GET))
    assert server.resets(near_end + 2) == [ErrorCode.REFUSED_STREAM]
    server.session.send_head(near_end, 200, [], end_stream=True)
    assert server.session.open_streams == 0


def test_a_body_past_the_limit_without_content_length_is_refused_413_and_no_longer_delivered():
    server = Server(limits=RequestLimits(body=100))
    open_post(server)
    server.send(data_frame(1, b"x" * 60), data_frame(1, b"x" * 60), data_frame(1, b"x" * 60, end_stream=True))
    data = [e for e in server.events if isinstance(e, ev.StreamData)]
    refused = [e for e in server.events if isinstance(e, ev.StreamRefused)]
    assert [len(e.data) for e in data] == [60]
    assert [(e.stream_id, e.status) for e in refused] == [(1, 413)]
    assert not any(isinstance(e, ev.StreamEnded) for e in server.events)
    assert server.session.counts["body_too_large"] == 1
    server.session.send_head(1, 413, [], end_stream=True)
    assert server.session.open_streams == 0
