"""Http2Session with a real h2 client: the request a shell sees, the response it sends, the ends."""

from __future__ import annotations

import pytest
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, GoAwayFrame, SettingsFrame, WindowUpdateFrame

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.events import BODY_CHUNKED
from asgi_worker.http.limits import RequestLimits
from asgi_worker.http2 import events as ev
from asgi_worker.http2.events import ErrorCode
from asgi_worker.http2.settings import Http2Limits, header_list_sizes
from tests.http2.wire import GET, PREFACE, Pair, Server, parse_frames, request


def test_start_sends_our_settings_and_raises_the_connection_window():
    server = Server(preface=False)
    settings, update = server.frames
    assert isinstance(settings, SettingsFrame)
    assert settings.settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 100
    assert settings.settings[SettingCodes.INITIAL_WINDOW_SIZE] == 256 * 1024
    assert settings.settings[SettingCodes.MAX_HEADER_LIST_SIZE] == RequestLimits().head
    assert settings.settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 0
    assert isinstance(update, WindowUpdateFrame) and update.stream_id == 0
    assert 65535 + update.window_increment == 2 * 1024 * 1024


def test_connect_protocol_is_advertised_only_when_asked():
    server = Server(settings=Http2Limits(enable_connect_protocol=True), preface=False)
    assert server.frames[0].settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1


def test_preface_seen_while_sniffing_is_read_by_start():
    """The shell may take the first bytes off the transport to tell HTTP/2 from HTTP/1.1."""
    server = Server(preface=False)
    fresh = type(server.session)(RequestLimits(), Http2Limits(), server.clock)
    assert fresh.start(PREFACE[:10]) == []
    events = fresh.feed(PREFACE[10:] + SettingsFrame(0).serialize() + server.headers(1, GET).serialize())
    assert [type(event) for event in events] == [ev.StreamOpened, ev.StreamEnded]


def test_a_get_becomes_the_head_http1_parsers_give():
    pair = Pair()
    events = pair.get(1, b"/a/b?c=d", (b"accept", b"*/*"), (b"x-two", b"2"))
    opened, ended = events
    assert isinstance(opened, ev.StreamOpened) and isinstance(ended, ev.StreamEnded)
    head = opened.head
    assert (head.method, head.target, head.http_version) == ("GET", b"/a/b?c=d", "2")
    assert head.headers == [(b"host", b"example.com"), (b"accept", b"*/*"), (b"x-two", b"2")]
    assert head.keep_alive and not head.expect_continue and head.upgrade is None and not head.websocket
    assert head.body_length == 0
    assert opened.scheme == "https" and opened.protocol is None


def test_body_length_is_content_length_or_chunked():
    pair = Pair()
    pair.client.send_headers(1, request(b"POST", b"/", (b"content-length", b"3")))
    pair.client.send_headers(3, request(b"POST", b"/"))
    events = pair.pump()
    assert [event.head.body_length for event in events] == [3, BODY_CHUNKED]


def test_body_trailers_and_end_arrive_in_order():
    pair = Pair()
    pair.client.send_headers(1, request(b"POST", b"/", (b"te", b"trailers")))
    pair.client.send_data(1, b"hello ")
    pair.client.send_data(1, b"world")
    pair.client.send_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
    events = pair.pump()
    assert [type(event) for event in events] == [
        ev.StreamOpened,
        ev.StreamData,
        ev.StreamData,
        ev.StreamTrailers,
        ev.StreamEnded,
    ]
    assert b"".join(event.data for event in events[1:3]) == b"hello world"
    assert events[1].flow_length == 6
    assert events[3].headers == [(b"x-checksum", b"abc")]


def test_response_head_body_and_trailers_reach_the_client():
    pair = Pair()
    pair.get(1)
    pair.session.send_head(1, 200, [(b"Content-Type", b"text/plain"), (b"x-a", b"1")])
    assert pair.session.send_data(1, b"hello") == 5
    pair.session.send_trailers(1, [(b"x-trailer", b"done")])
    pair.pump()
    wanted = (ResponseReceived, DataReceived, TrailersReceived)
    response, data, trailers = [e for e in pair.client_events if isinstance(e, wanted)]
    assert isinstance(response, ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-a", b"1")]
    assert isinstance(data, DataReceived) and data.data == b"hello"
    assert isinstance(trailers, TrailersReceived) and trailers.headers == [(b"x-trailer", b"done")]
    assert pair.session.open_streams == 0


def test_connection_specific_response_headers_are_dropped_and_names_lowercased():
    """RFC 9113 8.2.2: an app written for HTTP/1.1 may send them; they must not go out."""
    pair = Pair()
    pair.get(1)
    headers = [
        (b"Connection", b"close"),
        (b"transfer-encoding", b"chunked"),
        (b"keep-alive", b"timeout=5"),
        (b"upgrade", b"h2c"),
        (b"X-Padded", b" v "),
    ]
    pair.session.send_head(1, 204, headers, end_stream=True)
    pair.pump()
    response = next(e for e in pair.client_events if isinstance(e, ResponseReceived))
    assert response.headers == [(b":status", b"204"), (b"x-padded", b"v")]


@pytest.mark.parametrize("header", [(b"bad name", b"v"), (b"x", b"a\r\nb"), (b"x", b"a\0")])
def test_a_bad_response_header_is_the_apps_error(header):
    pair = Pair()
    pair.get(1)
    with pytest.raises(AppProtocolError):
        pair.session.send_head(1, 200, [header])


def test_an_informational_response_precedes_the_final_one():
    pair = Pair()
    pair.get(1)
    pair.session.send_head(1, 103, [(b"link", b"</a.css>; rel=preload")])
    pair.session.send_head(1, 200, [], end_stream=True)
    pair.pump()
    kinds = [
        type(e) for e in pair.client_events if isinstance(e, InformationalResponseReceived | ResponseReceived)
    ]
    assert kinds == [InformationalResponseReceived, ResponseReceived]


def test_concurrent_streams_interleave():
    pair = Pair()
    for stream_id in (1, 3, 5):
        pair.client.send_headers(stream_id, request(), end_stream=True)
    opened = [e.stream_id for e in pair.pump() if isinstance(e, ev.StreamOpened)]
    assert opened == [1, 3, 5]
    for stream_id in (5, 1, 3):
        pair.session.send_head(stream_id, 200, [])
        pair.session.send_data(stream_id, b"x%d" % stream_id, end_stream=True)
    pair.pump()
    bodies = {e.stream_id: e.data for e in pair.client_events if isinstance(e, DataReceived)}
    assert bodies == {1: b"x1", 3: b"x3", 5: b"x5"}
    assert pair.session.open_streams == 0


def test_a_response_that_ends_before_the_request_asks_the_client_to_stop_with_no_error():
    """RFC 9113 8.1: a complete response before the whole request: RST_STREAM NO_ERROR."""
    pair = Pair()
    pair.client.send_headers(1, request(b"POST", b"/"))
    pair.client.send_data(1, b"part")
    pair.pump()
    pair.session.send_head(1, 413, [], end_stream=True)
    pair.pump()
    resets = [e for e in pair.client_events if isinstance(e, StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCode.NO_ERROR)]
    assert pair.session.open_streams == 0


def test_peer_reset_ends_the_stream_for_the_app():
    pair = Pair()
    pair.client.send_headers(1, request(b"POST", b"/"))
    pair.pump()
    pair.client.reset_stream(1, ErrorCode.CANCEL)
    (reset,) = pair.pump()
    assert isinstance(reset, ev.StreamReset)
    assert (reset.stream_id, reset.error_code, reset.remote) == (1, ErrorCode.CANCEL, True)
    assert pair.session.open_streams == 0
    assert pair.session.send_data(1, b"late") == 4  # dropped: the stream is gone
    assert not pair.session.stream_open(1)


def test_a_stream_opened_and_reset_in_one_read_never_reaches_the_app():
    """Rapid Reset's cheapest defence: no app task for a stream that is already gone."""
    pair = Pair()
    pair.client.send_headers(1, request(b"POST", b"/"))
    pair.client.reset_stream(1, ErrorCode.CANCEL)
    pair.client.send_headers(3, request(), end_stream=True)
    events = pair.pump()
    assert [(type(e), e.stream_id) for e in events] == [(ev.StreamOpened, 3), (ev.StreamEnded, 3)]
    assert pair.session.open_streams == 1


def test_reset_by_the_shell():
    pair = Pair()
    pair.get(1)
    pair.session.reset(1, ErrorCode.INTERNAL_ERROR)
    pair.pump()
    resets = [e for e in pair.client_events if isinstance(e, StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCode.INTERNAL_ERROR)]
    assert pair.session.open_streams == 0


def test_graceful_goaway_lets_open_streams_finish_and_refuses_later_ones():
    pair = Pair()
    pair.get(1)
    pair.session.goaway()
    assert pair.session.draining
    pair.pump()
    goaway = next(e for e in pair.client_events if isinstance(e, ConnectionTerminated))
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCode.NO_ERROR, 1)
    server = Server()
    server.send(server.headers(1, GET))
    server.session.goaway()
    server.send(server.headers(3, GET))
    assert server.resets(3) == [ErrorCode.REFUSED_STREAM]
    assert [e.stream_id for e in server.opened()] == [1]
    assert server.session.counts["refused_after_goaway"] == 1
    server.session.send_head(1, 200, [], end_stream=True)
    server.feed(b"")
    assert server.session.open_streams == 0 and not server.session.ended


def test_goaway_with_an_error_ends_the_connection():
    server = Server()
    server.send(server.headers(1, GET))
    server.session.goaway(ErrorCode.INTERNAL_ERROR)
    assert server.session.ended
    frames = parse_frames(server.session.data_to_send())
    assert [(type(f), f.error_code) for f in frames] == [(GoAwayFrame, ErrorCode.INTERNAL_ERROR)]
    assert server.session.feed(server.headers(3, GET).serialize()) == []


def test_peer_goaway_ends_the_connection():
    pair = Pair()
    pair.get(1)
    pair.client.close_connection()
    (ended,) = pair.pump()
    assert isinstance(ended, ev.ConnectionEnded)
    assert (ended.error_code, ended.last_stream_id) == (ErrorCode.NO_ERROR, 0)
    assert pair.session.ended


def test_ping_is_answered():
    pair = Pair()
    pair.client.ping(b"12345678")
    pair.pump()
    assert any(type(e).__name__ == "PingAckReceived" for e in pair.client_events)


def test_header_list_sizes_follow_the_head_limit():
    assert header_list_sizes(RequestLimits(head=10000)) == (10000, 20000)
    assert header_list_sizes(RequestLimits(head=0)) == (65536, 131072)


def test_limits_are_checked():
    from asgi_worker.errors import ConfigError

    for bad in (
        {"max_concurrent_streams": 0},
        {"initial_window_size": 2**31},
        {"connection_window_size": 100},
        {"max_frame_size": 1000},
        {"max_header_frames": 0},
    ):
        with pytest.raises(ConfigError):
            Http2Limits(**bad)


def test_a_body_consumed_by_the_app_reopens_the_windows():
    """h2 batches WINDOW_UPDATEs: a window reopens once half of it has been consumed."""
    pair = Pair()
    pair.client.send_headers(1, request(b"POST", b"/"))
    for _ in range(10):
        pair.client.send_data(1, b"x" * 16000)
    events = pair.pump()
    before = pair.client_window(1)
    assert before == 256 * 1024 - 160000
    data = [e for e in events if isinstance(e, ev.StreamData)]
    pair.session.consumed(1, sum(e.flow_length for e in data) - 10000)
    pair.pump()
    assert pair.client_window(1) == 256 * 1024 - 10000
    assert next(e for e in pair.events if isinstance(e, ev.StreamOpened)).head.body_length == BODY_CHUNKED


def test_data_frame_padding_counts_against_flow_control_only():
    server = Server()
    server.send(server.headers(1, request(b"POST"), end_stream=False))
    events = server.send(DataFrame(1, b"abc", flags=["PADDED"], pad_length=10))
    (data,) = [e for e in events if isinstance(e, ev.StreamData)]
    assert data.data == b"abc" and data.flow_length == 14
