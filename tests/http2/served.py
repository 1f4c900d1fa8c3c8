"""What the served HTTP/2 tests share: servers with ``--http2`` on, apps, curl, a TLS client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RunningServer, run_server
from tests.http2.peer import H2Peer
from tests.timing import TIMEOUT

LOOPS = [pytest.param("asyncio", id="asyncio"), pytest.param("uvloop", id="uvloop")]

MIB = 1024 * 1024


@contextlib.contextmanager
def h2_server(app: Any, loop: str = "asyncio", **kwargs: Any) -> Iterator[RunningServer]:
    """``run_server`` with ``--http2``; the event loop must report no error."""
    kwargs.setdefault("http2", True)
    with run_server(app, loop=loop, **kwargs) as server:
        yield server
    assert not server.loop_errors, f"event loop reported errors: {server.loop_errors}"


def peer(server: RunningServer, **kwargs: Any) -> H2Peer:
    return H2Peer((server.host, server.port), **kwargs)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    """Debian's curl (built with nghttp2): ``-i`` so the status line says the protocol."""
    return subprocess.run(
        ["curl", "-sS", "-i", "--max-time", str(TIMEOUT), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
    )


def client_tls(tls_files: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=tls_files["ca"])


def tls_options(tls_files: dict[str, str]) -> dict[str, str]:
    return {"ssl_certfile": tls_files["cert"], "ssl_keyfile": tls_files["key"]}


async def respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/sleep?S``: answers after S seconds; ``/big?N``: N bytes in 64 KiB messages; ``/echo``: the
    request body; anything else: the scope's facts as JSON."""
    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/sleep":
        await asyncio.sleep(float(query or 1))
        await respond(send, 200, b"slept")
    elif path == "/big":
        size = int(query or MIB)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        body = big_body(size)
        chunk = 65536
        for offset in range(0, size, chunk):
            more = offset + chunk < size
            await send(
                {"type": "http.response.body", "body": body[offset : offset + chunk], "more_body": more}
            )
    elif path == "/echo":
        await respond(send, 200, await read_body(receive))
    else:
        facts = {
            "http_version": scope["http_version"],
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "scheme": scope["scheme"],
            "client": scope["client"],
            "server": scope["server"],
            "headers": [
                [name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]
            ],
            "extensions": sorted(scope.get("extensions") or {}),
        }
        await respond(send, 200, json.dumps(facts).encode(), [(b"content-type", b"application/json")])


def big_body(size: int) -> bytes:
    """What ``/big?size`` answers: a pattern whose period (251) no frame or chunk size divides."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]
