"""Hand-built WebSocket frames for raw-socket tests: exact bytes in, parsed frames out (RFC 6455 5).

``encode_frame`` builds one client frame (masked unless told otherwise, any opcode, FIN or not);
``FrameReader`` reads the server's frames off a socket; ``open_raw`` does the opening handshake over
a raw socket and returns the socket, the response head and a reader positioned after the head.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from typing import NamedTuple

from tests.timing import TIMEOUT

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's example key
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # ... and its accept value


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept value the server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def encode_frame(
    opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True, rsv1: bool = False
) -> bytes:
    """One frame as a client sends it: masked with a random key unless ``mask`` is false."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (masking and unmasking are the same)."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame: the code (2 bytes, network order) then the UTF-8 reason."""
    return struct.pack("!H", code) + reason.encode()


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame's payload; 1005 when it has none (RFC 6455 7.1.5)."""
    if not payload:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes
    masked: bool


class FrameReader:
    """Reads frames from a socket; ``buffer`` may start with bytes that came with the HTTP head."""

    def __init__(self, sock: socket.socket, buffer: bytes = b"") -> None:
        self.sock = sock
        self.buffer = buffer

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed with {len(self.buffer)} of {size} bytes read")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def frame(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame. Raises ``EOFError`` when the server closes first, ``TimeoutError`` on silence."""
        self.sock.settimeout(timeout)
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        masked = bool(second & 0x80)
        key = self._read(4) if masked else b""
        payload = self._read(length)
        if masked:
            payload = apply_mask(payload, key)
        return Frame(bool(first & 0x80), first & 0x0F, payload, masked)

    def frames_until_close(self, timeout: float = TIMEOUT) -> list[Frame]:
        """Every frame up to and including the close frame."""
        frames = [self.frame(timeout)]
        while frames[-1].opcode != CLOSE:
            frames.append(self.frame(timeout))
        return frames

    def at_eof(self, timeout: float = TIMEOUT) -> bool:
        """True once the server has closed the TCP connection (nothing more buffered or sent)."""
        self.sock.settimeout(timeout)
        if self.buffer:
            return False
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True


def handshake_request(path: str = "/", key: str = KEY, headers: tuple[str, ...] = ()) -> bytes:
    """A valid opening handshake request, plus ``headers`` (each ``"Name: value"``)."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: example.test",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: socket.socket, timeout: float = TIMEOUT, data: bytes = b"") -> tuple[bytes, bytes]:
    """(the HTTP response head with its blank line, any bytes that followed it); ``data`` is what
    was already read of it."""
    sock.settimeout(timeout)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, sep, rest = data.partition(b"\r\n\r\n")
    return head + sep, rest


def raw_socket(address: tuple[str, int], sndbuf: int = 0, rcvbuf: int = 0) -> socket.socket:
    """A connected TCP socket, its kernel buffers shrunk (before connecting) when asked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(address)
    return sock


def open_raw(
    address: tuple[str, int],
    path: str = "/",
    headers: tuple[str, ...] = (),
    sock: socket.socket | None = None,
) -> tuple[socket.socket, bytes, FrameReader]:
    """Open a raw WebSocket (on ``sock`` if given): (socket, the response head, a frame reader)."""
    if sock is None:
        sock = socket.create_connection(address, timeout=TIMEOUT)
    sock.sendall(handshake_request(path, headers=headers))
    head, rest = read_head(sock)
    return sock, head, FrameReader(sock, rest)
