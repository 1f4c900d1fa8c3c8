"""Request smuggling over real sockets, on every loop x parser: each class is refused the same way.

A smuggling attempt is a request whose framing two readers could read two ways, so that bytes one
reads as body another reads as a request. Each case here is exact bytes on a raw socket, with
``GET /hidden`` after it: the answer must be the statuses the strict reading gives (the issue 12
rules, R1-R11 in the comments), a refusal carries ``connection: close`` and is the last thing on the
connection (so ``/hidden`` is never answered), and the app completes exactly the valid requests.
Each case is sent whole (llhttp's one-read fast path) and a byte at a time (``head_scan``'s path,
and the chunked decoder's state across reads). ``tests/gunicorn/test_smuggling_front_doors.py``
sends one case per class through gunicorn and ``asgi-supervise``, from these tables.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass

import pytest

from tests.conftest import read_response
from tests.timing import wait_until

EXACT = {"server_header": False, "date_header": False}

HOST = b"Host: x\r\n"
FIRST = b"GET /first HTTP/1.1\r\n" + HOST + b"\r\n"  # a valid request before the case
HIDDEN = b"GET /hidden HTTP/1.1\r\n" + HOST + b"\r\n"  # after every case: never answered
AFTER = b"GET /after HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"  # ends an accepted case
HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"


def get(line: bytes = b"GET /smuggle HTTP/1.1", fields: bytes = HOST) -> bytes:
    return line + b"\r\n" + fields + b"\r\n"


def post(fields: bytes, body: bytes = b"hello") -> bytes:
    """``POST /smuggle`` over HTTP/1.1 with a Host, ``fields`` (CRLF-terminated lines) and ``body``."""
    return b"POST /smuggle HTTP/1.1\r\n" + HOST + fields + b"\r\n" + body


def chunked(body: bytes, coding: bytes = b"chunked") -> bytes:
    return post(b"Transfer-Encoding: " + coding + b"\r\n", body)


@dataclass(frozen=True)
class Case:
    """Bytes, the statuses they get, and the (path, body) of each request the app completes."""

    name: str
    data: bytes
    statuses: tuple[int, ...]
    served: tuple[tuple[str, bytes], ...] = ()
    in_body: bool = False  # refused in the body of /smuggle, whose head the app may have had

    @property
    def refused(self) -> bool:
        return self.statuses[-1] != 200


def refused(name: str, data: bytes, status: int = 400) -> Case:
    return Case(name, data, (status,))


def refused_body(name: str, data: bytes) -> Case:
    return Case(name, data, (400,), in_body=True)


def accepted(name: str, data: bytes, body: bytes = b"hello") -> Case:
    """``data`` is one valid request for ``/smuggle``; ``AFTER`` follows it and is served too."""
    return Case(name, data + AFTER, (200, 200), (("/smuggle", body), ("/after", b"")))


# Every class: framing disagreements (R6, R7), the chunked body (R8), line and field syntax (R3, R4),
# the request line (R2), Host (R5). Refusals of a body (R8) come after its head was accepted.
CASES = [
    # R7: Transfer-Encoding on HTTP/1.0 is faulty; read as chunked, GET /hidden would be a request.
    refused(
        "http10-keepalive-chunked",
        b"POST /smuggle HTTP/1.0\r\n" + HOST + b"Connection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + HELLO_CHUNKED,
    ),
    # R6: Content-Length and Transfer-Encoding together, in either order.
    refused("cl-te", post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    refused("te-cl", post(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", HELLO_CHUNKED)),
    # R6: Content-Length once, 1*DIGIT.
    refused("cl-twice-equal", post(b"Content-Length: 5\r\nContent-Length: 5\r\n")),
    refused("cl-twice-differ", post(b"Content-Length: 0\r\nContent-Length: 5\r\n")),
    refused("cl-list", post(b"Content-Length: 5, 5\r\n")),
    *(
        refused(f"cl-{name}", post(b"Content-Length:" + value + b"\r\n"))
        for name, value in [
            ("plus", b" +5"),
            ("minus", b" -1"),
            ("hex", b" 0x5"),
            ("underscore", b" 5_0"),
            ("space-inside", b" 5 5"),
            ("blank", b"  "),
            ("empty", b""),
        ]
    ),
    # R7: one comma list, chunked last and once, no empty element; another coding before it 501.
    *(
        refused(f"te-{name}", chunked(HELLO_CHUNKED, coding))
        for name, coding in [
            ("chunked-twice", b"chunked, chunked"),
            ("leading-comma", b",chunked"),
            ("trailing-comma", b"chunked,"),
            ("chunkedx", b"chunkedx"),
            ("identity", b"identity"),
        ]
    ),
    refused("te-gzip-chunked", chunked(HELLO_CHUNKED, b"gzip, chunked"), 501),
    refused("te-field-twice", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")),
    refused(
        "te-fields-gzip-chunked", post(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), 501
    ),
    # R8: the chunk-size line.
    refused_body("chunk-size-trailing-space", chunked(b"5 \r\nhello\r\n0\r\n\r\n")),
    refused_body("chunk-size-junk", chunked(b"5x\r\nhello\r\n0\r\n\r\n")),
    refused_body("chunk-size-17-digits", chunked(b"10000000000000005\r\nhello\r\n0\r\n\r\n")),
    refused_body("chunk-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n")),
    refused_body("chunk-ext-empty-name", chunked(b"5;\r\nhello\r\n0\r\n\r\n")),
    refused_body("chunk-size-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n")),
    refused_body("chunk-size-bare-cr", chunked(b"5\rhello\r\n0\r\n\r\n")),
    refused_body("chunk-ext-control", chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n")),
    # R8: chunk data must be followed by exactly CRLF (h11 CVE-2025-43859).
    refused_body("chunk-data-no-crlf", chunked(b"5\r\nhelloXX0\r\n\r\n")),
    # R3: every line ends with CRLF; no obs-fold.
    refused("bare-lf-line-ends", b"GET /smuggle HTTP/1.1\nHost: x\n\n"),
    refused("bare-lf-before-request-line", b"\n" + get()),  # R1
    refused("bare-lf-in-field", get(fields=HOST + b"X-A: b\n")),
    refused("bare-cr-in-name", get(fields=HOST + b"X-\rA: b\r\n")),
    refused("obs-fold", get(fields=HOST + b"X-A: a\r\n b\r\n")),
    # R4: token ":" OWS value OWS.
    refused("space-before-colon", post(b"Content-Length : 5\r\n")),
    refused("tab-before-colon", post(b"Transfer-Encoding\t: chunked\r\n", HELLO_CHUNKED)),
    refused("empty-field-name", get(fields=HOST + b": x\r\n")),
    refused("nul-in-value", get(fields=HOST + b"X-A: a\x00b\r\n")),
    refused("cr-in-value", get(fields=HOST + b"X-A: a\rb\r\n")),
    # R2: the request line.
    refused("double-space", get(b"GET  /smuggle HTTP/1.1")),
    refused("cr-in-target", get(b"GET /smuggle\rX HTTP/1.1")),
    refused("fragment", get(b"GET /a#b HTTP/1.1")),
    refused("asterisk-not-options", get(b"GET * HTTP/1.1")),
    refused("connect-origin-form", get(b"CONNECT / HTTP/1.1")),
    refused("version-1.2", get(b"GET /smuggle HTTP/1.2"), 505),
    refused("version-2.0", get(b"GET /smuggle HTTP/2.0"), 505),
    refused("version-1.10", get(b"GET /smuggle HTTP/1.10")),
    refused("version-lowercase", get(b"GET /smuggle http/1.1")),
    refused("http09", b"GET /smuggle\r\n"),
    # R5: Host.
    refused("host-missing", get(fields=b"")),
    refused("host-twice", get(fields=HOST + b"Host: y\r\n")),
    refused("host-with-space", get(fields=b"Host: a b\r\n")),
    # Accepted: what the grammar allows, right up to where the refusals start.
    accepted("cl-leading-zeros", post(b"Content-Length: 005\r\n")),
    accepted("cl-ows", post(b"Content-Length:\t5 \r\n")),
    accepted("te-chunked-tab", chunked(HELLO_CHUNKED, b"chunked\t")),
    accepted("te-chunked-uppercase", chunked(HELLO_CHUNKED, b"CHUNKED")),
    accepted("chunk-ext-bws", chunked(b"5 ; a = b\r\nhello\r\n0\r\n\r\n")),
    accepted("chunk-ext-quoted", chunked(b'5;a="x;y"\r\nhello\r\n0\r\n\r\n')),
    accepted("chunk-size-16-digits", chunked(b"0000000000000005\r\nhello\r\n00\r\n\r\n")),
    # R8: trailer fields never change framing: the next request is read where the body ends.
    accepted("trailer-content-length", chunked(b"5\r\nhello\r\n0\r\nContent-Length: 999\r\n\r\n")),
    accepted("trailer-transfer-encoding", chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n")),
    # R1: empty lines before a request line are skipped.
    accepted("crlf-before-request-line", b"\r\n\r\n" + post(b"Content-Length: 5\r\n")),
]

# One case per class, for the front doors that run in other processes (gunicorn, asgi-supervise).
REPRESENTATIVE = [
    "http10-keepalive-chunked",
    "cl-te",
    "te-cl",
    "cl-twice-equal",
    "cl-plus",
    "te-trailing-comma",
    "te-gzip-chunked",
    "chunk-size-trailing-space",
    "chunk-size-17-digits",
    "chunk-data-no-crlf",
    "bare-lf-line-ends",
    "bare-cr-in-name",
    "obs-fold",
    "space-before-colon",
    "nul-in-value",
    "double-space",
    "fragment",
    "version-2.0",
    "http09",
    "host-twice",
    "te-chunked-tab",
    "chunk-ext-bws",
    "trailer-content-length",
]
CASES_BY_NAME = {case.name: case for case in CASES}


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def parse_responses(data: bytes) -> list[Response]:
    """Split what the server sent into responses (each has a Content-Length); no byte may be left."""
    responses = []
    while data:
        head, blank, rest = data.partition(b"\r\n\r\n")
        assert blank, f"an unfinished response head: {data!r}"
        status_line, *lines = head.split(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 "), data
        headers = {}
        for line in lines:
            name, _, value = line.partition(b": ")
            headers[name.lower()] = value
        length = int(headers[b"content-length"])
        assert len(rest) >= length, f"a response cut short: {data!r}"
        responses.append(Response(int(status_line[9:12]), headers, rest[:length]))
        data = rest[length:]
    return responses


class Recorder:
    """The app: reads the whole body, then answers 200 with its path. ``calls`` holds, per call,
    (path, "complete" or "disconnect", the body bytes it got)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope, receive, send):
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.calls.append((scope["path"], "disconnect", body))
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.calls.append((scope["path"], "complete", body))
        answer = scope["path"].encode()
        headers = [(b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def send_bytewise(sock: socket.socket, data: bytes) -> None:
    """One byte per send (each its own segment); a refusal may close the connection on the way."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for offset in range(len(data)):
        try:
            sock.send(data[offset : offset + 1])
        except (BrokenPipeError, ConnectionResetError):
            return  # what the server sent before it closed is still there to read


def settled(srv) -> bool:
    """No connection open and no app task running: every call the app will make is recorded."""
    state = srv.server.server_state
    return not state.connections and not state.tasks


def connection_records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asgi_worker.error" and r.levelno >= level]


def check_answer(case: Case, data: bytes, before: int) -> list[Response]:
    """The statuses in order, ``connection: close`` on the last one, nothing after it (R11)."""
    responses = parse_responses(data)
    expected = [200] * before + list(case.statuses)
    assert [r.status for r in responses] == expected, data
    assert responses[-1].headers.get(b"connection") == b"close", data
    assert b"/hidden" not in data
    return responses


@pytest.mark.parametrize("delivery", ["whole", "bytewise"])
@pytest.mark.parametrize("before", [0, 1], ids=["alone", "after-a-request"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_every_smuggling_class_is_answered_alike(serve, caplog, case, before, delivery):
    app = Recorder()
    data = FIRST * before + case.data + HIDDEN
    with (
        caplog.at_level(logging.DEBUG, logger="asgi_worker.error"),
        serve(app, **EXACT) as srv,
        srv.connect() as sock,
    ):
        caplog.clear()  # the server's start lines: what counts is what this connection logs
        if delivery == "whole":
            sock.sendall(data)
        else:
            send_bytewise(sock, data)
        answer = read_response(sock)
        with contextlib.suppress(OSError):  # a refused connection lingers until the client closes
            sock.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: settled(srv))
        records = connection_records(caplog, logging.DEBUG)
    responses = check_answer(case, answer, before)
    served = [("/first", b"")] * before + list(case.served)
    assert [(path, body) for path, outcome, body in app.calls if outcome == "complete"] == served
    assert [r.body.decode() for r in responses if r.status == 200] == [path for path, _ in served]
    # Only a request refused in its body may have reached the app, and it learnt the client was gone.
    unfinished = [(path, outcome) for path, outcome, _ in app.calls if outcome != "complete"]
    allowed = ([], [("/smuggle", "disconnect")]) if case.in_body else ([],)
    assert unfinished in allowed, app.calls

    lines = [(r.levelname, r.getMessage()) for r in records]
    if case.refused:
        assert len(records) == 1 and records[0].levelno == logging.DEBUG, lines
        assert records[0].getMessage().startswith("Invalid HTTP request received"), lines
        assert records[0].exc_info is None
    else:
        assert not records, lines


# R9: a body cut off by the client's end of sending never reaches the app as complete.

CUTS = {
    "chunked-mid-data": chunked(b"5\r\nhel"),
    "chunked-after-chunk": chunked(b"5\r\nhello\r\n"),
    "chunked-mid-size-line": chunked(b"5\r\nhello\r\n3"),
    "chunked-after-last-chunk": chunked(b"5\r\nhello\r\n0\r\n"),
    "chunked-mid-trailers": chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n"),
    "content-length-short": post(b"Content-Length: 10\r\n", b"hello"),
}


@pytest.mark.parametrize("data", CUTS.values(), ids=CUTS.keys())
def test_a_body_cut_off_by_the_client_never_completes(serve, caplog, data):
    app = Recorder()
    with (
        caplog.at_level(logging.DEBUG, logger="asgi_worker.error"),
        serve(app, **EXACT) as srv,
        srv.connect() as sock,
    ):
        caplog.clear()
        sock.sendall(data)
        assert wait_until(lambda: app.calls or srv.server.server_state.tasks)  # the head was read
        sock.shutdown(socket.SHUT_WR)
        answer = read_response(sock)
        with contextlib.suppress(OSError):  # a refused connection lingers until the client closes
            sock.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: settled(srv))
        noisy = connection_records(caplog, logging.WARNING)
    assert answer == b""  # nobody is left to answer: the client will send no more of the request
    assert len(app.calls) == 1, app.calls
    path, outcome, body = app.calls[0]
    assert (path, outcome) == ("/smuggle", "disconnect")
    assert b"hello".startswith(body), body
    assert not noisy, [r.getMessage() for r in noisy]
