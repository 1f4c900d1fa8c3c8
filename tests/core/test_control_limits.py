"""The control listener's limits over real sockets: anyone who reaches the address can connect, so a
slow client is cut at ``TIMEOUT``, connections past ``MAX_CONNECTIONS`` are closed at once, a head is
at most ``MAX_HEAD`` bytes, and no byte string gets anything but a well-formed answer or a close."""

from __future__ import annotations

import os
import random
import re
import resource
import select
import socket
import time

import pytest

from asgi_worker.control import listener
from asgi_worker.control.protocol import MAX_HEAD
from tests.conftest import read_response, run_server
from tests.core.test_control_single import body_app, control_address, status
from tests.timing import TICK, TIMEOUT, wait_until
from tests.unit.test_control_protocol import fuzz_input

SEED = 20251205
WIRE_INPUTS = 300
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [A-Za-z ]+\r\n")
ANSWERS = {200, 400, 404, 405, 431}
SELECT_WAIT = 0.5  # ControlThread's select() timeout: how late an idle client's deadline may be seen


def exchange(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` on a fresh connection, say no more (half-close), and read until the server closes."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # reset, refused before all of it was sent (EPIPE, ECONNRESET, ENOTCONN)
            pass
        return read_response(sock)


def check_answer(data: bytes) -> int | None:
    """The status of one whole, well-formed answer (None for a close without one); fails otherwise."""
    if not data:
        return None
    match = STATUS_LINE.match(data)
    assert match, data[:200]
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, data[:200]
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert fields[b"connection"] == b"close", head
    length = int(fields[b"content-length"])
    assert len(body) in (0, length), data[:300]  # no body: the answer to a HEAD
    return int(match.group(1))


@pytest.fixture
def control_server():
    with run_server(body_app, control_bind="127.0.0.1:0") as srv:
        yield srv, control_address(srv)


def test_slow_loris_is_closed_after_timeout(monkeypatch, control_server):
    timeout = 10 * TICK
    monkeypatch.setattr(listener, "TIMEOUT", timeout)
    _srv, address = control_server
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /livez HTTP/1.1\r\n")
        data, closed = None, None
        while time.monotonic() - began < timeout + TIMEOUT:
            if select.select([sock], [], [], TICK)[0]:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                closed = time.monotonic() - began
                break
            try:
                sock.sendall(b"X: y\r\n")  # a byte now and then, never the blank line
            except (BrokenPipeError, ConnectionResetError):
                data, closed = b"", time.monotonic() - began
                break
    assert data == b"", f"expected a close, got {data!r}"
    assert closed is not None and timeout - TICK <= closed <= timeout + SELECT_WAIT + 5 * TICK, closed


def test_silent_client_is_closed_after_timeout(monkeypatch, control_server):
    timeout = 10 * TICK
    monkeypatch.setattr(listener, "TIMEOUT", timeout)
    _srv, address = control_server
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        began = time.monotonic()
        assert read_response(sock, timeout + TIMEOUT) == b""
    assert timeout - TICK <= time.monotonic() - began <= timeout + SELECT_WAIT + 5 * TICK


def closed_within(socks: list[socket.socket], seconds: float) -> set[int]:
    """Indexes of ``socks`` the server closed (EOF or reset) within ``seconds``; fails on data."""
    closed: set[int] = set()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        waiting = [s for i, s in enumerate(socks) if i not in closed]
        readable = select.select(waiting, [], [], left)[0]
        for sock in readable:
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"", f"an idle connection was sent {data!r}"
            closed.add(socks.index(sock))
    return closed


def test_connections_past_the_limit_are_closed_at_once(monkeypatch, control_server):
    monkeypatch.setattr(listener, "TIMEOUT", 4 * TIMEOUT)  # the held ones must not expire meanwhile
    _srv, address = control_server
    limit = listener.MAX_CONNECTIONS
    socks = []
    try:
        for _ in range(limit + 8):
            socks.append(socket.create_connection(address, timeout=TIMEOUT))
        connected = time.monotonic()
        over = set(range(limit, limit + 8))
        closed: set[int] = set()
        assert wait_until(lambda: closed.update(closed_within(socks, TICK)) or closed >= over, TIMEOUT)
        assert time.monotonic() - connected < 10 * TICK, "not closed at once"
        assert closed == over, f"closed {sorted(closed)}, expected the last 8"
        held = socks[:limit]
        assert closed_within(held, 3 * TICK) == set(), "a connection within the limit was closed"
        assert exchange(address, b"GET /livez HTTP/1.1\r\n\r\n") == b""  # still full: closed unanswered
        for sock in held:
            sock.close()
        assert wait_until(lambda: status(address, "/livez") == 200), "no answer once the others left"
    finally:
        for sock in socks:
            sock.close()


def test_answers_when_descriptors_pass_1024(control_server):
    """A busy server holds over a thousand client sockets: the control connection accepted then gets a
    descriptor past select()'s FD_SETSIZE (1024), and must still be answered."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
        pytest.skip("needs 1200 open files (ulimit -n)")
    _srv, address = control_server
    held: list[int] = []
    try:
        while not held or max(held) < 1040:  # the client sockets of a busy server, as pipes
            held.extend(os.pipe())
        assert status(address, "/livez") == 200, "no answer with a descriptor past 1023"
    finally:
        for fd in held:
            os.close(fd)
    assert status(address, "/livez") == 200, "no answer once the descriptors were closed"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET /livez HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", id="whole-head"),
        pytest.param(b"GET /livez HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, id="never-ending-head"),
        pytest.param(b"GET /livez HTTP/1.1\r\nX: " + b"a" * (8 * MAX_HEAD) + b"\r\n\r\n", id="64-KiB-head"),
    ],
)
def test_head_over_8_kib_gets_431(control_server, data):
    _srv, address = control_server
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(data)  # no half-close: the server must answer before it sees the end
        answer = read_response(sock)
    assert check_answer(answer) == 431, answer[:200]


def test_head_of_exactly_max_head_is_served(control_server):
    _srv, address = control_server
    head = b"GET /livez HTTP/1.1\r\nX: "
    data = head + b"a" * (MAX_HEAD - len(head) - 4) + b"\r\n\r\n"
    assert len(data) == MAX_HEAD
    assert check_answer(exchange(address, data)) == 200


def test_wire_fuzz_gets_answers_or_closes(control_server):
    srv, address = control_server
    rng = random.Random(SEED)
    outcomes: dict[int | None, int] = {}
    for number in range(WIRE_INPUTS):
        data = fuzz_input(rng)
        answer = exchange(address, data)
        try:
            code = check_answer(answer)
        except (AssertionError, ValueError, KeyError) as exc:
            pytest.fail(f"input {number} {data[:200]!r}: malformed answer {answer[:300]!r} ({exc!r})")
        assert code is None or code in ANSWERS, f"input {number} {data[:200]!r}: {answer[:300]!r}"
        outcomes[code] = outcomes.get(code, 0) + 1
    assert status(address, "/livez") == 200
    assert {None, 200, 400, 431} <= outcomes.keys(), outcomes
    clients = srv.server._control.listener._clients
    assert wait_until(lambda: not clients), f"{len(clients)} control connections left open"
