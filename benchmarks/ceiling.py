"""The ceiling: the fastest a Python + uvloop server can answer these GETs on this machine.

    python benchmarks/ceiling.py --port P --scenario NAME

A bare asyncio.Protocol on uvloop that parses nothing: it counts the request ends (b"\\r\\n\\r\\n")
arriving on each keep-alive connection and writes one precomputed response per request. No
headers are read, no ASGI call is made, no date header is kept fresh. Whatever a real server does
costs on top of this, so X/ceiling says how much of the machine's limit a server reaches, and what
is left to win. Only the GET rows whose whole response can be precomputed have a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import apps
import uvloop


def _head(content_type: bytes, framing: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\n" + framing + b"\r\n\r\n"


def _whole(content_type: bytes, body: bytes) -> bytes:
    return _head(content_type, b"content-length: " + str(len(body)).encode()) + body


def _chunked(content_type: bytes, chunk: bytes, count: int) -> bytes:
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    return _head(content_type, b"transfer-encoding: chunked") + framed * count + b"0\r\n\r\n"


_TEXT = b"text/plain; charset=utf-8"
_BINARY = b"application/octet-stream"
RESPONSES = {
    "plain": _whole(_TEXT, apps.PLAIN_BODY),
    "json_1k": _whole(b"application/json", apps.JSON_BODY),
    "body_64k": _whole(_BINARY, apps.BODY_64K),
    "body_1m": _whole(_BINARY, apps.BODY_1M),
    "chunked_16x1k": _chunked(_BINARY, apps.CHUNK_1K, apps.CHUNKS_1K),
}
RESPONSES["one_conn"] = RESPONSES["conns_512"] = RESPONSES["plain"]

_END = b"\r\n\r\n"


class Ceiling(asyncio.Protocol):
    """Answer each request end with the same bytes; keep the last 3 bytes in case an end is split."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        count = data.count(_END)
        if count:
            self.transport.write(self.response * count if count > 1 else self.response)
            data = data[data.rfind(_END) + 4 :]
        self.tail = data[-3:]


async def serve(host: str, port: int, response: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Ceiling(response), host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--scenario", choices=sorted(RESPONSES), default="plain")
    parser.add_argument("--version", action="store_true", help="print the loop's version and exit")
    args = parser.parse_args()
    if args.version:
        print(f"ceiling (uvloop {uvloop.__version__})")
        return 0
    uvloop.run(serve(args.host, args.port, RESPONSES[args.scenario]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
