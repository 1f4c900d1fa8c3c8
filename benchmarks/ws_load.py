"""A WebSocket load client cheap enough not to be what it measures.

Frames are built once (masked with a fixed key, as RFC 6455 allows any key) and written in bursts;
echoes are counted by bytes, never parsed one by one: the server's frames for a fixed payload have
a fixed size. So the client spends almost nothing per message and one core of it outruns one
Python server core.

The roundtrip mode keeps exactly one message in flight per connection and times each round trip;
it runs on a bare epoll loop (one recv, one send and two clock reads per message) so that the
timing is the server's, not an event loop's.

Usage (run by run.py and ws_run.py, pinned to the client CPU):
  python ws_load.py PORT small|large|roundtrip DURATION CONNECTIONS
      prints one JSON line {"msgs": ..., "seconds": ...} (roundtrip adds "p99_ms")
  python ws_load.py PORT idle COUNT HOLD_SECONDS
      opens COUNT idle WebSockets, prints "ready", then holds them
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import socket
import struct
import sys
import threading
import time

MASK = b"\x01\x02\x03\x04"
SMALL_PAYLOAD = b"x" * 32  # a chat-sized message
SMALL_BURST = 50  # messages in flight per connection
LARGE_PAYLOAD = b"y" * (1024 * 1024)
ROUNDTRIP_PAYLOAD = b"r" * 64
HANDSHAKE_TIMEOUT = 10.0


def client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One final, masked client frame."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    mask = (MASK * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(size, "big")
    return head + MASK + masked


def server_frame_size(size: int) -> int:
    """Bytes of an unmasked server frame carrying ``size`` payload bytes."""
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


def handshake_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def open_blocking(port: int) -> socket.socket:
    """A connected, handshaken WebSocket as a blocking socket (no extensions: plain frames)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(handshake_request(port))
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)  # one byte at a time: nothing after the head may be swallowed
        if not byte:
            raise RuntimeError(f"connection closed during the handshake: {head[:60]!r}")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:60]!r}")
    return sock


def check_echo(port: int) -> None:
    """Send one roundtrip-sized binary message and insist that the exact frame comes back.

    Run before any load: a server that drops or mangles messages must not look fast.
    """
    with open_blocking(port) as sock:
        payload = bytes(range(len(ROUNDTRIP_PAYLOAD)))
        sock.sendall(client_frame(payload))
        expected = bytes([0x82, len(payload)]) + payload
        got = b""
        while len(got) < len(expected):
            chunk = sock.recv(len(expected) - len(got))
            if not chunk:
                break
            got += chunk
        sock.sendall(struct.pack("!BB", 0x88, 0x80) + MASK)
    if got != expected:
        raise RuntimeError(f"echo check failed: sent {expected[:12]!r}..., got {got[:12]!r}...")


def roundtrip(port: int, duration: float, connections: int) -> None:
    """One message in flight per connection; print msgs, seconds and the p99 round trip in ms."""
    frame = client_frame(ROUNDTRIP_PAYLOAD)
    expected = server_frame_size(len(ROUNDTRIP_PAYLOAD))
    sockets = [open_blocking(port) for _ in range(connections)]
    poller = select.epoll()
    by_fd, pending, sent_at = {}, {}, {}
    times: list[int] = []
    clock = time.perf_counter_ns
    started = time.monotonic()
    deadline = started + duration
    for sock in sockets:
        sock.setblocking(False)
        fd = sock.fileno()
        by_fd[fd], pending[fd] = sock, expected
        poller.register(fd, select.EPOLLIN)
        sent_at[fd] = clock()
        sock.send(frame)  # 70 bytes into an empty buffer: never partial
    open_count = connections
    while open_count:
        for fd, _ in poller.poll(0.5):
            data = by_fd[fd].recv(65536)
            if not data:
                raise RuntimeError("the server closed a connection")
            pending[fd] -= len(data)
            if pending[fd] > 0:
                continue
            now = clock()
            times.append(now - sent_at[fd])
            if time.monotonic() >= deadline:
                poller.unregister(fd)
                open_count -= 1
                continue
            pending[fd], sent_at[fd] = expected, now
            by_fd[fd].send(frame)
    seconds = time.monotonic() - started
    for sock in sockets:
        sock.setblocking(True)
        sock.sendall(struct.pack("!BB", 0x88, 0x80) + MASK)
        sock.close()
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] / 1e6 if times else None
    print(json.dumps({"msgs": len(times), "seconds": seconds, "p99_ms": p99}), flush=True)


async def open_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and complete the handshake (no extensions offered: plain frames both ways)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=8 * 1024 * 1024)
    writer.write(handshake_request(port))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:60]!r}")
    return reader, writer


async def echo_loop(port: int, payload: bytes, burst: int, deadline: float) -> int:
    reader, writer = await open_websocket(port)
    blob = client_frame(payload) * burst
    expected = server_frame_size(len(payload)) * burst
    count = 0
    while time.monotonic() < deadline:
        writer.write(blob)
        await reader.readexactly(expected)
        count += burst
    writer.write(struct.pack("!BB", 0x88, 0x80) + MASK)  # close, no code
    writer.close()
    return count


async def measure(port: int, kind: str, duration: float, connections: int) -> None:
    if kind == "large":
        measure_large(port, duration, connections)
        return
    started = time.monotonic()
    counts = await asyncio.gather(
        *(echo_loop(port, SMALL_PAYLOAD, SMALL_BURST, started + duration) for _ in range(connections))
    )
    print(json.dumps({"msgs": sum(counts), "seconds": time.monotonic() - started}), flush=True)


def measure_large(port: int, duration: float, connections: int) -> None:
    """1 MiB echoes from blocking threads reading into one preallocated buffer each: no per-message
    allocation or copy in the client, so the server's cost is what decides the rate (an asyncio
    StreamReader client spent more CPU per message than the servers did)."""
    frame = client_frame(LARGE_PAYLOAD)
    expected = server_frame_size(len(LARGE_PAYLOAD))
    counts = [0] * connections
    started = time.monotonic()
    deadline = started + duration

    def run(index: int) -> None:
        sock = open_blocking(port)
        sock.settimeout(None)
        buffer = memoryview(bytearray(expected))
        while time.monotonic() < deadline:
            sock.sendall(frame)
            got = 0
            while got < expected:
                got += sock.recv_into(buffer[got:])
            counts[index] += 1
        sock.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"msgs": sum(counts), "seconds": time.monotonic() - started}), flush=True)


async def hold_idle(port: int, count: int, hold: float) -> None:
    sockets = []
    for _ in range(count):
        sockets.append(await open_websocket(port))
    print("ready", flush=True)
    await asyncio.sleep(hold)
    for _, writer in sockets:
        writer.close()


def main() -> None:
    port, kind = int(sys.argv[1]), sys.argv[2]
    if kind == "idle":
        asyncio.run(hold_idle(port, int(sys.argv[3]), float(sys.argv[4])))
    elif kind == "roundtrip":
        roundtrip(port, float(sys.argv[3]), int(sys.argv[4]))
    else:
        asyncio.run(measure(port, kind, float(sys.argv[3]), int(sys.argv[4])))


if __name__ == "__main__":
    main()
