"""Requests and responses that repeat earlier ones, over real sockets, on every backend.

Two shortcuts serve a repeat from memory: the httptools adapter keeps its reading of a plain head
once two reads in a row have each been exactly that head, and serves every later head with those
bytes from it, pipelined ones too (``parse_httptools._Repeat``); ``plan_response`` reuses its last
response head while an app answers alike, drops it after two misses in a row and, when it was never
reused, makes no other for ``patience`` responses (``response.LastHead``, shared by every connection
of the server). What a client or an app can see must not change: each request gets a header list and
a scope of its own, each response the head its own headers make, and h11 and httptools answer the
same bytes with the same bytes. The pure checks, and the policy in detail, are in
``tests/unit/test_repeated_heads.py``.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable
from typing import Any

import pytest

from asgi_worker.http.response import DefaultHeaderBlock, ResponsePlan
from tests.conftest import RunningServer, read_response, run_server
from tests.http.test_keepalive_pipelining import Responses

EXACT = {"server_header": False, "date_header": False}
Serve = Callable[..., Any]  # the ``serve`` fixture: ``with serve(app, **config) as srv``
Pairs = list[tuple[bytes, bytes]]


class Heads(Responses):
    """``Responses`` that can also take a response with no body (the answer to HEAD)."""

    def head_only(self) -> bytes:
        while (end := self.buf.find(b"\r\n\r\n")) == -1:
            self._fill()
        return self._take(end + 4)


def response(body: bytes, headers: bytes = b"", connection: bytes = b"") -> bytes:
    """The exact bytes of a 200 with ``headers`` (encoded lines), under ``EXACT``."""
    close = b"connection: %b\r\n" % connection if connection else b""
    return b"HTTP/1.1 200 OK\r\n%bcontent-length: %d\r\n%b\r\n%b" % (headers, len(body), close, body)


def test_each_repeat_gets_headers_and_a_scope_of_its_own(serve: Serve) -> None:
    seen: list[Pairs] = []
    scopes: list[dict[str, Any]] = []  # kept alive, so that distinct ids mean distinct objects

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        scopes.append(scope)
        # An app (a middleware) writing to the list it was given: the next request must not see it.
        scope["headers"].append((b"x-added", b"by the app"))
        scope["headers"][0] = (b"host", b"changed")
        scope["query_string"] = b"changed"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    request = b"GET /same?q=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        responses = Responses(sock)
        for _ in range(5):  # httptools: llhttp reads two, the memo serves three
            sock.sendall(request)
            assert responses.next() == response(b"/same")
        sock.sendall(request * 5)  # pipelined: repeats in one read, served by the memo
        for _ in range(5):
            assert responses.next() == response(b"/same")
    assert seen == [[(b"host", b"x"), (b"accept", b"*/*")]] * 10
    assert len({id(scope) for scope in scopes}) == 10
    assert len({id(scope["headers"]) for scope in scopes}) == 10
    assert all(scope["query_string"] == b"changed" for scope in scopes)


def test_one_header_list_the_app_changes_between_responses(serve: Serve) -> None:
    headers: Pairs = [(b"content-type", b"text/plain")]
    changes: dict[int, Callable[[], None]] = {
        3: lambda: headers.append((b"x-third", b"yes")),
        4: lambda: headers.__setitem__(1, (b"x-third", b"no!")),  # a pair of the same size
        5: lambda: headers.__setitem__(0, (b"content-type", b"text/html!")),
        6: lambda: headers.__delitem__(1),
        8: lambda: headers.append((b"connection", b"close")),
    }
    count = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal count
        count += 1
        change = changes.get(count)
        if change is not None:
            change()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    plain = b"content-type: text/plain\r\n"
    html = b"content-type: text/html!\r\n"
    expected = [
        response(b"hello", plain),
        response(b"hello", plain),
        response(b"hello", plain + b"x-third: yes\r\n"),
        response(b"hello", plain + b"x-third: no!\r\n"),
        response(b"hello", html + b"x-third: no!\r\n"),
        response(b"hello", html),
        response(b"hello", html),
        response(b"hello", html, b"close"),
    ]
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        responses = Responses(sock)
        for number, want in enumerate(expected, 1):
            sock.sendall(request)
            assert responses.next() == want, number
        responses.wait_closed()


def path_app() -> Any:
    """Answers with the path, under headers that depend on it."""
    by_path: dict[str, Pairs] = {
        "/a": [(b"x-path", b"a")],
        "/bb": [(b"x-path", b"bb"), (b"x-more", b"1")],
    }

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = by_path.get(scope["path"], [])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    return app


A_LINES = b"x-path: a\r\n"
BB_LINES = b"x-path: bb\r\nx-more: 1\r\n"
GET_A = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
GET_BB = b"GET /bb HTTP/1.1\r\nHost: x\r\n\r\n"


def defaults_of(srv: RunningServer) -> DefaultHeaderBlock:
    """The server's default header block, where the response memo lives."""
    ctx = srv.server._ctx
    assert ctx is not None
    return ctx.defaults


def test_the_shortcuts_are_taken_on_the_wire(
    serve: Serve, backend: tuple[str, str], llhttp_reads: list[bytes]
) -> None:
    """The same request five times, a write each: llhttp reads two, and none of those pipelined after
    them; on a connection whose first write holds two, llhttp reads those and the next two alone. The
    response head is planned once."""
    reads = llhttp_reads
    headers: Pairs = [(b"content-type", b"text/plain")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    want = response(b"hello", b"content-type: text/plain\r\n")
    with serve(app, **EXACT) as srv, srv.connect() as sock:
        responses = Responses(sock)
        plans: list[ResponsePlan] = []
        for _ in range(5):
            sock.sendall(GET_A)
            assert responses.next() == want
            last = defaults_of(srv).last
            assert last is not None and last.headers == headers and last.headers is not headers
            plans.append(last.plan)
        assert all(plan is plans[0] for plan in plans)
        kept = defaults_of(srv).last
        assert kept is not None and kept.reused and kept.misses == 0
        sock.sendall(GET_A * 3)
        for _ in range(3):
            assert responses.next() == want
        with srv.connect() as other:  # a memo of its own: pipelined heads never make one
            others = Responses(other)
            other.sendall(GET_A * 2)
            for _ in range(2):
                assert others.next() == want
            for _ in range(4):
                other.sendall(GET_A)
                assert others.next() == want
        assert defaults_of(srv).last is kept
    assert reads == ([b"/a"] * 6 if backend[1] == "httptools" else [])


def test_an_app_that_answers_otherwise_each_time_then_alike(serve: Serve) -> None:
    """Varied answers make the server rest ever longer between memos; answers alike get one back once
    the rest is over. Every response on two connections, read in turn, is the one its own headers
    make."""
    numbers = itertools.count()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        pair = (b"x-n", b"%d" % next(numbers)) if path == "/varied" else (b"x-path", path[1:].encode())
        headers = [pair]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": path.encode()})

    varied = b"GET /varied HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"
    with serve(app, **EXACT) as srv, srv.connect() as one, srv.connect() as two:
        defaults = defaults_of(srv)
        ones, twos = Heads(one), Heads(two)
        turns = itertools.cycle(((one, ones), (two, twos)))
        for number in range(30):
            sock, responses = next(turns)
            sock.sendall(varied)
            assert responses.next() == response(b"/varied", b"x-n: %d\r\n" % number)
        # Memos made at responses 0, 5, 12 and 23, each dropped unused at its second miss, then rests
        # of 2, 4, 8 and 16 responses: 12 of the last are left, and patience is 32.
        assert (defaults.last, defaults.resting, defaults.patience) == (None, 12, 32)
        for resting in range(11, -1, -1):  # the same answer each time, but no memo while resting
            sock, responses = next(turns)
            sock.sendall(GET_A)
            assert responses.next() == response(b"/a", A_LINES), resting
            assert defaults.last is None and defaults.resting == resting
        sock, responses = next(turns)
        sock.sendall(GET_A)
        assert responses.next() == response(b"/a", A_LINES)
        kept = defaults.last
        assert kept is not None and kept.headers == [(b"x-path", b"a")] and not kept.reused
        for round_ in range(6):  # a HEAD request is a miss, which the hit after it forgets
            for sock, responses in ((one, ones), (two, twos)):
                sock.sendall(GET_A)
                assert responses.next() == response(b"/a", A_LINES), round_
                assert defaults.last is kept and kept.misses == 0
                if round_ % 3 == 0:
                    sock.sendall(head)
                    assert responses.head_only() == response(b"/a", A_LINES)[: -len(b"/a")], round_
                    assert defaults.last is kept and kept.misses == 1
        assert kept.reused and defaults.patience == 16  # halved by its first hit


def test_two_connections_alternating_paths(serve: Serve) -> None:
    with serve(path_app(), **EXACT) as srv, srv.connect() as one, srv.connect() as two:
        ones, twos = Responses(one), Responses(two)
        for round_ in range(4):
            first, second = (GET_A, GET_BB) if round_ % 2 == 0 else (GET_BB, GET_A)
            for sock, responses, request in ((one, ones, first), (two, twos, second)) * 2:
                sock.sendall(request)
                if request == GET_A:
                    assert responses.next() == response(b"/a", A_LINES), round_
                else:
                    assert responses.next() == response(b"/bb", BB_LINES), round_


def test_head_after_get_of_the_same_path(serve: Serve) -> None:
    head = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"
    with serve(path_app(), **EXACT) as srv, srv.connect() as sock:
        responses = Heads(sock)
        for _ in range(2):
            sock.sendall(GET_A)
            assert responses.next() == response(b"/a", A_LINES)
            sock.sendall(GET_A)
            assert responses.next() == response(b"/a", A_LINES)
            sock.sendall(head)
            assert responses.head_only() == response(b"/a", A_LINES)[: -len(b"/a")]
            sock.sendall(head)
            assert responses.head_only() == response(b"/a", A_LINES)[: -len(b"/a")]
        sock.sendall(GET_A + head + GET_A)
        assert responses.next() == response(b"/a", A_LINES)
        assert responses.head_only() == response(b"/a", A_LINES)[: -len(b"/a")]
        assert responses.next() == response(b"/a", A_LINES)
        sock.shutdown(socket.SHUT_WR)
        responses.wait_closed()


def test_http10_requests_that_differ_only_in_version(serve: Serve) -> None:
    http10 = b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n"
    http10_keeps = b"GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    with serve(path_app(), **EXACT) as srv:
        with srv.connect() as sock:
            responses = Responses(sock)
            for _ in range(2):
                sock.sendall(GET_A)
                assert responses.next() == response(b"/a", A_LINES)
        with srv.connect() as sock:
            sock.sendall(http10)
            assert read_response(sock) == response(b"/a", A_LINES, b"close")
        with srv.connect() as sock:
            responses = Responses(sock)
            for request, connection in [
                (http10_keeps, b"keep-alive"),
                (http10_keeps, b"keep-alive"),
                (GET_A, b""),
                (GET_A, b""),
                (http10_keeps, b"keep-alive"),
                (GET_A, b""),
            ]:
                sock.sendall(request)
                assert responses.next() == response(b"/a", A_LINES, connection), request
            sock.sendall(http10)
            assert responses.next() == response(b"/a", A_LINES, b"close")
            responses.wait_closed()
        with srv.connect() as sock:  # and the ordinary response after them all has no mark of theirs
            responses = Responses(sock)
            sock.sendall(GET_A)
            assert responses.next() == response(b"/a", A_LINES)


def test_a_closing_request_after_kept_responses(serve: Serve) -> None:
    closing = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with serve(path_app(), **EXACT) as srv:
        with srv.connect() as sock:
            responses = Responses(sock)
            for _ in range(3):
                sock.sendall(GET_A)
                assert responses.next() == response(b"/a", A_LINES)
            sock.sendall(closing)
            assert responses.next() == response(b"/a", A_LINES, b"close")
            responses.wait_closed()
        with srv.connect() as sock:
            sock.sendall(GET_A * 2 + closing + GET_A)
            assert read_response(sock) == response(b"/a", A_LINES) * 2 + response(b"/a", A_LINES, b"close")


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The method, path, query and body it read, under headers that depend on the path."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(b"x-path", scope["path"].encode())] if scope["path"] != "/none" else []
    reply = b"%b %b?%b %b." % (scope["method"].encode(), scope["path"].encode(), scope["query_string"], body)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


PLAIN = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
GET_B = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
HTTP10 = b"GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
# Each batch is one write, and the test reads the answers it brings before the next: "G" a response,
# "H" one without a body (HEAD). A client that waits for each answer sends each head alone, so the
# httptools memo is made, served, and replaced. The last batch has a bad head, which closes.
BATCHES: list[tuple[bytes, str]] = [
    (PLAIN, "G"),
    (PLAIN, "G"),  # twice alone: kept
    (PLAIN * 3, "GGG"),  # pipelined: served
    (PLAIN + GET_B + PLAIN, "GGG"),
    (HEAD + PLAIN, "HG"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + PLAIN, "GG"),
    (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + PLAIN, "GG"),
    (HTTP10 * 2 + PLAIN, "GGG"),
    (b"GET /none HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + PLAIN, "GGG"),
    (GET_B, "G"),
    (GET_B, "G"),  # another head kept
    (PLAIN + GET_B + PLAIN + GET_B, "GGGG"),  # served among heads read afresh
    (PLAIN, "G"),
    (PLAIN, "G"),  # kept again
    (PLAIN + POST + PLAIN + POST + PLAIN, "GGGGG"),  # served between bodies
    (GET_B, "G"),
    (POST, "G"),  # a read with a body after its head does not part two alike
    (GET_B, "G"),  # kept
    (PLAIN, "G"),
    (HTTP10, "G"),  # a whole head that is not kept does
    (PLAIN, "G"),
    (PLAIN, "G"),  # kept
    (PLAIN[:9], ""),
    (PLAIN[9:] + PLAIN, "GG"),  # the head in pieces goes through llhttp, the one after it is served
    (HEAD, "H"),
    (HEAD, "H"),  # kept: to the parser a HEAD is as plain as a GET
    (HEAD + PLAIN.replace(b"Host: x", b"Host x:") + PLAIN, "H"),
]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_h11_and_httptools_answer_the_same_bytes_alike(loop: str, llhttp_reads: list[bytes]) -> None:
    reads = llhttp_reads
    answers = {}
    for http in ("h11", "httptools"):
        with run_server(echo_app, loop=loop, http=http, **EXACT) as srv, srv.connect() as sock:
            responses = Heads(sock)
            received = b""
            for number, (batch, expected) in enumerate(BATCHES):
                sock.sendall(batch)
                for kind in expected:
                    answer = responses.next() if kind == "G" else responses.head_only()
                    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), (http, number, answer)
                    received += answer
            received += bytes(responses.buf) + read_response(sock)
            assert not srv.loop_errors, srv.loop_errors
        answers[http] = received
    assert answers["h11"] == answers["httptools"]
    heads = sum(len(expected) for _, expected in BATCHES) + 1  # and the bad one's
    assert answers["httptools"].count(b"HTTP/1.1 200 OK\r\n") == heads - 1
    assert answers["httptools"].endswith(b"connection: close\r\n\r\nBad Request")
    # The memo served heads: llhttp read fewer than were answered (28 of 46 when each write is a read).
    assert len(reads) < heads - 10, reads
