"""Sockets handed to ``Server.serve(sockets=...)``: served as they are, several at once, not closed
or unlinked by a server that did not create them."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import httpx

from asgi_worker import Config, Server
from asgi_worker.listeners import bind_tcp, bind_unix
from asgi_worker.loops import loop_factory
from tests.timing import TICK, TIMEOUT


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": repr(scope["server"]).encode()})


def serve_in_thread(server: Server, sockets: list[socket.socket], loop: str) -> threading.Thread:
    def target() -> None:
        event_loop = loop_factory(loop)()
        try:
            event_loop.run_until_complete(server.serve(sockets=sockets))
        finally:
            event_loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    for _ in range(int(TIMEOUT / TICK)):
        if server.started:
            break
        threading.Event().wait(TICK / 5)
    assert server.started
    return thread


def test_serves_several_given_sockets_at_once(backend, tmp_path):
    loop, http = backend
    v4, v6 = bind_tcp("127.0.0.1", 0, 16), bind_tcp("::1", 0, 16)
    path = str(tmp_path / "s.sock")
    unix = bind_unix(path, 16)
    server = Server(Config(hello, loop=loop, http=http, lifespan="off", log_config=None))
    thread = serve_in_thread(server, [v4, v6, unix], loop)
    try:
        port4, port6 = v4.getsockname()[1], v6.getsockname()[1]
        assert httpx.get(f"http://127.0.0.1:{port4}/", timeout=TIMEOUT).text == f"('127.0.0.1', {port4})"
        assert httpx.get(f"http://[::1]:{port6}/", timeout=TIMEOUT).text == f"('::1', {port6})"
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=TIMEOUT) as client:
            assert client.get("http://localhost/").text == f"({path!r}, None)"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert os.path.exists(path)  # not ours to unlink: the caller bound it
    for sock in (v4, v6, unix):
        sock.close()


def test_run_with_sockets_in_the_main_thread_api(tmp_path):
    """``Server.run(sockets=...)`` (the supervisor's entry) on a fresh loop, stopped from a thread."""
    sock = bind_tcp("127.0.0.1", 0, 16)
    port = sock.getsockname()[1]
    server = Server(Config(hello, lifespan="off", log_config=None, loop="asyncio"))
    answers: list[str] = []

    def client() -> None:
        for _ in range(int(TIMEOUT / TICK)):
            if server.started:
                break
            threading.Event().wait(TICK / 5)
        answers.append(httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text)
        server.should_exit = True

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    asyncio.set_event_loop(None)
    server.run(sockets=[sock])
    thread.join(TIMEOUT)
    sock.close()
    assert answers == [f"('127.0.0.1', {port})"]
