"""The opening handshake held to RFC 6455 over raw sockets, on every loop x parser: a version other
than exactly 13 is 426 naming 13 (4.4); every other malformed handshake is a 4xx with
``connection: close``, then the close, one info line and no traceback, and the app never runs.
A request that does not ask for ``Upgrade: websocket`` with ``Connection: upgrade`` stays plain HTTP.
Also: ``--ws auto`` and ``--ws websockets`` answer alike, a bad handshake pipelined behind a request
waits its turn, gunicorn's worker answers the same 426, and no header value makes the check a 500."""

from __future__ import annotations

import logging
import random
import re
import socket

import pytest

from asgi_worker.http.events import BODY_CHUNKED, RequestHead
from asgi_worker.ws.handshake import Handshake
from tests.conftest import read_response, read_until
from tests.gunicorn.harness import gunicorn
from tests.timing import TIMEOUT
from tests.ws.apps import Recorder, counting_app
from tests.ws.frames import KEY, handshake_request

EXACT = {"server_header": True, "date_header": False}
VERSION_13 = b"\r\nSec-WebSocket-Version: 13\r\n"


def with_version(*lines: str) -> bytes:
    """The valid handshake with its Sec-WebSocket-Version line replaced by ``lines``."""
    return handshake_request().replace(
        b"Sec-WebSocket-Version: 13\r\n", "".join(f"{x}\r\n" for x in lines).encode()
    )


def with_key(*lines: str) -> bytes:
    """The valid handshake with its Sec-WebSocket-Key line replaced by ``lines``."""
    old = f"Sec-WebSocket-Key: {KEY}\r\n".encode()
    return handshake_request().replace(old, "".join(f"{x}\r\n" for x in lines).encode())


def plus(*lines: str) -> bytes:
    return handshake_request(headers=lines)


# (request bytes, status, header lines the answer must carry)
REFUSED = {
    "version 8": (with_version("Sec-WebSocket-Version: 8"), 426, [VERSION_13]),
    "version missing": (with_version(), 426, [VERSION_13]),
    "version list": (with_version("Sec-WebSocket-Version: 13, 8"), 426, [VERSION_13]),
    "version twice": (
        with_version("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13"),
        426,
        [VERSION_13],
    ),
    "version 13.0": (with_version("Sec-WebSocket-Version: 13.0"), 426, [VERSION_13]),
    "version empty": (with_version("Sec-WebSocket-Version:"), 426, [VERSION_13]),
    "key missing": (with_key(), 400, []),
    "key not base64": (with_key("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="), 400, []),
    "key of 3 bytes": (with_key("Sec-WebSocket-Key: YWJj"), 400, []),
    "key of 17 bytes": (with_key("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="), 400, []),
    "key unpadded": (with_key("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"), 400, []),
    "key twice": (with_key(f"Sec-WebSocket-Key: {KEY}", f"Sec-WebSocket-Key: {KEY}"), 400, []),
    "two upgrade headers": (plus("Upgrade: h2c", "Upgrade: websocket"), 426, [b"\r\nUpgrade: websocket\r\n"]),
    "POST": (handshake_request().replace(b"GET", b"POST", 1), 405, [b"\r\nAllow: GET\r\n"]),
    "POST with a body": (
        handshake_request(headers=("Content-Length: 5",)).replace(b"GET", b"POST", 1) + b"hello",
        405,
        [b"\r\nAllow: GET\r\n"],
    ),
    "POST with a body still coming": (
        handshake_request(headers=("Content-Length: 100000",)).replace(b"GET", b"POST", 1) + b"hello",
        405,
        [b"\r\nAllow: GET\r\n"],
    ),
    "GET with a chunked body": (plus("Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n", 400, []),
    "HTTP/1.0": (handshake_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1), 400, []),
    "HTTP/1.0 keep-alive": (
        handshake_request()
        .replace(b"HTTP/1.1", b"HTTP/1.0", 1)
        .replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"),
        400,
        [],
    ),
    "extensions syntax": (plus("Sec-WebSocket-Extensions: permessage-deflate; =="), 400, []),
    "extensions empty": (plus("Sec-WebSocket-Extensions: ,"), 400, []),
    "protocol syntax": (plus("Sec-WebSocket-Protocol: chat superchat"), 400, []),
    "protocol empty": (plus("Sec-WebSocket-Protocol:"), 400, []),
    "two origins": (plus("Origin: http://a", "Origin: http://b"), 400, []),
}


def refusal_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name.startswith("asgi_worker") and '"WebSocket /"' in r.getMessage()
    ]


@pytest.mark.parametrize("case", REFUSED)
def test_a_bad_handshake_is_refused_and_closed_and_the_app_never_runs(serve, caplog, case):
    request, status, lines = REFUSED[case]
    calls = Recorder()
    with (
        caplog.at_level(logging.DEBUG, logger="asgi_worker"),
        serve(counting_app(calls), **EXACT) as srv,
        srv.connect() as sock,
    ):
        sock.sendall(request)
        response = read_response(sock)  # fails the test unless the server closes
    head, _, body = response.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.1 %d [A-Za-z ]+\r\n" % status, head), head
    assert head.lower().count(b"\r\nconnection: close\r\n") == 1
    assert head.count(b"\r\nconnection:") + head.count(b"\r\nConnection:") == 1
    for line in lines:
        assert line in head + b"\r\n", (line, head)
    length = re.search(rb"\r\nContent-Length: (\d+)", head)
    assert (
        length and int(length[1]) == len(body) and body.startswith(b"Failed to open a WebSocket connection: ")
    )
    assert calls.items == []
    records = refusal_records(caplog)
    assert [(r.levelno, r.exc_info) for r in records] == [(logging.INFO, None)], records
    assert records[0].getMessage().split(" ")[4] == str(status)
    noisy = [r for r in caplog.records if r.name.startswith("asgi_worker") and r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]


def test_426_names_the_version_and_asks_for_websocket(serve):
    with serve(counting_app(Recorder()), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(with_version("Sec-WebSocket-Version: 8"))
        response = read_response(sock)
    head = response.partition(b"\r\n\r\n")[0] + b"\r\n"
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert VERSION_13 in head  # RFC 6455 4.4: the versions we speak
    assert b"\r\nUpgrade: websocket\r\n" in head  # RFC 9110 15.5.22: a 426 names the protocol
    assert b"\r\nconnection: close\r\n" in head and b"\r\nserver: asgi-worker\r\n" in head
    assert b"unsupported Sec-WebSocket-Version; expected 13; got 8" in response


@pytest.mark.parametrize("deflate", [True, False])
def test_extensions_syntax_is_checked_with_deflate_on_or_off(serve, deflate):
    with (
        serve(counting_app(Recorder()), ws_per_message_deflate=deflate, **EXACT) as srv,
        srv.connect() as sock,
    ):
        sock.sendall(plus("Sec-WebSocket-Extensions: permessage-deflate; =="))
        assert read_response(sock).startswith(b"HTTP/1.1 400 Bad Request\r\n")


@pytest.mark.parametrize("ws", ["auto", "websockets"])
def test_every_ws_choice_refuses_alike(serve, ws):
    answers = []
    with serve(counting_app(Recorder()), ws=ws, **EXACT) as srv:
        for request in (with_version("Sec-WebSocket-Version: 8"), with_key("Sec-WebSocket-Key: YWJj")):
            with srv.connect() as sock:
                sock.sendall(request)
                answers.append(read_response(sock).partition(b"\r\n")[0])
    assert answers == [b"HTTP/1.1 426 Upgrade Required", b"HTTP/1.1 400 Bad Request"]


# Not a handshake: plain HTTP, as RFC 9110 7.8 and uvicorn have it (the app may answer 426 itself).

PLAIN = {
    "Upgrade without Connection: upgrade": handshake_request().replace(b"Connection: Upgrade\r\n", b""),
    "Connection: upgrade without Upgrade": handshake_request().replace(b"Upgrade: websocket\r\n", b""),
}


@pytest.mark.parametrize("case", PLAIN)
def test_a_request_that_does_not_ask_to_switch_is_plain_http(serve, case):
    calls = Recorder()
    with serve(counting_app(calls), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(PLAIN[case])
        response = read_until(sock, b"\r\n\r\nhttp")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert calls.items == ["http"]


def test_ws_none_serves_a_post_upgrade_as_http(serve):
    calls = Recorder()
    request = handshake_request(headers=("Content-Length: 5",)).replace(b"GET", b"POST", 1) + b"hello"
    with serve(counting_app(calls), ws="none", **EXACT) as srv, srv.connect() as sock:
        sock.sendall(request)
        assert read_until(sock, b"\r\n\r\nhttp").startswith(b"HTTP/1.1 200 OK\r\n")
    assert calls.items == ["http"]


def test_a_bad_handshake_pipelined_behind_a_request_is_answered_after_it(serve):
    calls = Recorder()
    first = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
    bad = handshake_request(headers=("Content-Length: 5",)).replace(b"GET", b"POST", 1) + b"hello"
    with serve(counting_app(calls), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(first + bad)
        response = read_response(sock)
    answer, _, refusal = response.partition(b"\r\n\r\nhttp")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert refusal.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert calls.items == ["http"]


# Under gunicorn


def test_gunicorn_worker_answers_426_with_the_version():
    with gunicorn() as g:
        with socket.create_connection(("127.0.0.1", g.port), timeout=TIMEOUT) as sock:
            sock.sendall(with_version("Sec-WebSocket-Version: 8"))
            response = read_response(sock)
        log = g.wait_for('"WebSocket /" 426')
    head = response.partition(b"\r\n\r\n")[0] + b"\r\n"
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert VERSION_13 in head and b"\r\nconnection: close\r\n" in head
    lines = [line for line in log.splitlines() if '"WebSocket /"' in line]
    assert len(lines) == 1 and "[INFO]" in lines[0] and "Traceback" not in log


# No header value makes the check fail with a 500 (the library's "unexpected error" path).

_PIECES = ["permessage-deflate", "client_max_window_bits", "server_max_window_bits", "=", ";", ",", '"']
_PIECES += ["15", "8", "99", "0", " ", "server_no_context_takeover", "chat", "\t", "\xe9", "\xff", "x"]
_NAMES = [b"sec-websocket-" + name for name in (b"extensions", b"protocol", b"key", b"version")]
_NAMES += [b"origin", b"upgrade", b"connection"]


@pytest.mark.parametrize("deflate", [True, False])
def test_no_header_value_makes_the_check_a_server_error(deflate):
    rng = random.Random(6455)
    statuses = set()
    for _ in range(3000):
        headers = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
        headers += [(b"sec-websocket-key", KEY.encode()), (b"sec-websocket-version", b"13")]
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(_NAMES)
            value = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 6))).strip(" \t")
            if rng.random() < 0.5:
                headers = [pair for pair in headers if pair[0] != name]
            headers.append((name, value.encode("latin-1")))
        method, version, body = rng.choice([("GET", "1.1", 0)] * 8 + [("POST", "1.1", 3), ("GET", "1.0", 0)])
        body = BODY_CHUNKED if body and rng.random() < 0.5 else body
        head = RequestHead(method, b"/", version, headers, True, False, b"websocket", True, body)
        status = Handshake(head, deflate).response.status_code
        assert status == 101 or 400 <= status < 500, (status, method, version, headers)
        statuses.add(status)
    assert {101, 400, 405, 426} <= statuses  # the seed reaches every answer
