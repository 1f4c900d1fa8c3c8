"""Flow control both ways (RFC 9113 5.2, 6.9): request bodies held to the windows we configured and
reopened only as the app consumes them; responses never sent past the peer's windows or frame size.
"""

from __future__ import annotations

import random

from h2.events import DataReceived, StreamEnded
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame

from asgi_worker.http2 import events as ev
from asgi_worker.http2.settings import Http2Limits
from tests.http2.wire import Pair, parse_frames, request

MIB = 1024 * 1024


def test_a_10_mib_upload_is_only_acknowledged_as_consumed():
    """The peer can never have more body in flight or unread than the windows we configured."""
    settings = Http2Limits()
    pair = Pair(settings=settings)
    pair.client.send_headers(1, request(b"POST", b"/upload"))
    pair.pump()
    rng = random.Random(17)
    total = 10 * MIB
    sent = received = consumed = 0
    while consumed < total:
        window = pair.client.local_flow_control_window(1)
        if sent < total and window:
            size = min(window, 16384, total - sent)
            pair.client.send_data(1, b"b" * size, end_stream=sent + size == total)
            sent += size
        events = pair.pump()
        received += sum(e.flow_length for e in events if isinstance(e, ev.StreamData))
        unread = received - consumed
        # Body sent but not consumed, plus what the peer may still send: within the windows.
        assert unread + pair.client.local_flow_control_window(1) <= settings.initial_window_size
        assert unread + pair.client.outbound_flow_control_window <= settings.connection_window_size
        if unread and (rng.random() < 0.5 or not window):
            take = rng.randint(1, unread)
            pair.session.consumed(1, take)
            consumed += take
    assert received == total
    assert any(isinstance(e, ev.StreamEnded) for e in pair.events)


def test_an_app_that_does_not_read_stalls_its_upload_at_the_stream_window():
    settings = Http2Limits(initial_window_size=100_000)
    pair = Pair(settings=settings)
    pair.client.send_headers(1, request(b"POST"))
    pair.pump()
    sent = 0
    while window := pair.client.local_flow_control_window(1):
        size = min(window, 16384)
        pair.client.send_data(1, b"x" * size)
        sent += size
        pair.pump()
    assert sent == 100_000
    pair.session.consumed(1, 10**9)  # more than received: clamped, the windows stay bounded
    pair.pump()
    assert pair.client.local_flow_control_window(1) == 100_000


def test_a_slow_stream_leaves_the_connection_window_to_the_others():
    pair = Pair()
    for stream_id in (1, 3):
        pair.client.send_headers(stream_id, request(b"POST"))
    pair.pump()
    while window := pair.client.local_flow_control_window(1):
        pair.client.send_data(1, b"x" * min(window, 16384))
        pair.pump()
    assert pair.client.local_flow_control_window(3) == Http2Limits().initial_window_size


def test_body_nobody_read_is_returned_to_the_connection_when_the_stream_closes():
    settings = Http2Limits(initial_window_size=65535, connection_window_size=65535)
    pair = Pair(settings=settings)
    pair.client.send_headers(1, request(b"POST"))
    for _ in range(4):
        pair.client.send_data(1, b"x" * 16000)
    pair.client.end_stream(1)
    pair.pump()
    assert pair.client.outbound_flow_control_window == 65535 - 64000
    pair.session.send_head(1, 200, [], end_stream=True)
    pair.pump()
    assert pair.client.outbound_flow_control_window == 65535


def test_send_data_never_exceeds_the_peers_windows_or_frame_size():
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    pair.get(1)
    pair.session.send_head(1, 200, [])
    body = bytes(range(256)) * 400  # 102400 bytes
    offset = pair.session.send_data(1, body)
    assert offset == 1000
    assert pair.session.blocked_since(1) == pair.clock.now
    pair.pump()
    while offset < len(body):
        # The client reads what arrived, opening the windows; the session says when to resend.
        arrived = [e for e in pair.client_events if isinstance(e, DataReceived)]
        for event in arrived:
            pair.client.acknowledge_received_data(event.flow_controlled_length, 1)
        pair.client_events.clear()
        opened = [e for e in pair.pump() if isinstance(e, ev.WindowOpened)]
        assert opened and opened[0].stream_id in (0, 1)
        sent = pair.session.send_data(1, body[offset:], end_stream=True)
        assert 0 < sent <= 1000
        offset += sent
        frames = parse_frames(pair.session.data_to_send())
        assert all(len(f.data) <= 16384 for f in frames if isinstance(f, DataFrame))
        pair.client_events += pair.client.receive_data(b"".join(f.serialize() for f in frames))
    assert pair.session.blocked_since(1) is None
    assert any(isinstance(e, StreamEnded) for e in pair.client_events)
    assert pair.session.open_streams == 0


def test_frames_follow_the_peers_max_frame_size():
    pair = Pair(client_settings={SettingCodes.MAX_FRAME_SIZE: 65536, SettingCodes.INITIAL_WINDOW_SIZE: 2**20})
    pair.client.increment_flow_control_window(2**20)
    pair.get(1)
    pair.session.send_head(1, 200, [])
    assert pair.session.send_data(1, b"x" * 300_000, end_stream=True) == 300_000
    frames = [f for f in parse_frames(pair.session.data_to_send()) if isinstance(f, DataFrame)]
    assert [len(f.data) for f in frames] == [65536] * 4 + [300_000 - 4 * 65536]
    assert "END_STREAM" in frames[-1].flags and not any("END_STREAM" in f.flags for f in frames[:-1])


def test_the_connection_window_blocks_every_stream_and_its_update_reopens_them():
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 2**20})
    for stream_id in (1, 3):
        pair.get(stream_id)
        pair.session.send_head(stream_id, 200, [])
    assert pair.session.send_data(1, b"x" * 70_000) == 65535  # the connection's initial window
    assert pair.session.send_data(3, b"y" * 10) == 0
    pair.pump()
    pair.client.acknowledge_received_data(65535, 1)
    opened = [e.stream_id for e in pair.pump() if isinstance(e, ev.WindowOpened)]
    assert 0 in opened


def test_a_stall_is_measured_from_the_last_byte_that_went_out():
    """A peer that never opens its window: the shell's timeout reads ``blocked_since``."""
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.get(1)
    pair.session.send_head(1, 200, [])
    start = pair.clock.now
    assert pair.session.send_data(1, b"x" * 100) == 10
    pair.clock.advance(30)
    assert pair.session.send_data(1, b"x" * 90) == 0
    assert pair.session.blocked_since(1) == start  # no progress: the stall goes on
    pair.pump()
    pair.client.increment_flow_control_window(5, stream_id=1)
    assert [e.stream_id for e in pair.pump() if isinstance(e, ev.WindowOpened)] == [1]
    assert pair.session.send_data(1, b"x" * 90) == 5
    assert pair.session.blocked_since(1) == pair.clock.now  # progress restarts it


def test_a_raised_initial_window_reopens_blocked_streams():
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.get(1)
    pair.session.send_head(1, 200, [])
    pair.session.send_data(1, b"x" * 100)
    pair.pump()
    pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    assert any(isinstance(e, ev.WindowOpened) and e.stream_id == 0 for e in pair.pump())
    assert pair.session.send_data(1, b"x" * 90, end_stream=True) == 90
