# ruff: noqa: E501  (the table reads as a table: one row per line)
"""The keep-alive rule (``asgi_worker/http/keepalive.py``) as one table, through the code that asks it.

Each row: the request (version, Connection header), the response (status, headers, whole or
streamed), whether the request body was read to its end, whether the server is draining (with or
without the supervisor's grace), whether a pipelined request is already waiting -> what the head
announces and what the connection does next. The request goes through ``build_head`` and the
response through ``plan_response``, so the table covers the facts each of them contributes.
"""

from __future__ import annotations

import itertools

import pytest

from asgi_worker.http.headers import build_head
from asgi_worker.http.keepalive import Next, after_response, head_keep_alive, request_keep_alive
from asgi_worker.http.limits import RequestLimits
from asgi_worker.http.response import DefaultHeaderBlock, plan_response

SERVE, LINGER, CLOSE = Next.SERVE, Next.LINGER, Next.CLOSE
KEEP, SHUT = "keep-alive", "close"  # what the head announces

# fmt: off
TABLE = [
    # version connection      status headers                          body   streamed drain  grace  waiting -> head  next
    ("1.1", None,              200, [],                                True,  False,   False, False, False,   KEEP, SERVE),
    ("1.1", b"keep-alive",     200, [],                                True,  False,   False, False, False,   KEEP, SERVE),
    ("1.1", b"close",          200, [],                                True,  False,   False, False, False,   SHUT, CLOSE),
    ("1.1", b"Keep-Alive, Close", 200, [],                             True,  False,   False, False, False,   SHUT, CLOSE),
    ("1.0", None,              200, [],                                True,  False,   False, False, False,   SHUT, CLOSE),
    ("1.0", b"keep-alive",     200, [],                                True,  False,   False, False, False,   KEEP, SERVE),
    ("1.0", b"keep-alive",     200, [],                                True,  True,    False, False, False,   SHUT, CLOSE),
    ("1.1", None,              200, [(b"connection", b"close")],       True,  False,   False, False, False,   SHUT, CLOSE),
    ("1.1", None,              200, [(b"Connection", b"Close")],       True,  False,   False, False, False,   SHUT, CLOSE),
    ("1.1", None,              200, [(b"transfer-encoding", b"gzip")], True,  True,    False, False, False,   SHUT, CLOSE),
    ("1.1", None,              200, [],                                True,  True,    False, False, False,   KEEP, SERVE),
    ("1.1", None,              204, [],                                True,  False,   False, False, False,   KEEP, SERVE),
    ("1.1", None,              304, [],                                True,  False,   False, False, True,    KEEP, SERVE),
    ("1.1", None,              500, [],                                True,  False,   False, False, True,    KEEP, SERVE),
    # The request body was not read to its end: a whole response announces close; a streamed one
    # may still let the app read on, so it announces keep-alive, but the connection closes.
    ("1.1", None,              200, [],                                False, False,   False, False, False,   SHUT, CLOSE),
    ("1.1", None,              200, [],                                False, True,    False, False, False,   KEEP, CLOSE),
    # Draining: a response started during the drain announces close.
    ("1.1", None,              200, [],                                True,  False,   True,  False, False,   SHUT, CLOSE),
    ("1.1", None,              200, [],                                True,  False,   True,  True,  True,    SHUT, CLOSE),
    # A pipelined request waits: kept alive, it is served (also while draining with grace).
    ("1.1", None,              200, [],                                True,  False,   False, False, True,    KEEP, SERVE),
]
# fmt: on


def _plan(version, connection, status, headers, body_done, streamed, draining):
    request = [(b"host", b"example")] + ([(b"connection", connection)] if connection else [])
    head = build_head("GET", b"/", version, request, RequestLimits())
    plan = plan_response(
        status,
        headers,
        DefaultHeaderBlock(None, []),
        None if streamed else 0,
        False,
        version == "1.0",
        head.keep_alive,
        draining,
        body_done or streamed,
    )
    return plan


@pytest.mark.parametrize(
    ("version", "connection", "status", "headers", "body_done", "streamed", "draining", "grace", "waiting", "announced", "step"),
    TABLE,
)  # fmt: skip
def test_keep_alive_table(version, connection, status, headers, body_done, streamed, draining, grace, waiting, announced, step):  # fmt: skip
    plan = _plan(version, connection, status, headers, body_done, streamed, draining)
    assert (KEEP if plan.keep_alive else SHUT) == announced
    if announced == SHUT:
        assert plan.head.endswith(b"connection: close\r\n\r\n")
    else:
        assert b"connection: close" not in plan.head
        assert plan.head.endswith(b"connection: keep-alive\r\n\r\n" if version == "1.0" else b"\r\n\r\n")
    assert after_response(plan.keep_alive, body_done, False, draining, grace, waiting) is step


@pytest.mark.parametrize(
    ("grace", "waiting", "step"),
    [(False, False, CLOSE), (False, True, CLOSE), (True, False, LINGER), (True, True, SERVE)],
)
def test_drain_after_a_promised_keep_alive(grace, waiting, step):
    # The head promised keep-alive before the drain began; the drain then decides.
    assert after_response(True, True, False, True, grace, waiting) is step


def test_a_client_that_shut_its_side_is_closed():
    assert after_response(True, True, True, False, False, False) is CLOSE
    assert after_response(True, True, True, True, True, False) is CLOSE


@pytest.mark.parametrize(("version", "close", "keep", "wish"), [
    ("1.1", False, False, True), ("1.1", True, False, False),
    ("1.1", False, True, True), ("1.1", True, True, False),
    ("1.0", False, False, False), ("1.0", False, True, True),
    ("1.0", True, True, False), ("1.0", True, False, False),
])  # fmt: skip
def test_request_keep_alive(version, close, keep, wish):
    assert request_keep_alive(version, close, keep) is wish


def test_head_keep_alive_needs_every_fact():
    # Only the all-good combination keeps the connection; every single fact can close it.
    for facts in itertools.product([False, True], repeat=5):
        request_keeps, draining, body_complete, app_close, close_delimited = facts
        expected = request_keeps and not draining and body_complete and not app_close and not close_delimited
        assert head_keep_alive(*facts) is expected
