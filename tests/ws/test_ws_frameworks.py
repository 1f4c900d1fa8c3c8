"""Starlette, FastAPI and Django Channels WebSocket routes served for real on every backend: echo,
subprotocol, close codes, a denial response, lifespan state. (Without ``channels`` installed, its
test is skipped.)"""

from __future__ import annotations

import contextlib

import pytest
from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect, WebSocketException, status
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests import django_project
from tests.timing import TIMEOUT
from tests.ws.apps import Recorder, client


def starlette_app(recorder):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import WebSocketRoute

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield {"greeting": "hello"}

    async def echo(websocket: WebSocket):
        chosen = "v2" if "v2" in websocket.scope["subprotocols"] else None
        await websocket.accept(subprotocol=chosen)
        await websocket.send_text(f"{websocket.state.greeting} {websocket.query_params.get('name')}")
        try:
            while True:
                text = await websocket.receive_text()
                if text == "quit":
                    await websocket.close(code=4002, reason="asked to")
                    return
                await websocket.send_text(text[::-1])
        except WebSocketDisconnect as exc:
            recorder.add(exc.code)

    async def binary(websocket: WebSocket):
        await websocket.accept()
        data = await websocket.receive_bytes()
        await websocket.send_bytes(data * 2)
        await websocket.close()

    async def denied(websocket: WebSocket):
        await websocket.send_denial_response(PlainTextResponse("members only", status_code=401))

    async def closed(websocket: WebSocket):
        await websocket.close(code=1008)

    routes = [
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/binary", binary),
        WebSocketRoute("/denied", denied),
        WebSocketRoute("/closed", closed),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def fastapi_app(recorder):  # its imports are module level: FastAPI resolves string annotations there
    app = FastAPI()

    def token(websocket: WebSocket) -> str:
        value = websocket.query_params.get("token")
        if value != "t0k":
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
        return value

    @app.websocket("/items/{item_id}")
    async def items(websocket: WebSocket, item_id: int, tok: str = Depends(token)):
        await websocket.accept(subprotocol=(websocket.scope["subprotocols"] or [None])[0])
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"item_id": item_id, "token": tok, "got": data})
        except WebSocketDisconnect as exc:
            recorder.add(exc.code)

    @app.websocket("/bye")
    async def bye(websocket: WebSocket):
        await websocket.accept()
        await websocket.close(code=4003)

    return app


def test_starlette_echo_with_lifespan_state_and_subprotocol(serve):
    recorder = Recorder()
    with serve(starlette_app(recorder), lifespan="on") as srv:
        with client(srv, "/echo?name=ada", subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
            assert ws.recv(timeout=TIMEOUT) == "hello ada"
            ws.send("stressed")
            assert ws.recv(timeout=TIMEOUT) == "desserts"
            ws.close(4000, "done")
        assert recorder.wait_len(1) == [4000]


def test_starlette_app_close_code(serve):
    with serve(starlette_app(Recorder()), lifespan="on") as srv, client(srv, "/echo") as ws:
        assert ws.recv(timeout=TIMEOUT) == "hello None"
        ws.send("quit")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (4002, "asked to")


def test_starlette_bytes(serve):
    with serve(starlette_app(Recorder()), lifespan="on") as srv, client(srv, "/binary") as ws:
        ws.send(b"ab")
        assert ws.recv(timeout=TIMEOUT) == b"abab"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1000


def test_starlette_denial_response(serve):
    with serve(starlette_app(Recorder()), lifespan="on") as srv, pytest.raises(InvalidStatus) as caught:
        client(srv, "/denied").__enter__()  # raises before a connection exists: nothing to close
    assert caught.value.response.status_code == 401
    assert caught.value.response.body == b"members only"


@pytest.mark.parametrize("path", ["/closed", "/nowhere"])
def test_starlette_close_before_accept_is_403(serve, path):
    with serve(starlette_app(Recorder()), lifespan="on") as srv, pytest.raises(InvalidStatus) as caught:
        client(srv, path).__enter__()
    assert caught.value.response.status_code == 403


def test_fastapi_route_with_dependency(serve):
    recorder = Recorder()
    with serve(fastapi_app(recorder)) as srv:
        with client(srv, "/items/7?token=t0k", subprotocols=["json"]) as ws:
            assert ws.subprotocol == "json"
            ws.send('{"a": 1}')
            assert ws.recv(timeout=TIMEOUT) == '{"item_id":7,"token":"t0k","got":{"a":1}}'
        assert recorder.wait_len(1) == [1000]


def test_fastapi_dependency_refuses(serve):
    with serve(fastapi_app(Recorder())) as srv, pytest.raises(InvalidStatus) as caught:
        client(srv, "/items/7?token=wrong").__enter__()
    assert caught.value.response.status_code == 403


def test_fastapi_close_code(serve):
    with serve(fastapi_app(Recorder())) as srv, client(srv, "/bye") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 4003


def test_django_channels_consumer(serve):
    pytest.importorskip("channels", reason="Django Channels is not installed")
    disconnects = Recorder()
    with serve(django_project.channels_application(disconnects)) as srv:
        with client(srv, "/ws/room/lobby/", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.recv(timeout=TIMEOUT) == "welcome to lobby"
            ws.send("hello")
            assert ws.recv(timeout=TIMEOUT) == "lobby: HELLO"
            ws.send(b"abc")
            assert ws.recv(timeout=TIMEOUT) == b"cba"
            ws.close(4000, "done")
        assert disconnects.wait_len(1) == [4000]
        with client(srv, "/ws/room/attic/") as ws:
            assert ws.subprotocol is None
            assert ws.recv(timeout=TIMEOUT) == "welcome to attic"
            ws.send("bye")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
            assert ws.close_code == 4004
        assert disconnects.wait_len(2) == [4000, 4004]
