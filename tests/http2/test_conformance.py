"""RFC 9113's MUSTs for servers, one test per rule, each naming its section.

Stream errors are checked as RST_STREAM with the code on that stream and the connection still
serving; connection errors as GOAWAY with the code, a ``ConnectionEnded`` and nothing read after.
"""

from __future__ import annotations

import pytest
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
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
from asgi_worker.http2.settings import Http2Limits
from tests.http2.wire import GET, PREFACE, Server, data_frame, raw, request

PROTOCOL_ERROR = ErrorCode.PROTOCOL_ERROR


def connection_error(server: Server, code: int) -> None:
    assert server.goaway_code() == code
    assert server.ended() is not None and server.ended().error_code == code
    assert server.session.ended
    assert server.feed(server.headers(101, GET).serialize()) == []


def still_serving(server: Server, stream_id: int = 99) -> None:
    server.send(server.headers(stream_id, GET))
    assert server.opened()[-1].stream_id == stream_id
    assert not server.session.ended


def stream_error(server: Server, stream_id: int, code: int = PROTOCOL_ERROR) -> None:
    assert server.resets(stream_id) == [code]
    assert stream_id not in [event.stream_id for event in server.opened()]
    still_serving(server)


# -- 3.4 Connection preface ------------------------------------------------------------------------


def test_3_4_an_invalid_preface_is_a_connection_error():
    server = Server(preface=False)
    server.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    connection_error(server, PROTOCOL_ERROR)
    assert server.session.counts["bad_preface"] == 1


def test_3_4_the_preface_must_be_followed_by_settings():
    server = Server(preface=False)
    server.feed(PREFACE + PingFrame(0, b"12345678").serialize())
    connection_error(server, PROTOCOL_ERROR)


def test_3_4_a_preface_may_arrive_a_byte_at_a_time():
    server = Server(preface=False)
    for byte in PREFACE + SettingsFrame(0).serialize() + server.headers(1, GET).serialize():
        server.feed(bytes([byte]))
    assert [event.stream_id for event in server.opened()] == [1]


def test_3_4_our_settings_are_acknowledged_and_the_peers_acked():
    server = Server()
    acks = [f for f in server.of_type(SettingsFrame) if "ACK" in f.flags]
    assert len(acks) == 1
    server.send(SettingsFrame(0, flags=["ACK"]))
    assert not server.session.ended


# -- 4 Frames ------------------------------------------------------------------------------------


def test_4_2_a_frame_over_max_frame_size_is_refused_at_its_header():
    """The 9-byte header alone ends it: a claimed 16 MiB is never buffered."""
    server = Server()
    server.send(server.headers(1, request(b"POST"), end_stream=False))
    server.feed(raw(0x0, 0, 1, length=2**24 - 1))
    connection_error(server, ErrorCode.FRAME_SIZE_ERROR)
    assert server.session.counts["frame_too_large"] == 1


def test_4_2_a_frame_of_exactly_max_frame_size_is_read():
    server = Server()
    server.send(server.headers(1, request(b"POST"), end_stream=False))
    events = server.send(data_frame(1, b"x" * 16384))
    assert [len(e.data) for e in events if isinstance(e, ev.StreamData)] == [16384]


def test_4_1_unknown_frame_types_are_ignored():
    """RFC 9113 4.1, 5.5: unknown types and flags are ignored."""
    server = Server()
    server.feed(raw(0xFA, 0xFF, 0, b"whatever"))
    still_serving(server, 1)


def test_4_3_a_header_block_that_cannot_be_decoded_is_a_compression_error():
    server = Server()
    server.feed(raw(0x1, 0x5, 1, b"\xff\xff\xff\xff\xff"))
    assert server.session.ended
    assert server.goaway_code() in (ErrorCode.COMPRESSION_ERROR, PROTOCOL_ERROR)


# -- 5.1 Stream states and identifiers -------------------------------------------------------------


def test_5_1_1_an_even_stream_id_from_a_client_is_a_connection_error():
    server = Server()
    server.send(server.headers(2, GET))
    connection_error(server, PROTOCOL_ERROR)


def test_5_1_1_a_stream_id_lower_than_a_used_one_is_a_connection_error():
    server = Server()
    server.send(server.headers(5, GET))
    server.send(server.headers(3, GET))
    connection_error(server, PROTOCOL_ERROR)


def test_5_1_data_on_an_idle_stream_is_a_connection_error():
    server = Server()
    server.send(data_frame(1, b"x"))
    connection_error(server, PROTOCOL_ERROR)


def test_5_1_data_after_end_stream_is_stream_closed():
    server = Server()
    server.send(server.headers(1, GET))
    server.send(data_frame(1, b"late"))
    assert server.session.ended or server.resets(1) == [ErrorCode.STREAM_CLOSED]
    assert server.goaway_code() in (None, ErrorCode.STREAM_CLOSED)


def test_5_1_2_a_stream_past_the_concurrent_limit_is_refused_not_the_connection():
    """5.1.2: PROTOCOL_ERROR or REFUSED_STREAM as a stream error; h2 alone would end the connection."""
    server = Server(settings=Http2Limits(max_concurrent_streams=2))
    server.send(server.headers(1, GET), server.headers(3, GET), server.headers(5, GET))
    assert [e.stream_id for e in server.opened()] == [1, 3]
    assert server.resets(5) == [ErrorCode.REFUSED_STREAM]
    assert server.session.counts["too_many_streams"] == 1
    server.session.send_head(1, 200, [], end_stream=True)
    still_serving(server, 7)


# -- 6.1 DATA, 6.2 HEADERS, 6.4 RST_STREAM -----------------------------------------------------------


def test_6_1_data_on_stream_zero_is_a_connection_error():
    server = Server()
    server.feed(raw(0x0, 0, 0, b"x"))
    connection_error(server, PROTOCOL_ERROR)


def test_6_1_padding_longer_than_the_frame_is_a_connection_error():
    server = Server()
    server.send(server.headers(1, request(b"POST"), end_stream=False))
    server.feed(raw(0x0, 0x8, 1, b"\x05ab"))
    connection_error(server, PROTOCOL_ERROR)


def test_6_2_headers_on_stream_zero_is_a_connection_error():
    server = Server()
    server.feed(raw(0x1, 0x5, 0, server.block(GET)))
    connection_error(server, PROTOCOL_ERROR)


def test_6_3_a_priority_frame_of_the_wrong_size_is_a_frame_size_error():
    server = Server()
    server.feed(raw(0x2, 0, 1, b"\x00\x00\x00"))
    connection_error(server, ErrorCode.FRAME_SIZE_ERROR)  # a stream error may be escalated (5.4.1)


def test_6_9_window_update_of_the_wrong_size_is_a_frame_size_error():
    server = Server()
    server.feed(raw(0x8, 0, 0, b"\x00\x00\x00\x01\x00"))
    connection_error(server, ErrorCode.FRAME_SIZE_ERROR)


def test_6_4_rst_stream_on_an_idle_stream_is_a_connection_error():
    server = Server()
    server.send(RstStreamFrame(1, error_code=ErrorCode.CANCEL))
    connection_error(server, PROTOCOL_ERROR)


def test_6_4_rst_stream_of_the_wrong_size_is_a_frame_size_error():
    server = Server()
    server.send(server.headers(1, GET))
    server.feed(raw(0x3, 0, 1, b"\x00\x00\x08"))
    connection_error(server, ErrorCode.FRAME_SIZE_ERROR)


# -- 6.5 SETTINGS ----------------------------------------------------------------------------------


def test_6_5_settings_on_a_stream_is_a_connection_error():
    server = Server()
    server.feed(raw(0x4, 0, 1, b""))
    connection_error(server, PROTOCOL_ERROR)


def test_6_5_settings_not_a_multiple_of_six_is_a_frame_size_error():
    server = Server()
    server.feed(raw(0x4, 0, 0, b"\x00\x03\x00\x00\x00"))
    connection_error(server, ErrorCode.FRAME_SIZE_ERROR)


def test_6_5_a_settings_ack_with_a_payload_is_a_frame_size_error():
    server = Server()
    server.feed(raw(0x4, 0x1, 0, b"\x00\x03\x00\x00\x00\x01"))
    connection_error(server, ErrorCode.FRAME_SIZE_ERROR)


@pytest.mark.parametrize(
    ("setting", "value", "code"),
    [
        (SettingCodes.ENABLE_PUSH, 2, PROTOCOL_ERROR),
        (SettingCodes.INITIAL_WINDOW_SIZE, 2**31, ErrorCode.FLOW_CONTROL_ERROR),
        (SettingCodes.MAX_FRAME_SIZE, 16383, PROTOCOL_ERROR),
        (SettingCodes.MAX_FRAME_SIZE, 2**24, PROTOCOL_ERROR),
    ],
)
def test_6_5_2_a_setting_out_of_range_is_a_connection_error(setting, value, code):
    server = Server()
    server.send(SettingsFrame(0, settings={setting: value}))
    connection_error(server, code)


def test_6_5_2_unknown_settings_are_ignored():
    server = Server()
    server.send(SettingsFrame(0, settings={0x99: 7}))
    still_serving(server, 1)


def test_6_5_3_settings_are_acknowledged():
    server = Server()
    before = len([f for f in server.of_type(SettingsFrame) if "ACK" in f.flags])
    server.send(SettingsFrame(0, settings={SettingCodes.HEADER_TABLE_SIZE: 0}))
    assert len([f for f in server.of_type(SettingsFrame) if "ACK" in f.flags]) == before + 1


# -- 6.7 PING, 6.8 GOAWAY, 6.9 WINDOW_UPDATE, 6.10 CONTINUATION ----------------------------------------


def test_6_7_ping_is_answered_with_the_same_payload():
    server = Server()
    server.send(PingFrame(0, b"abcdefgh"))
    (ack,) = server.of_type(PingFrame)
    assert "ACK" in ack.flags and ack.opaque_data == b"abcdefgh"


def test_6_7_a_ping_ack_is_not_answered():
    server = Server()
    server.send(PingFrame(0, b"abcdefgh", flags=["ACK"]))
    assert server.of_type(PingFrame) == []


def test_6_7_ping_of_the_wrong_size_is_a_frame_size_error():
    server = Server()
    server.feed(raw(0x6, 0, 0, b"1234567"))
    connection_error(server, ErrorCode.FRAME_SIZE_ERROR)


def test_6_7_ping_on_a_stream_is_a_connection_error():
    server = Server()
    server.feed(raw(0x6, 0, 1, b"12345678"))
    connection_error(server, PROTOCOL_ERROR)


def test_6_8_goaway_from_the_peer_ends_the_connection():
    server = Server()
    server.send(GoAwayFrame(0, last_stream_id=0, error_code=0))
    assert isinstance(server.ended(), ev.ConnectionEnded)
    assert server.session.ended


def test_6_9_a_zero_increment_is_a_protocol_error():
    server = Server()
    server.feed(raw(0x8, 0, 0, b"\x00\x00\x00\x00"))
    connection_error(server, PROTOCOL_ERROR)


def test_6_9_1_a_send_window_past_2_31_minus_1_is_a_flow_control_error():
    server = Server()
    server.send(WindowUpdateFrame(0, window_increment=2**31 - 1))
    connection_error(server, ErrorCode.FLOW_CONTROL_ERROR)


def test_6_9_1_data_past_the_receive_window_is_a_flow_control_error():
    server = Server(settings=Http2Limits(initial_window_size=100))
    server.send(server.headers(1, request(b"POST"), end_stream=False))
    server.send(data_frame(1, b"x" * 101))
    assert server.session.ended or server.resets(1) == [ErrorCode.FLOW_CONTROL_ERROR]
    assert server.goaway_code() in (None, ErrorCode.FLOW_CONTROL_ERROR)


def test_6_10_a_frame_inside_a_header_block_is_a_connection_error():
    server = Server()
    block = server.block(GET)
    server.send(HeadersFrame(1, block[:3], flags=["END_STREAM"]), PingFrame(0, b"12345678"))
    connection_error(server, PROTOCOL_ERROR)


def test_6_10_continuation_on_another_stream_is_a_connection_error():
    server = Server()
    block = server.block(GET)
    server.send(
        HeadersFrame(1, block[:3], flags=["END_STREAM"]),
        ContinuationFrame(3, block[3:], flags=["END_HEADERS"]),
    )
    connection_error(server, PROTOCOL_ERROR)


def test_6_10_a_header_block_in_continuation_frames_is_read():
    server = Server()
    block = server.block(GET)
    server.send(
        HeadersFrame(1, block[:2], flags=["END_STREAM"]),
        ContinuationFrame(1, block[2:5]),
        ContinuationFrame(1, block[5:], flags=["END_HEADERS"]),
    )
    assert [e.stream_id for e in server.opened()] == [1]


# -- 8.1 HTTP message framing ------------------------------------------------------------------------


def test_8_1_1_a_body_longer_than_content_length_is_a_stream_error():
    server = Server()
    server.send(server.headers(1, request(b"POST", b"/", (b"content-length", b"3")), end_stream=False))
    server.send(data_frame(1, b"abcd"))
    assert server.resets(1)[0] == PROTOCOL_ERROR
    assert isinstance(server.events[-1], ev.StreamReset) and server.events[-1].stream_id == 1
    assert not any(isinstance(e, ev.StreamData) for e in server.events)
    assert server.session.counts["content_length_mismatch"] == 1
    still_serving(server)


def test_8_1_1_a_body_shorter_than_content_length_is_a_stream_error():
    server = Server()
    server.send(server.headers(1, request(b"POST", b"/", (b"content-length", b"5")), end_stream=False))
    server.send(data_frame(1, b"abc"), data_frame(1, b"d", end_stream=True))
    assert server.resets(1)[0] == PROTOCOL_ERROR
    assert [len(e.data) for e in server.events if isinstance(e, ev.StreamData)] == [3]
    assert not any(isinstance(e, ev.StreamEnded) for e in server.events)
    still_serving(server)


def test_8_1_1_a_padded_body_is_measured_without_its_padding():
    server = Server()
    server.send(server.headers(1, request(b"POST", b"/", (b"content-length", b"3")), end_stream=False))
    frame = DataFrame(1, b"abc", flags=["PADDED", "END_STREAM"], pad_length=20).serialize()
    for byte in frame:  # the pad length arrives on its own
        server.feed(bytes([byte]))
    assert [type(e) for e in server.events[-2:]] == [ev.StreamData, ev.StreamEnded]


def test_8_1_1_a_body_ended_by_trailers_short_of_content_length_is_a_stream_error():
    server = Server()
    server.send(server.headers(1, request(b"POST", b"/", (b"content-length", b"5")), end_stream=False))
    server.send(data_frame(1, b"abc"), server.headers(1, [(b"x-t", b"1")]))
    assert server.resets(1) == [PROTOCOL_ERROR]
    still_serving(server)


def test_8_1_1_content_length_on_a_request_without_data_is_a_stream_error():
    server = Server()
    server.send(server.headers(1, request(b"POST", b"/", (b"content-length", b"3"))))
    stream_error(server, 1)


def test_8_1_trailers_without_end_stream_are_a_connection_error():
    server = Server()
    server.send(server.headers(1, request(b"POST"), end_stream=False))
    server.send(server.headers(1, [(b"x-t", b"1")], end_stream=False))
    connection_error(server, PROTOCOL_ERROR)


def test_8_1_pseudo_header_fields_in_trailers_are_a_stream_error():
    server = Server()
    server.send(server.headers(1, request(b"POST"), end_stream=False))
    server.send(server.headers(1, [(b":path", b"/")]))
    assert server.resets(1) == [PROTOCOL_ERROR]
    still_serving(server)


# -- 8.2 HTTP fields --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        (b"Accept", b"*/*"),  # 8.2.1: uppercase
        (b"x y", b"1"),  # 8.2.1: space in a name
        (b"x:y", b"1"),  # 8.2.1: colon in a name
        (b"", b"1"),
        (b"x\x80", b"1"),
        (b"x", b"a\rb"),  # 8.2.1: CR, LF, NUL in a value
        (b"x", b"a\nb"),
        (b"x", b"a\x00b"),
        (b"x", b" a"),  # 8.2.1: leading or trailing whitespace
        (b"x", b"a\t"),
    ],
)
def test_8_2_1_an_invalid_field_is_malformed(field):
    server = Server()
    server.send(server.headers(1, [*GET, field]))
    stream_error(server, 1)
    assert server.session.counts["malformed_request"] == 1


@pytest.mark.parametrize(
    "field",
    [
        (b"connection", b"keep-alive"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"te", b"gzip"),
    ],
)
def test_8_2_2_a_connection_specific_field_is_malformed(field):
    server = Server()
    server.send(server.headers(1, [*GET, field]))
    stream_error(server, 1)


def test_8_2_2_te_trailers_is_allowed():
    server = Server()
    server.send(server.headers(1, [*GET, (b"te", b"trailers")]))
    assert [e.stream_id for e in server.opened()] == [1]


def test_8_2_3_cookie_crumbs_are_joined():
    server = Server()
    server.send(server.headers(1, [*GET, (b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")]))
    (opened,) = server.opened()
    assert opened.head.headers == [(b"host", b"example.com"), (b"cookie", b"a=1; b=2"), (b"x", b"y")]


# -- 8.3 Pseudo-header fields ------------------------------------------------------------------------


M, S, A, P = (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")


@pytest.mark.parametrize(
    "fields",
    [
        [M, S, A, P, (b":x", b"1")],
        [M, S, A, P, (b":status", b"200")],
        [M, S, (b"x", b"1"), A, P],
        [M, M, S, A, P],
        [S, A, P],
        [M, A, P],
        [M, S, A],
        [M, S, A, (b":path", b"")],
        [M, S, P],
    ],
    ids=["unknown", "response-only", "after-regular", "repeated", "no-method", "no-scheme", "no-path",
         "empty-path", "no-authority-no-host"],
)  # fmt: skip
def test_8_3_bad_pseudo_header_fields_are_malformed(fields):
    server = Server()
    server.send(server.headers(1, fields))
    stream_error(server, 1)


def test_8_3_1_authority_becomes_host():
    server = Server()
    server.send(server.headers(1, GET))
    assert server.opened()[0].head.headers[0] == (b"host", b"example.com")


def test_8_3_1_a_host_field_alone_is_enough():
    server = Server()
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"a.example:8080")]
    server.send(server.headers(1, fields))
    (opened,) = server.opened()
    assert opened.head.headers == [(b"host", b"a.example:8080")] and opened.scheme == "http"


def test_8_3_1_a_host_that_agrees_with_authority_is_kept_once():
    server = Server()
    server.send(server.headers(1, [*GET, (b"host", b"example.com")]))
    assert server.opened()[0].head.headers == [(b"host", b"example.com")]


def test_8_3_1_a_host_that_differs_from_authority_is_malformed():
    server = Server()
    server.send(server.headers(1, [*GET, (b"host", b"other.example")]))
    stream_error(server, 1)


def test_8_3_1_userinfo_in_authority_is_refused():
    server = Server()
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"u:p@a"), (b":path", b"/")]
    server.send(server.headers(1, fields))
    assert [(e.stream_id, e.status) for e in server.events if isinstance(e, ev.StreamRefused)] == [(1, 400)]


def test_8_3_1_options_asterisk_is_accepted():
    server = Server()
    server.send(server.headers(1, request(b"OPTIONS", b"*")))
    assert server.opened()[0].head.target == b"*"


# -- 8.5 CONNECT, RFC 8441 extended CONNECT ---------------------------------------------------------------


def test_8_5_connect_with_scheme_or_path_is_malformed():
    server = Server()
    server.send(server.headers(1, request(b"CONNECT", b"/"), end_stream=False))
    stream_error(server, 1)


def test_8_5_connect_without_authority_is_malformed():
    server = Server()
    server.send(server.headers(1, [(b":method", b"CONNECT")], end_stream=False))
    stream_error(server, 1)


def test_8_5_a_plain_connect_is_answered_501():
    """We are an origin server: no tunnels. Answered, as RFC 9110 9.1 says for a method not implemented."""
    server = Server()
    server.send(server.headers(1, [(b":method", b"CONNECT"), (b":authority", b"a:443")], end_stream=False))
    assert [(e.stream_id, e.status) for e in server.events if isinstance(e, ev.StreamRefused)] == [(1, 501)]
    assert server.opened() == []


def test_rfc8441_protocol_is_malformed_unless_we_advertised_it():
    server = Server()
    server.send(
        server.headers(1, [*request(b"CONNECT", b"/chat"), (b":protocol", b"websocket")], end_stream=False)
    )
    stream_error(server, 1)


def test_rfc8441_extended_connect_opens_a_stream_with_its_protocol():
    server = Server(settings=Http2Limits(enable_connect_protocol=True))
    fields = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/chat"),
        (b":authority", b"example.com"),
        (b"sec-websocket-version", b"13"),
    ]
    server.send(server.headers(1, fields, end_stream=False))
    (opened,) = server.opened()
    assert opened.protocol == b"websocket" and opened.head.method == "CONNECT"
    assert opened.head.target == b"/chat"


def test_rfc8441_protocol_on_another_method_is_malformed():
    server = Server(settings=Http2Limits(enable_connect_protocol=True))
    server.send(server.headers(1, [*GET, (b":protocol", b"websocket")]))
    assert server.resets(1) == [PROTOCOL_ERROR]


# -- the same answers as HTTP/1.1 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (request(b"BREW"), 400),  # not in llhttp's method table, as headers.build_head
        (request(b"GET", b"x"), 400),  # not origin form
        (request(b"GET", b"*"), 400),  # asterisk on a method other than OPTIONS
        (request(b"GET", b"/a#b"), 400),  # a fragment
        (request(b"GET", b"/a b"), 400),  # a space
        (request(b"GET", b"/\xc3\xa9"), 400),  # not ASCII (RFC 3986 2): the scope's path could not be built
        (request(b"GET", b"/" + b"a" * 9000), 414),
        ([*GET, (b"content-length", b"1"), (b"content-length", b"1")], 400),
        ([(b":method", b"GET"), (b":scheme", b"ftp"), (b":authority", b"a"), (b":path", b"/")], 400),
        ([*GET, *[(b"x-%d" % i, b"v") for i in range(100)]], 431),
        ([*GET, (b"x", b"v" * 8190)], 431),
    ],
    ids=["method", "target-form", "asterisk", "fragment", "space", "non-ascii", "target-length",
         "two-lengths", "scheme", "field-count", "field-size"],
)  # fmt: skip
def test_refusals_get_the_status_http1_gives(fields, status):
    server = Server()
    server.send(server.headers(1, fields, end_stream=False))
    refused = [(e.stream_id, e.status) for e in server.events if isinstance(e, ev.StreamRefused)]
    assert refused == [(1, status)]
    assert server.opened() == []
    assert server.session.open_streams == 1  # until the shell answers
    server.session.send_head(1, status, [], end_stream=True)
    assert server.session.open_streams == 0
    still_serving(server)


def test_a_content_length_over_the_body_limit_is_413_before_the_app():
    server = Server(limits=RequestLimits(body=10))
    server.send(server.headers(1, request(b"POST", b"/", (b"content-length", b"11")), end_stream=False))
    assert [(e.stream_id, e.status) for e in server.events if isinstance(e, ev.StreamRefused)] == [(1, 413)]
    server.send(data_frame(1, b"x" * 11, end_stream=True))
    assert not any(isinstance(e, ev.StreamData) for e in server.events)


def test_window_update_on_a_stream_the_shell_knows_is_read():
    server = Server()
    server.send(server.headers(1, GET), WindowUpdateFrame(1, window_increment=10))
    assert not server.session.ended


def test_priority_frames_are_accepted():
    """RFC 9113 5.3.2: the priority signals of RFC 7540 are deprecated but must still be parsed."""
    server = Server()
    server.send(PriorityFrame(1, depends_on=0, stream_weight=10))
    still_serving(server, 1)
