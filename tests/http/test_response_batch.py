"""Responses held for a batch (``http/response_batch.py``) over real sockets, on every backend.

Whether a response is held depends on which app calls the loop started together, so the tests
decide that instead of hoping for it: a gate (an app that blocks the server's loop in a thread wait,
on purpose) holds the loop still while the test sends on many warmed-up connections; once it opens,
the server reads them all in one loop iteration and their app calls start together, on every loop.
The apps note how many responses the batch held right after their own ``send`` (``Probe``): the
batching is seen from the server's own thread, and the bytes are checked exactly on the client's.

With ``--eager-start`` an app call runs inside its read, so responses are not held: the tests check
the bytes on the wire alike and skip only what they assert about the batch itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asgi_worker.context import ServerContext
from tests.conftest import RunningServer
from tests.http.test_keepalive_pipelining import Responses
from tests.timing import TICK, TIMEOUT, wait_until
from tests.ws.frames import CLOSE, FrameReader, close_payload, encode_frame, handshake_request, read_head

EXACT = {"server_header": False, "date_header": False}
Serve = Callable[..., Any]  # the ``serve`` fixture: ``with serve(app, **config) as srv``

BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 11\r\nconnection: close\r\n\r\nBad Request"
)
MALFORMED = b"GET /bad HTTP/1.1\r\nHost: x\r\nno colon in this line\r\n\r\n"
SLOW = 5 * TICK  # how long ``/sleep`` apps suspend: the quick ones must not wait for them


def get(path: str, version: bytes = b"1.1") -> bytes:
    return b"GET %b HTTP/%b\r\nHost: x\r\n\r\n" % (path.encode(), version)


def ok(body: bytes, closing: bool = False) -> bytes:
    close = b"connection: close\r\n" if closing else b""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), close, body)


class Probe:
    """What the apps saw of the server's batch, read on the server's thread."""

    def __init__(self) -> None:
        self.ctx: ServerContext | None = None
        self.held: list[int] = []  # len(batch.held) right after each app's last send
        self.started: list[str] = []  # ``/hang`` and ``/body`` apps, once they run
        self.cancelled: list[str] = []
        self.disconnected: list[str] = []

    def attach(self, srv: RunningServer) -> ServerContext:
        ctx = srv.server._ctx
        assert ctx is not None
        self.ctx = ctx
        return ctx

    def note(self, path: str) -> None:
        if self.ctx is not None and path not in ("/gate", "/warm"):
            self.held.append(len(self.ctx.batch.held))


class LoopGate:
    """An app call that blocks the server's loop while the test sends (see the module docstring)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def wait(self) -> None:
        """In the gate's app, on the server's thread: block the whole loop until the test opens."""
        self.entered.set()
        self.opened.wait(TIMEOUT)

    @contextlib.contextmanager
    def shut(self, srv: RunningServer) -> Iterator[None]:
        self.entered.clear()
        self.opened.clear()
        with srv.connect() as sock:
            sock.sendall(get("/gate"))
            assert self.entered.wait(TIMEOUT), "the gate's app did not start"
            try:
                yield
            finally:
                self.opened.set()
            assert Responses(sock).next() == ok(b"/gate")


def batch_app(gate: LoopGate, probe: Probe, hooks: dict[str, Callable[[], None]] | None = None) -> Any:
    """Answers with the request's path. ``/gate`` blocks the loop; ``/sleep...`` suspends for
    ``SLOW``; ``/close...`` answers ``connection: close``; ``/hang...`` sleeps until cancelled;
    ``/body...`` reads its body, and gives up on http.disconnect; a path in ``hooks`` first calls
    its hook (on the server's thread). WebSockets are accepted."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass
            return
        path: str = scope["path"]
        if path == "/gate":
            gate.wait()
        elif path.startswith("/sleep"):
            await asyncio.sleep(SLOW)
        elif path.startswith("/hang"):
            probe.started.append(path)
            try:
                await asyncio.sleep(TIMEOUT)
            except asyncio.CancelledError:
                probe.cancelled.append(path)
                raise
        elif path.startswith("/body"):
            probe.started.append(path)
            while (message := await receive())["type"] != "http.disconnect":
                if not message["more_body"]:
                    break
            else:
                probe.disconnected.append(path)
                return
        elif hooks is not None and path in hooks:
            hooks[path]()
        headers = [(b"connection", b"close")] if path.startswith("/close") else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": path.encode()})
        probe.note(path)

    return app


def connect_warm(srv: RunningServer, count: int) -> list[tuple[socket.socket, Responses]]:
    """``count`` connections the server has accepted and served once: their next requests are read
    as soon as the loop turns (a connection accepted in that turn would be read a turn later)."""
    pairs = []
    for _ in range(count):
        sock = srv.connect()
        pairs.append((sock, Responses(sock)))
        sock.sendall(get("/warm"))
    for _sock, responses in pairs:
        assert responses.next() == ok(b"/warm")
    return pairs


@contextlib.contextmanager
def warm_connections(srv: RunningServer, count: int) -> Iterator[list[tuple[socket.socket, Responses]]]:
    """``connect_warm``, closed on the way out."""
    pairs = connect_warm(srv, count)
    try:
        yield pairs
    finally:
        for sock, _responses in pairs:
            sock.close()


def assert_accounting_settles(ctx: ServerContext) -> None:
    """Once every response is out: no app call counted as about to run, no response held."""
    batch = ctx.batch
    assert wait_until(lambda: batch.apps_ready == 0 and not batch.held and not ctx.tasks), (
        batch.apps_ready,
        batch.held,
        ctx.tasks,
    )


def eager(srv: RunningServer) -> bool:
    return bool(srv.server.config.eager_start)


# Many connections at once


CONNECTIONS = 32
ROUNDS = 3


def test_many_connections_each_get_their_own_response_from_one_batch(serve: Serve) -> None:
    gate, probe = LoopGate(), Probe()
    with serve(batch_app(gate, probe), **EXACT) as srv:
        ctx = probe.attach(srv)
        with warm_connections(srv, CONNECTIONS) as pairs:
            for round_ in range(2 * ROUNDS):
                probe.held.clear()
                paths = [f"/c{index}/r{round_}" for index in range(CONNECTIONS)]
                gated = round_ % 2 == 0  # the other rounds arrive as the client happens to send them
                with gate.shut(srv) if gated else contextlib.nullcontext():
                    for (sock, _responses), path in zip(pairs, paths, strict=True):
                        sock.sendall(get(path))
                for (_sock, responses), path in zip(pairs, paths, strict=True):
                    assert responses.next() == ok(path.encode())
                # Every app has noted what it saw (a response written at once can reach the client
                # before its app's next line runs).
                assert wait_until(lambda: len(probe.held) == CONNECTIONS)
                if gated and not eager(srv):  # one batch: the last app saw every response held
                    assert sorted(probe.held) == list(range(1, CONNECTIONS + 1))
            assert_accounting_settles(ctx)


# Order on one connection while others are busy


def test_pipelined_responses_keep_their_order_across_batches(serve: Serve) -> None:
    gate, probe = LoopGate(), Probe()
    with serve(batch_app(gate, probe), **EXACT) as srv:
        ctx = probe.attach(srv)
        with warm_connections(srv, 12) as pairs:
            pipelines = [[f"/c{index}/{n}" for n in range(4)] for index in range(len(pairs))]
            pipelines[0][1] = "/sleep/c0/1"  # one suspends mid-pipeline: the ones behind it wait for it
            pipelines[1][0] = "/sleep/c1/0"
            with gate.shut(srv):
                for (sock, _responses), paths in zip(pairs, pipelines, strict=True):
                    sock.sendall(b"".join(get(path) for path in paths))
            for (_sock, responses), paths in zip(pairs, pipelines, strict=True):
                assert [responses.next() for _ in paths] == [ok(path.encode()) for path in paths]
            if not eager(srv):
                assert max(probe.held) > 1
            assert_accounting_settles(ctx)


def test_a_pipeline_ending_in_a_bad_request_or_a_close_sends_every_response_first(serve: Serve) -> None:
    gate, probe = LoopGate(), Probe()
    with serve(batch_app(gate, probe), **EXACT) as srv:
        ctx = probe.attach(srv)
        with warm_connections(srv, 15) as pairs:
            (bad, bad_reader), (old, old_reader), (closing, closing_reader) = pairs[:3]
            busy = pairs[3:]
            with gate.shut(srv):
                bad.sendall(get("/bad/0") + get("/bad/1") + MALFORMED)
                old.sendall(get("/old/0") + get("/old/1", b"1.0") + get("/old/never"))
                closing.sendall(get("/close/0") + get("/never"))
                for index, (sock, _responses) in enumerate(busy):
                    sock.sendall(get(f"/busy/{index}/0") + get(f"/busy/{index}/1"))
            assert [bad_reader.next() for _ in range(3)] == [ok(b"/bad/0"), ok(b"/bad/1"), BAD_REQUEST]
            bad_reader.wait_closed()
            assert old_reader.next() == ok(b"/old/0")
            assert old_reader.next() == ok(b"/old/1", closing=True)
            old_reader.wait_closed()
            assert closing_reader.next() == ok(b"/close/0", closing=True)
            closing_reader.wait_closed()
            for index, (_sock, responses) in enumerate(busy):
                assert [responses.next(), responses.next()] == [
                    ok(b"/busy/%d/%d" % (index, n)) for n in (0, 1)
                ]
            assert_accounting_settles(ctx)


# A suspended app call does not hold the others back


def test_quick_responses_leave_without_waiting_for_a_suspended_app(serve: Serve) -> None:
    gate, probe = LoopGate(), Probe()
    with serve(batch_app(gate, probe), **EXACT) as srv:
        ctx = probe.attach(srv)
        with warm_connections(srv, 17) as pairs:
            (slow, slow_reader), quick = pairs[0], pairs[1:]
            with gate.shut(srv):
                slow.sendall(get("/sleep"))
                for index, (sock, _responses) in enumerate(quick):
                    sock.sendall(get(f"/quick/{index}"))
            began = time.monotonic()  # the gate is open: every app call has started, /sleep's too
            for index, (sock, responses) in enumerate(quick):
                sock.settimeout(SLOW / 2)
                assert responses.next() == ok(b"/quick/%d" % index)
            assert time.monotonic() - began < SLOW / 2
            if not eager(srv):
                assert max(probe.held) == len(quick)  # held together, then released by the callback
            slow.settimeout(TIMEOUT)
            assert slow_reader.next() == ok(b"/sleep")
            assert_accounting_settles(ctx)


# The switch to WebSocket


def test_an_upgrade_pipelined_behind_a_held_response_is_answered_after_it(serve: Serve) -> None:
    gate, probe = LoopGate(), Probe()
    refused = handshake_request("/refused", headers=("Sec-WebSocket-Version: 8",)).replace(
        b"Sec-WebSocket-Version: 13\r\n", b""
    )
    with serve(batch_app(gate, probe), **EXACT) as srv:
        ctx = probe.attach(srv)
        with warm_connections(srv, 14) as pairs:
            (upgrading, upgrading_reader), (refusing, refusing_reader) = pairs[:2]
            busy = pairs[2:]
            with gate.shut(srv):
                upgrading.sendall(get("/before-ws") + handshake_request("/ws"))
                # A refusal is written by the WebSocket side at once, as it takes over: the response
                # held before it must already be out.
                refusing.sendall(get("/before-refusal") + refused)
                for index, (sock, _responses) in enumerate(busy):
                    sock.sendall(get(f"/busy/{index}"))
            assert upgrading_reader.next() == ok(b"/before-ws")
            head, rest = read_head(upgrading, data=bytes(upgrading_reader.buf))
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            upgrading.sendall(encode_frame(CLOSE, close_payload(1000), mask=True))
            assert FrameReader(upgrading, rest).frame().opcode == CLOSE
            assert refusing_reader.next() == ok(b"/before-refusal")
            assert refusing_reader.next().startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
            refusing_reader.wait_closed()
            for index, (_sock, responses) in enumerate(busy):
                assert responses.next() == ok(b"/busy/%d" % index)
            assert_accounting_settles(ctx)


# A client that shuts its sending side once its request is out (`nc -N`, many scripts)


@pytest.mark.parametrize("when", ["with-the-request", "while-its-app-runs"])
def test_a_client_that_half_closes_still_gets_its_held_response(serve: Serve, when: str) -> None:
    """The client's FIN comes with its request (read a turn after it), or while its app runs. Its
    response is held for the batch; the FIN, read before the batch leaves, must not close the
    connection without it (it would be lost: the transport never had it)."""
    gate, probe = LoopGate(), Probe()
    in_app, go_on = threading.Event(), threading.Event()

    def wait_for_the_fin() -> None:
        in_app.set()
        go_on.wait(TIMEOUT)

    with serve(batch_app(gate, probe, {"/half-wait": wait_for_the_fin}), **EXACT) as srv:
        ctx = probe.attach(srv)
        with warm_connections(srv, 8) as pairs:
            (half, _reader), others = pairs[0], pairs[1:]
            path = "/half" if when == "with-the-request" else "/half-wait"
            with gate.shut(srv):  # read with the others: their app calls start together
                half.sendall(get(path))
                if when == "with-the-request":
                    half.shutdown(socket.SHUT_WR)
                for index, (sock, _responses) in enumerate(others):
                    sock.sendall(get(f"/other/{index}"))
            if when == "while-its-app-runs":
                assert in_app.wait(TIMEOUT)
                half.shutdown(socket.SHUT_WR)  # on loopback the FIN is in the server's socket at once
                go_on.set()
            received = b""
            half.settimeout(TIMEOUT)
            while chunk := half.recv(65536):
                received += chunk
            assert received == ok(path.encode())
            for index, (_sock, responses) in enumerate(others):
                assert responses.next() == ok(b"/other/%d" % index)
            assert_accounting_settles(ctx)


# The count of app calls about to run stays exact


def close_abruptly(sock: socket.socket, reset: bool) -> None:
    """Close, with a reset instead of a FIN when ``reset`` (SO_LINGER 0)."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("grace", [None, 0], ids=["no-grace", "grace-0"])
def test_clients_gone_mid_request_leave_no_count_behind(serve: Serve, grace: float | None) -> None:
    """An app call cancelled before its first step would never take back its count, and every
    later response would be held. Clients first send and go while the loop is blocked, so the
    server learns of the request and of the close in one turn (their app calls had not begun);
    then others go while their apps run. With a grace of 0 their ``/hang`` apps are cancelled;
    without, they send a body that never completes and the ``/body`` apps see http.disconnect."""
    gate, probe = LoopGate(), Probe()
    with serve(batch_app(gate, probe), disconnect_grace_period=grace, **EXACT) as srv:
        ctx = probe.attach(srv)

        def request(name: str) -> bytes:
            if grace == 0:
                return get(f"/hang/{name}")
            return b"POST /body/%b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc" % name.encode()

        pairs = connect_warm(srv, 20)
        going, piped, staying = pairs[:8], pairs[8:12], pairs[12:]
        with gate.shut(srv):  # gone before their app calls begin
            for index, (sock, _responses) in enumerate(going):
                sock.sendall(request(f"early{index}"))
                close_abruptly(sock, reset=bool(index % 2))
            # The FIN is read in the turn the first app call answers and starts the second.
            for index, (sock, _responses) in enumerate(piped):
                sock.sendall(get(f"/first/{index}") + request(f"piped{index}"))
                sock.shutdown(socket.SHUT_WR)
            for index, (sock, _responses) in enumerate(staying):
                sock.sendall(get(f"/stay/{index}"))
        for index, (sock, responses) in enumerate(staying):
            assert responses.next() == ok(b"/stay/%d" % index)
            sock.close()
        late = connect_warm(srv, 4)  # gone while their apps run
        for index, (sock, _responses) in enumerate(late):
            sock.sendall(request(f"late{index}"))
        assert wait_until(lambda: sum("/late" in path for path in probe.started) == len(late))
        for index, (sock, _responses) in enumerate(late):
            close_abruptly(sock, reset=bool(index % 2))
        assert_accounting_settles(ctx)
        for sock, _responses in piped:
            sock.close()
        gone = probe.cancelled if grace == 0 else probe.disconnected
        assert sum("/late" in path for path in gone) == len(late)
        # Every app that began ended the same way (a request reset before it was read never began).
        assert sorted(gone) == sorted(probe.started)
        with srv.connect() as sock:  # and the server still answers, whole
            sock.sendall(get("/lone"))
            assert Responses(sock).next() == ok(b"/lone")
        assert_accounting_settles(ctx)
