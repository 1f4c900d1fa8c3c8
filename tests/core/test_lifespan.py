"""Lifespan: order, state, failures and timeouts, on a real server."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

from asgi_worker import Config, Server
from tests.timing import TICK, TIMEOUT, wait_until


def lifespan_app(events, startup="complete", hang=None):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            events.append(message["type"])
            if hang == "startup":
                await asyncio.sleep(10 * TIMEOUT)  # hangs
            if startup == "failed":
                await send({"type": "lifespan.startup.failed", "message": "nope"})
                return
            if startup == "raise":
                raise RuntimeError("no lifespan here")
            scope["state"]["db"] = {"connections": 1}
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            events.append(message["type"])
            if hang == "shutdown":
                await asyncio.sleep(10 * TIMEOUT)  # hangs
            await send({"type": "lifespan.shutdown.complete"})
            return
        events.append(("request", scope["path"]))
        state = scope["state"]
        state.setdefault("mine", []).append(scope["path"])
        body = f"{sorted(state)} {state.get('db') is not None}".encode()
        if scope["path"] == "/slow":
            await asyncio.sleep(3 * TICK)  # still in flight when the test stops the server
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        events.append(("answered", scope["path"]))

    return app


def test_order_and_state_copy(serve):
    events = []
    with serve(lifespan_app(events), lifespan="on") as srv:
        first = httpx.get(srv.url + "/a", timeout=TIMEOUT).text
        second = httpx.get(srv.url + "/b", timeout=TIMEOUT).text
    assert first == second == "['db', 'mine'] True"  # "mine" from /a is not seen by /b
    assert events == [
        "lifespan.startup",
        ("request", "/a"),
        ("answered", "/a"),
        ("request", "/b"),
        ("answered", "/b"),
        "lifespan.shutdown",
    ]


def test_shutdown_after_drain(serve):
    events = []
    with serve(lifespan_app(events), lifespan="on") as srv:
        result = []
        thread = threading.Thread(target=lambda: result.append(httpx.get(srv.url + "/slow", timeout=TIMEOUT)))
        thread.start()
        assert wait_until(lambda: ("request", "/slow") in events), "the request never reached the app"
    thread.join(TIMEOUT)
    assert result[0].status_code == 200
    # The server stopped while /slow was in the app: lifespan shutdown came only once it was answered.
    assert events == ["lifespan.startup", ("request", "/slow"), ("answered", "/slow"), "lifespan.shutdown"]


def start(app, **kwargs):
    """Run startup only; return whether the server started, and how long it took."""
    config = Config(app, port=0, log_config=None, **kwargs)
    server = Server(config)

    async def main():
        began = time.monotonic()
        await server.serve()
        return time.monotonic() - began

    return server, asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_startup_failed_does_not_start():
    server, _ = start(lifespan_app([], startup="failed"), lifespan="on")
    assert not server.started
    server, _ = start(lifespan_app([], startup="failed"), lifespan="auto")
    assert not server.started


def test_raising_app_auto_serves_on_does_not_start(serve):
    with serve(lifespan_app([], startup="raise"), lifespan="auto") as srv:
        assert httpx.get(srv.url + "/", timeout=TIMEOUT).status_code == 200
    server, _ = start(lifespan_app([], startup="raise"), lifespan="on")
    assert not server.started


def test_startup_timeout():
    timeout = 3 * TICK
    server, took = start(lifespan_app([], hang="startup"), lifespan="on", timeout_lifespan_startup=timeout)
    assert not server.started
    assert timeout - TICK / 2 < took < timeout + 10 * TICK  # it waited for the timeout, no longer


def test_shutdown_timeout(serve):
    timeout = 3 * TICK
    events = []
    with serve(
        lifespan_app(events, hang="shutdown"), lifespan="on", timeout_lifespan_shutdown=timeout
    ) as srv:
        assert httpx.get(srv.url + "/", timeout=TIMEOUT).status_code == 200
        began = time.monotonic()
    took = time.monotonic() - began
    assert events[-1] == "lifespan.shutdown"  # the app got the message, and never answered it
    assert timeout - TICK / 2 < took < timeout + 10 * TICK  # the server waited for the timeout, no longer
