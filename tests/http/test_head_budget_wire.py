"""The head budget over real sockets, on every loop x parser: the exact status line at the boundary.

``--h11-max-incomplete-event-size`` sets the budget for both parsers; ``http/limits.py`` says what
counts. The heads come from ``tests/unit/test_head_budget.py``, so both suites test the same bytes.
"""

from __future__ import annotations

import re

import pytest

from asgi_worker.http.limits import DEFAULT_LIMIT_REQUEST_HEAD
from tests.conftest import read_response, read_until
from tests.unit.test_head_budget import AFTER, GET, head_of

EXACT = {"server_header": False, "date_header": False}
STATUS_LINE = re.compile(rb"HTTP/1\.1 \d{3} [^\r]*\r\n")


async def echo_path(scope, receive, send):
    body = scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def budget_config(limit: int) -> dict[str, object]:
    if limit == DEFAULT_LIMIT_REQUEST_HEAD:
        return dict(EXACT)  # the default, with no option given
    return {**EXACT, "h11_max_incomplete_event_size": limit}


LIMITS = pytest.mark.parametrize("limit", [1000, DEFAULT_LIMIT_REQUEST_HEAD])


@LIMITS
def test_head_of_exactly_the_budget_is_served(serve, limit):
    with serve(echo_path, **budget_config(limit)) as srv, srv.connect() as sock:
        sock.sendall(head_of(limit))
        assert read_until(sock, b"/budget") == b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n/budget"


@LIMITS
def test_head_one_byte_over_the_budget_is_431(serve, limit):
    with serve(echo_path, **budget_config(limit)) as srv, srv.connect() as sock:
        sock.sendall(head_of(limit + 1))
        response = read_response(sock)
    assert STATUS_LINE.findall(response) == [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
    assert b"connection: close\r\n" in response


@LIMITS
def test_budget_is_per_request_in_a_pipeline(serve, limit):
    """Several heads at the budget in one send pass; the next one, a byte longer, is 431."""
    with serve(echo_path, **budget_config(limit)) as srv, srv.connect() as sock:
        sock.sendall(GET + head_of(limit) + head_of(limit) + AFTER + head_of(limit + 1))
        response = read_response(sock)
    assert [line[9:12] for line in STATUS_LINE.findall(response)] == [b"200"] * 4 + [b"431"]
    assert response.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n/before")


@LIMITS
def test_unfinished_head_past_the_budget_is_answered_without_its_end(serve, limit):
    """The client never finishes the head: the byte past the budget is enough for the 431."""
    with serve(echo_path, **budget_config(limit)) as srv, srv.connect() as sock:
        sock.sendall(head_of(limit + 100)[: limit + 1])
        response = read_response(sock)
    assert STATUS_LINE.findall(response) == [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
