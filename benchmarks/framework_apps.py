"""The framework rows: what most users actually deploy, a Starlette or FastAPI route.

A module of its own so that only the servers serving these rows import a framework; the plain
apps in apps.py stay free of it. Both routes are the frameworks' documented first example, async,
with nothing added, so the framework's own per-request cost is the same for every server and the
rows show how much of a real app's time the server still is.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

__all__ = ["fastapi_get", "starlette_plain"]


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


starlette_plain = Starlette(routes=[Route("/", _hello)])

fastapi_get = FastAPI()


@fastapi_get.get("/")
async def read_root():  # no return annotation: FastAPI's default path, no response model
    return {"message": "Hello, world!"}
