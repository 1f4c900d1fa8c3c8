"""Shared fixtures: a real in-process server on a loopback port, over every loop x parser pair.

Every test that uses ``serve`` fails if the server's event loop reported an unhandled error, and the
whole session fails if a child process outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
import trustme

from asgi_worker import Config, Server
from asgi_worker.loops import loop_factory
from tests.timing import TICK, TIMEOUT

BACKENDS = [
    pytest.param(("asyncio", "h11"), id="asyncio-h11"),
    pytest.param(("asyncio", "httptools"), id="asyncio-httptools"),
    pytest.param(("uvloop", "h11"), id="uvloop-h11"),
    pytest.param(("uvloop", "httptools"), id="uvloop-httptools"),
]


class RunningServer:
    """A server running in a background thread; ``port`` is the real port of its port-0 bind."""

    def __init__(
        self, server: Server, port: int, loop_errors: list[dict[str, Any]], host: str = "127.0.0.1"
    ) -> None:
        self.server = server
        self.port = port
        self.loop_errors = loop_errors
        self.host = host

    @property
    def url(self) -> str:
        scheme = "https" if self.server.config.is_ssl else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def connect(self, timeout: float = TIMEOUT) -> socket.socket:
        """A raw client socket, for exact bytes."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock


@contextlib.contextmanager
def run_server(app: Any, loop: str = "asyncio", http: str = "h11", **kwargs: Any) -> Iterator[RunningServer]:
    """Serve ``app`` on 127.0.0.1:0 (or ``host=...``) in a thread; stop gracefully (bounded) on exit."""
    kwargs.setdefault("lifespan", "off")
    kwargs.setdefault("log_config", None)
    kwargs.setdefault("host", "127.0.0.1")
    kwargs.setdefault("port", 0)
    # The variable that sets --eager-start for the command sets it for these servers too: CI's
    # Python 3.12 pass runs the protocol suites with it (.ci/run).
    kwargs.setdefault("eager_start", os.environ.get("ASGI_WORKER_EAGER_START") == "1")
    config = Config(app, loop=loop, http=http, **kwargs)
    server = Server(config)
    loop_errors: list[dict[str, Any]] = []
    started = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        event_loop = loop_factory(loop)()
        event_loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
        asyncio.set_event_loop(event_loop)

        async def main() -> None:
            task = asyncio.ensure_future(server.serve())
            while not server.started and not task.done():
                await asyncio.sleep(TICK / 20)
            started.set()
            await task

        try:
            event_loop.run_until_complete(main())
        except BaseException as exc:  # reported to the test thread
            failure.append(exc)
        finally:
            started.set()
            event_loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert started.wait(TIMEOUT), "server did not start"
    if failure or not server.started:
        thread.join(TIMEOUT)
        raise RuntimeError(f"server failed to start: {failure}")
    port = server.servers[0].sockets[0].getsockname()[1] if config.uds is None else 0
    try:
        yield RunningServer(server, port, loop_errors, config.host)
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "server did not stop"
    if failure:
        raise failure[0]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(loop, http) for every combination; tests take it to run on all four."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def serve(backend: tuple[str, str]) -> Iterator[Callable[..., Any]]:
    """``with serve(app, **config) as srv:`` runs a server on every backend; loop errors fail the test."""
    servers: list[RunningServer] = []

    @contextlib.contextmanager
    def start(app: Any, **kwargs: Any) -> Iterator[RunningServer]:
        loop, http = backend
        kwargs.setdefault("loop", loop)
        kwargs.setdefault("http", http)
        with run_server(app, **kwargs) as running:
            servers.append(running)
            yield running

    yield start
    for running in servers:
        assert not running.loop_errors, f"event loop reported errors: {running.loop_errors}"


@pytest.fixture(autouse=True)
def no_stray_children() -> Iterator[None]:
    """Every child process a test starts must be gone when it ends."""
    yield
    children = psutil.Process().children(recursive=True)
    if children:
        _gone, alive = psutil.wait_procs(children, timeout=TIMEOUT)
        for child in alive:
            child.kill()
        assert not alive, f"test left processes behind: {[c.pid for c in alive]}"


def read_response(sock: socket.socket, timeout: float = TIMEOUT) -> bytes:
    """Everything the server sends until it closes the connection.

    A reset counts as a close (the server closed with our unread bytes in its buffer). A connection
    still open after ``timeout`` fails the test: "the server closed" is what callers assert.
    """
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            sock.settimeout(max(deadline - time.monotonic(), TICK / 10))
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server did not close the connection within {timeout} s; received {data!r}")
    return data


def read_until(sock: socket.socket, marker: bytes, timeout: float = TIMEOUT) -> bytes:
    """Read until ``marker`` has arrived or the server closes; fails the test after ``timeout``."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while marker not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            sock.settimeout(max(deadline - time.monotonic(), TICK / 10))
    except TimeoutError:
        pytest.fail(f"{marker!r} did not arrive within {timeout} s; received {data!r}")
    return data


def assert_silent(sock: socket.socket, seconds: float) -> None:
    """The server sends nothing and keeps the connection open for ``seconds``.

    For tests whose point is "no answer yet": the wait is the behaviour under test, so it is a
    fixed time on purpose; a byte or a close within it fails the test.
    """
    sock.settimeout(seconds)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return
    what = f"sent {data!r}" if data else "closed the connection"
    pytest.fail(f"expected silence for {seconds} s, but the server {what}")


def read_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes (the length of the response the test expects), or what came before EOF."""
    sock.settimeout(TIMEOUT)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A server certificate for 127.0.0.1 and localhost, its key, and the CA that signed it (paths)."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    files = {"cert": folder / "cert.pem", "key": folder / "key.pem", "ca": folder / "ca.pem"}
    files["cert"].write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    files["key"].write_bytes(issued.private_key_pem.bytes())
    files["ca"].write_bytes(ca.cert_pem.bytes())
    return {name: str(path) for name, path in files.items()}


@pytest.fixture
def llhttp_reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The target of every head llhttp reads (``build_head`` runs once per head llhttp reads, never for
    a head the httptools adapter serves from its memo, ``parse_httptools._Repeat``)."""
    from asgi_worker.http import parse_httptools
    from asgi_worker.http.events import RequestHead
    from asgi_worker.http.headers import build_head
    from asgi_worker.http.limits import RequestLimits

    targets: list[bytes] = []

    def spy(
        method: str, target: bytes, version: str, headers: list[tuple[bytes, bytes]], limits: RequestLimits
    ) -> RequestHead:
        targets.append(target)
        return build_head(method, target, version, headers, limits)

    monkeypatch.setattr(parse_httptools, "build_head", spy)
    return targets
