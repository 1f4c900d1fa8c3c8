"""Backpressure both ways over real sockets on every backend: a fast client against an app that does
not receive (the server stops reading past ``ws_max_queue``), and an app sending to a client that does
not read (the app's ``send`` waits instead of our memory growing)."""

from __future__ import annotations

import asyncio
import threading
import time

from tests.timing import TICK, TIMEOUT, wait_until
from tests.ws.apps import Recorder
from tests.ws.frames import BINARY, CLOSE, close_payload, encode_frame, open_raw, raw_socket

MAX_QUEUE = 4
MESSAGE = 4 * 1024
MOST = 32 * 1024 * 1024  # what the client tries to push before it counts as "never blocked"


def ws_connection(srv):
    """The server's one WebSocketConnection (read from the server thread's set: a snapshot)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            found = [c for c in list(srv.server.server_state.connections) if hasattr(c, "queue_drained")]
        except RuntimeError:  # the set changed size while we copied it: try again
            found = []
        if found:
            return found[0]
        time.sleep(TICK / 10)
    raise AssertionError("no WebSocket connection")


def lagging_app(release, recorder):
    """Accepts, waits for ``release`` (a threading.Event) without receiving, then receives everything."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(TICK / 10)
        while (message := await receive())["type"] == "websocket.receive":
            recorder.add(message["bytes"][:8])
        recorder.add(message)

    return app


def push_until_blocked(sock, frame):
    """Send ``frame`` repeatedly without blocking; the number of whole frames sent when the socket
    would block (a partial frame is finished later by the caller: returns the unsent tail too)."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent * len(frame) < MOST:
            view = memoryview(frame)
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    return sent, bytes(view)
            sent += 1
        return sent, b""
    finally:
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)


def test_a_full_queue_stops_reading_and_nothing_is_lost(serve):
    release, recorder = threading.Event(), Recorder()
    with serve(lagging_app(release, recorder), ws_max_queue=MAX_QUEUE) as srv:
        address = ("127.0.0.1", srv.port)
        sock, head, reader = open_raw(address, sock=raw_socket(address, sndbuf=32 * 1024))
        with sock:
            assert head.startswith(b"HTTP/1.1 101 ")
            sent, tail = push_until_blocked(sock, encode_frame(BINARY, bytes(8) + b"x" * (MESSAGE - 8)))
            assert sent * MESSAGE < MOST, "the server never stopped reading"
            connection = ws_connection(srv)
            assert wait_until(lambda: connection._reading_paused), "the server never paused reading"
            queued = len(connection._session._queue)
            # One read may bring several messages past the limit, never more than one read holds.
            assert MAX_QUEUE <= queued <= MAX_QUEUE + 256 * 1024 // MESSAGE + 1
            assert queued <= sent
            time.sleep(3 * TICK)  # the behaviour under test: paused stays paused while the app lags
            assert len(connection._session._queue) == queued  # not slow: stopped
            release.set()
            sock.sendall(tail + encode_frame(CLOSE, close_payload(1000)))
            prefixes = recorder.wait_for(lambda items: items and isinstance(items[-1], dict))
            reader.frames_until_close()
    disconnect = prefixes.pop()
    assert disconnect["code"] == 1000
    assert len(prefixes) == sent + (1 if tail else 0)
    assert all(prefix == (0).to_bytes(8, "big") for prefix in prefixes)


def test_messages_arrive_in_order_after_the_app_catches_up(serve):
    release, recorder = threading.Event(), Recorder()
    count = 200
    with serve(lagging_app(release, recorder), ws_max_queue=MAX_QUEUE) as srv:
        sock, _, reader = open_raw(("127.0.0.1", srv.port))
        with sock:

            def writer():
                for index in range(count):
                    sock.sendall(encode_frame(BINARY, index.to_bytes(8, "big") + b"y" * 1000))
                sock.sendall(encode_frame(CLOSE, close_payload(1000)))

            thread = threading.Thread(target=writer)
            thread.start()
            connection = ws_connection(srv)
            assert wait_until(lambda: connection._reading_paused), "the server never paused reading"
            assert len(connection._session._queue) <= MAX_QUEUE + 256 * 1024 // 1000 + 1
            release.set()
            thread.join(TIMEOUT)
            items = recorder.wait_for(lambda items: items and isinstance(items[-1], dict))
            reader.frames_until_close()
    assert items[:-1] == [index.to_bytes(8, "big") for index in range(count)]


def test_send_waits_for_a_client_that_does_not_read(serve):
    progress = Recorder()
    total, size = 64, 256 * 1024

    async def flooding(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        for index in range(total):
            await send({"type": "websocket.send", "bytes": index.to_bytes(4, "big") * (size // 4)})
            progress.add(index)
        await receive()

    with serve(flooding) as srv:
        address = ("127.0.0.1", srv.port)
        sock, head, reader = open_raw(address, sock=raw_socket(address, rcvbuf=64 * 1024))
        with sock:
            assert head.startswith(b"HTTP/1.1 101 ")
            connection = ws_connection(srv)
            stalled = _wait_until_stable(progress)
            assert stalled < total - 1, "the app's send never waited"
            assert connection.write_paused  # the app is parked in wait_writable
            buffered = connection._transport.get_write_buffer_size()
            assert buffered <= 65536 + size  # the high-water mark plus the message that crossed it
            time.sleep(2 * TICK)  # the behaviour under test: the client still reads nothing
            assert len(progress.items) == stalled  # still waiting: nothing more was queued in memory
            frames = [reader.frame() for _ in range(total)]
            sock.sendall(encode_frame(CLOSE, close_payload(1000)))
            assert reader.frame().opcode == CLOSE
    assert [frame.payload[:4] for frame in frames] == [index.to_bytes(4, "big") for index in range(total)]
    assert all(len(frame.payload) == size for frame in frames)
    assert progress.items == list(range(total))


def _wait_until_stable(progress):
    """How many sends completed, once that number has not changed for a few ticks."""
    deadline = time.monotonic() + TIMEOUT
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(progress.items)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 3 * TICK:
            return now
        time.sleep(TICK / 5)
    raise AssertionError("the app kept sending")
