"""Starlette, FastAPI and Django ASGI apps served for real, exercised with httpx on every backend."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI
from pydantic import BaseModel

from tests import django_project
from tests.timing import TIMEOUT, wait_until


def starlette_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield {"greeting": "hello"}

    async def home(request: Request):
        return PlainTextResponse(request.state.greeting)

    async def echo(request: Request):
        body = await request.body()
        return JSONResponse({"size": len(body), "query": dict(request.query_params)})

    async def stream(request: Request):
        async def chunks():
            for index in range(5):
                yield f"chunk{index};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    routes = [Route("/", home), Route("/echo", echo, methods=["POST"]), Route("/stream", stream)]
    return Starlette(routes=routes, lifespan=lifespan)


class Item(BaseModel):  # module level: FastAPI resolves string annotations against module globals
    name: str
    price: float


def token() -> str:
    return "t0k"


def fastapi_app():
    app = FastAPI()
    done: list[str] = []

    @app.get("/items/{item_id}")
    async def read(item_id: int, q: str | None = None, tok: str = Depends(token)):
        return {"item_id": item_id, "q": q, "token": tok}

    @app.post("/items")
    async def create(item: Item, tasks: BackgroundTasks):
        tasks.add_task(done.append, item.name)
        return {"name": item.name, "price": item.price}

    @app.get("/done")
    async def finished():
        return done

    return app


@pytest.fixture
def client():
    with httpx.Client(timeout=TIMEOUT) as http:
        yield http


def test_starlette(serve, client):
    with serve(starlette_app(), lifespan="on") as srv:
        assert client.get(srv.url + "/").text == "hello"
        response = client.post(srv.url + "/echo?a=1", content=b"x" * 100_000)
        assert response.json() == {"size": 100_000, "query": {"a": "1"}}
        streamed = client.get(srv.url + "/stream")
        assert streamed.text == "chunk0;chunk1;chunk2;chunk3;chunk4;"
        assert streamed.headers["transfer-encoding"] == "chunked"


def test_fastapi(serve, client):
    with serve(fastapi_app(), lifespan="on") as srv:
        assert client.get(srv.url + "/items/3?q=x").json() == {"item_id": 3, "q": "x", "token": "t0k"}
        assert client.get(srv.url + "/items/nope").status_code == 422
        created = client.post(srv.url + "/items", json={"name": "pen", "price": 1.5})
        assert created.json() == {"name": "pen", "price": 1.5}
        assert client.post(srv.url + "/items", json={"name": "pen"}).status_code == 422
        # The background task runs after the response went out: wait for it.
        assert wait_until(lambda: client.get(srv.url + "/done").json() == ["pen"]), "the task never ran"


def test_django(serve, client):
    with serve(django_project.http_application(), lifespan="off") as srv:
        assert client.get(srv.url + "/hello/?name=asgi").text == "hello asgi"
        assert client.post(srv.url + "/post/", content=b"a" * 5000).json() == {"method": "POST", "size": 5000}
        assert client.get(srv.url + "/missing/").status_code == 404
