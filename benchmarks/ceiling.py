"""The ceiling: the fastest a Python + uvloop server can answer these GETs on this machine.

    python benchmarks/ceiling.py --port P --scenario NAME     # precomputed bytes (plain ASGI rows)
    python benchmarks/ceiling.py --port P --asgi MODULE:ATTR  # an ASGI app (framework rows)

`--scenario`: a bare asyncio.Protocol on uvloop that parses nothing: it counts the request ends
(b"\\r\\n\\r\\n") arriving on each keep-alive connection and writes one precomputed response per
request. No headers are read, no ASGI call is made, no date header is kept fresh. Whatever a real
server does costs on top of this, so X/ceiling says how much of the machine's limit a server
reaches, and what is left to win. Only the GET rows whose whole response can be precomputed have
this ceiling.

`--asgi`: where a framework answers, its own work is most of a request's cost and no server can
skip it, so the ceiling there is the framework under the least work any ASGI server must do (see
AsgiConnection): httptools parsing, one scope and one Task per request, one write per response.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections import deque
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import apps
import httptools
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


# --- ASGI mode -------------------------------------------------------------------------------------

Message = dict[str, Any]

# Python 3.12 added eager tasks: the app's first step runs in the read callback that completed the
# request, one loop iteration less per request. Our server does the same, so the ceiling must too.
_EAGER = sys.version_info >= (3, 12)
_ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}  # one dict for every scope: nobody writes it
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


class Exchange:
    """One request's receive and send: keep the start, write head + body in one go, nothing checked."""

    __slots__ = ("conn", "received", "start", "task", "waiting")

    def __init__(self, conn: AsgiConnection) -> None:
        self.conn = conn
        self.received = False
        self.start: Message | None = None
        self.task: asyncio.Task | None = None  # held so the loop's weak reference is not the only one
        self.waiting: asyncio.Future | None = None

    async def receive(self) -> Message:
        """The (empty) body once, then nothing until the client leaves: GET rows only."""
        if not self.received:
            self.received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.waiting = self.conn.loop.create_future()
        return await self.waiting

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        body = message.get("body", b"")
        start = self.start
        if start is not None:  # the first body message carries the head (the rows send only one)
            self.start = None
            parts = [_STATUS_LINES[start["status"]]]
            for name, value in start.get("headers", ()):
                parts += (name, b": ", value, b"\r\n")
            parts += (b"\r\n", body)
            body = b"".join(parts)
        self.conn.transport.write(body)
        if not message.get("more_body", False):
            self.conn.finished()


class AsgiConnection(asyncio.Protocol):
    """The least an ASGI server must do per HTTP/1.1 request, and nothing more.

    httptools parses; each complete request becomes one scope (the keys ASGI 3 requires for http)
    and one Task running the app; the response is written once, as the app framed it (its own
    content-length). Keep-alive only, no timeouts, limits, logging, lifespan, date or server
    header. Requests on a connection are answered in order, one at a time (wrk does not pipeline;
    a client that does waits in `pending`).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.current: Exchange | None = None
        self.pending: deque[dict[str, Any]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.server = tuple(transport.get_extra_info("sockname")[:2])
        self.client = tuple(transport.get_extra_info("peername")[:2])

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        waiting = self.current and self.current.waiting
        if waiting and not waiting.done():
            waiting.set_result({"type": "http.disconnect"})

    def on_url(self, url: bytes) -> None:
        self.url += url  # may come in pieces when a read splits it

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        raw_path, _, query = self.url.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        scope = {
            "type": "http",
            "asgi": _ASGI_VERSION,
            "http_version": self.parser.get_http_version(),
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "method": self.parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
        }
        self.url = b""
        self.headers = []
        if self.current is None:
            self.run(scope, _EAGER)
        else:
            self.pending.append(scope)

    def run(self, scope: dict[str, Any], eager: bool) -> None:
        exchange = self.current = Exchange(self)
        coro = self.app(scope, exchange.receive, exchange.send)
        if eager:
            exchange.task = asyncio.Task(coro, loop=self.loop, eager_start=True)  # type: ignore[call-arg]
        else:
            exchange.task = self.loop.create_task(coro)

    def finished(self) -> None:
        """The response is out: the next request's turn (never eager: we are inside an app's send)."""
        self.current = None
        if self.pending:
            self.run(self.pending.popleft(), False)


def load_app(target: str) -> Any:
    """`module:attribute`, imported from the app directory on PYTHONPATH (or benchmarks/)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


async def serve(host: str, port: int, protocol: Callable[[], asyncio.Protocol]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--scenario", choices=sorted(RESPONSES), default="plain", help="precomputed bytes")
    mode.add_argument("--asgi", metavar="MODULE:ATTR", help="serve this ASGI app with the least work")
    parser.add_argument("--version", action="store_true", help="print the loop's version and exit")
    args = parser.parse_args()
    if args.version:
        print(f"ceiling (uvloop {uvloop.__version__}, httptools {httptools.__version__})")
        return 0
    if args.asgi:
        protocol = partial(AsgiConnection, load_app(args.asgi))
    else:
        protocol = partial(Ceiling, RESPONSES[args.scenario])
    uvloop.run(serve(args.host, args.port, protocol))
    return 0


if __name__ == "__main__":
    sys.exit(main())
