"""The response head, pure: header name and value rules for every byte, and framing decisions."""

from __future__ import annotations

import pytest

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.headers import TOKEN_CHARS, is_safe_value, is_token
from asgi_worker.http.response import (
    CHUNKED,
    CLOSE_DELIMITED,
    CONTENT_LENGTH,
    NO_BODY,
    DefaultHeaderBlock,
    plan_response,
)

DEFAULTS = DefaultHeaderBlock(b"asgi-worker", [])


@pytest.mark.parametrize("byte", range(256))
def test_token_and_value_rules_for_every_byte(byte):
    char = bytes([byte])
    assert is_token(char) == (byte in TOKEN_CHARS)
    assert is_token(b"x-" + char + b"-y") == (byte in TOKEN_CHARS)
    assert is_safe_value(b"a" + char + b"b") == (char not in (b"\r", b"\n", b"\0"))


def test_an_empty_name_is_not_a_token():
    assert not is_token(b"")
    assert is_safe_value(b"")


@pytest.mark.parametrize(
    ("name", "value"),
    [(b"", b"v"), (b"bad name", b"v"), (b"x", b"split\r\nset-cookie: a=b"), (b"x", b"nul\0"), (b"x:", b"v")],
)
def test_invalid_headers_are_refused_before_any_byte(name, value):
    with pytest.raises(AppProtocolError):
        plan_response(200, [(name, value)], DEFAULTS, 0, False, False, True)


@pytest.mark.parametrize(
    ("status", "headers", "body_length", "http10", "framing", "tail"),
    [
        (200, [], 5, False, CONTENT_LENGTH, b"content-length: 5\r\n\r\n"),
        (200, [], 5000, False, CONTENT_LENGTH, b"content-length: 5000\r\n\r\n"),
        (200, [(b"content-length", b"7")], None, False, CONTENT_LENGTH, b"content-length: 7\r\n\r\n"),
        (200, [], None, False, CHUNKED, b"transfer-encoding: chunked\r\n\r\n"),
        (200, [(b"transfer-encoding", b"chunked")], None, False, CHUNKED, b"chunked\r\n\r\n"),
        (200, [], None, True, CLOSE_DELIMITED, b"connection: close\r\n\r\n"),
        (200, [], 5, True, CONTENT_LENGTH, b"connection: keep-alive\r\n\r\n"),
        (204, [], 0, False, NO_BODY, b"asgi-worker\r\n\r\n"),
        (304, [], None, False, NO_BODY, b"asgi-worker\r\n\r\n"),
    ],
)
def test_framing(status, headers, body_length, http10, framing, tail):
    plan = plan_response(status, headers, DEFAULTS, body_length, False, http10, True)
    assert plan.framing == framing and plan.head.endswith(tail)
    assert plan.keep_alive == (framing != CLOSE_DELIMITED)


def test_chunked_to_http10_is_an_app_error():
    with pytest.raises(AppProtocolError):
        plan_response(200, [(b"transfer-encoding", b"chunked")], DEFAULTS, None, False, True, True)


def test_head_requests_get_the_framing_of_a_get_and_no_body():
    plan = plan_response(200, [], DEFAULTS, 5, True, False, True)
    assert plan.framing == NO_BODY and b"content-length: 5\r\n" in plan.head


def test_checked_pairs_are_remembered_and_bad_ones_never_are():
    # A pair is validated once, then its kind comes from the cache; an invalid pair is refused
    # every time (never cached), and a bytearray pair is checked without caching.
    from asgi_worker.http import response

    good = (b"x-cached-once", b"v")
    plan_response(200, [good], DEFAULTS, 0, False, False, True)
    assert response._KINDS[good] == response._PLAIN
    bad = (b"x-bad", b"a\r\nb")
    for _ in range(2):
        with pytest.raises(AppProtocolError):
            plan_response(200, [bad], DEFAULTS, 0, False, False, True)
    assert bad not in response._KINDS
    plan = plan_response(
        200, [(bytearray(b"content-length"), bytearray(b"3"))], DEFAULTS, 3, False, False, True
    )
    assert plan.content_length == 3
    length = (b"content-length", b"7")
    assert plan_response(200, [length], DEFAULTS, None, False, False, True).content_length == 7
    assert plan_response(200, [length], DEFAULTS, None, False, False, True).content_length == 7
    assert response._KINDS[length] == 7
