"""Backpressure in both directions over real sockets (rules in ``http/connection.py``).

A slow reader must make the app's ``send`` wait instead of the server buffering the whole response;
an app that does not read must make the server stop reading, so the client's sends block. Client
sockets use small kernel buffers so that "blocked" shows within a fraction of the data.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time

from tests.timing import TICK, TIMEOUT

CHUNK = 64 * 1024
MIB = 1024 * 1024


def kernel_send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to on this machine (Linux ``tcp_wmem``), else 4 MiB."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as settings:
            return int(settings.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * MIB


# What may sit in kernel buffers while a client reads nothing: the server socket's send buffer, plus
# the client's small receive buffer, the transport's high-water mark and a chunk in flight (2 MiB).
KERNEL_BUFFERED = kernel_send_buffer_max() + 2 * MIB


def small_buffer_socket(port: int, option: int) -> socket.socket:
    """A connected client socket whose ``option`` (SO_RCVBUF or SO_SNDBUF) is 64 KiB, set before connect."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, CHUNK)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head and whatever body bytes came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the end of the head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def decode_chunked(body: bytes) -> bytes:
    """The payload of a complete chunked body; fails on any framing error or trailing byte."""
    parts = []
    position = 0
    while True:
        line_end = body.index(b"\r\n", position)
        size = int(body[position:line_end], 16)
        start = line_end + 2
        assert body[start + size : start + size + 2] == b"\r\n"
        position = start + size + 2
        if size == 0:
            assert position == len(body)
            return b"".join(parts)
        parts.append(body[start : start + size])


def test_slow_reader_makes_send_wait(serve):
    total_chunks = 20 * MIB // CHUNK
    sent = [0]

    def chunk(index: int) -> bytes:
        return bytes([index % 251]) * CHUNK

    async def app(scope, receive, send):
        headers = [(b"content-length", b"%d" % (total_chunks * CHUNK))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(total_chunks):
            more = index < total_chunks - 1
            await send({"type": "http.response.body", "body": chunk(index), "more_body": more})
            sent[0] = index + 1

    expected = hashlib.sha256()
    for index in range(total_chunks):
        expected.update(chunk(index))

    with serve(app) as srv, small_buffer_socket(srv.port, socket.SO_RCVBUF) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(4 * TICK)  # the behaviour under test: the client reads nothing for a while
        after_pause = sent[0]
        time.sleep(TICK)  # and still nothing: the app's send() must stay blocked meanwhile
        assert sent[0] == after_pause, "send() kept returning while nobody read"
        # The kernel holds up to its send-buffer limit; the server itself must not hold the rest.
        assert after_pause * CHUNK < KERNEL_BUFFERED, f"{after_pause} chunks sent before the client read any"

        head, body = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\ncontent-length: %d\r\n" % (total_chunks * CHUNK) in head
        received = hashlib.sha256(body)
        size = len(body)
        buffer = bytearray(1024 * 1024)
        while n := sock.recv_into(buffer):
            received.update(memoryview(buffer)[:n])
            size += n
    assert size == total_chunks * CHUNK
    assert received.hexdigest() == expected.hexdigest()
    assert sent[0] == total_chunks


def test_slow_streaming_reader_chunked(serve):
    """The same backpressure for a chunked (streamed, unknown length) response."""
    total_chunks = 8 * MIB // CHUNK
    sent = [0]

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(total_chunks):
            await send({"type": "http.response.body", "body": b"z" * CHUNK, "more_body": True})
            sent[0] = index + 1
        await send({"type": "http.response.body", "body": b""})

    with serve(app) as srv, small_buffer_socket(srv.port, socket.SO_RCVBUF) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(3 * TICK)  # the behaviour under test: the client reads nothing for a while
        after_pause = sent[0]
        assert after_pause < total_chunks, "the whole response was buffered while nobody read"
        data = bytearray()
        while chunk := sock.recv(1024 * 1024):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert b"\r\ntransfer-encoding: chunked\r\n" in head + b"\r\n"
    assert decode_chunked(body) == b"z" * (total_chunks * CHUNK)


def test_app_that_does_not_read_stops_the_upload(serve):
    payload = bytes(range(256)) * (8 * MIB // 256)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload
    may_read = threading.Event()

    async def app(scope, receive, send):
        while not may_read.is_set():  # reads nothing until the test has seen the upload stall
            await asyncio.sleep(TICK / 10)
        digest = hashlib.sha256()
        size = 0
        while True:
            message = await receive()
            digest.update(message["body"])
            size += len(message["body"])
            if not message["more_body"]:
                break
        body = b"%d %s" % (size, digest.hexdigest().encode())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with serve(app) as srv, small_buffer_socket(srv.port, socket.SO_SNDBUF) as sock:
        progress = [0]
        errors: list[BaseException] = []

        def upload() -> None:
            view = memoryview(request)
            try:
                while progress[0] < len(view):
                    progress[0] += sock.send(view[progress[0] : progress[0] + CHUNK])
            except OSError as exc:
                errors.append(exc)

        sender = threading.Thread(target=upload)
        sender.start()
        try:
            time.sleep(6 * TICK)  # the behaviour under test: the app reads nothing for a while
            stalled_at = progress[0]
            time.sleep(2 * TICK)  # and still nothing: the upload must stay stalled meanwhile
            assert sender.is_alive(), "the whole upload went through while the app read nothing"
            assert progress[0] == stalled_at, "the server kept reading while the app read nothing"
            assert stalled_at < len(request)

            may_read.set()
            sender.join(TIMEOUT)
            assert not sender.is_alive(), "the upload did not resume when the app read"
            assert not errors
            assert progress[0] == len(request)

            head, body = read_head(sock)
            while len(body) < 72:  # "<size> <64 hex digits>"
                chunk = sock.recv(65536)
                assert chunk
                body += chunk
        finally:
            may_read.set()  # never leave the app waiting, even when an assertion failed
            if sender.is_alive():
                sock.shutdown(socket.SHUT_RDWR)  # unblocks the sender's send()
            sender.join(TIMEOUT)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b"%d %s" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
