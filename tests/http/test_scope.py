"""The ASGI ``http`` scope, asserted as exact dicts, from requests sent over real sockets.

The rules are in ``http/scope.py``: percent-decoded UTF-8 ``path``, undecoded ``raw_path`` without the
query, ``root_path`` prefixed to both (as uvicorn does), headers lowercased in arrival order, and
``state`` a fresh shallow copy of the lifespan state for each request.
"""

from __future__ import annotations

import copy

import pytest

from tests.conftest import read_until
from tests.timing import TIMEOUT

ASGI = {"version": "3.0", "spec_version": "2.4"}


def scope_recorder():
    """An app that records a deep copy of each request scope (before anything mutates it)."""
    scopes: list[dict] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await lifespan(scope, receive, send)
            return
        scopes.append(copy.deepcopy(scope))
        while (await receive())["more_body"]:
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app, scopes


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["db"] = "connection"
            scope["state"]["shared"] = ["one"]
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


def request_scope(serve, request: bytes, **config) -> tuple[dict, dict]:
    """Send one raw request; return the scope the app saw and the socket facts to compare with."""
    app, scopes = scope_recorder()
    with serve(app, **config) as srv, srv.connect() as sock:
        sock.sendall(request)
        assert read_until(sock, b"\r\n\r\nok").endswith(b"\r\n\r\nok")
        facts = {"client": sock.getsockname(), "server": ("127.0.0.1", srv.port)}
    assert len(scopes) == 1
    return scopes[0], facts


def test_get_scope(serve):
    request = (
        b"GET /caf%C3%A9/x%20y?a=1&b=%C3%A9&c HTTP/1.1\r\n"
        b"Host: example.com\r\nX-Dup: 1\r\nUser-Agent: test\r\nX-DUP: 2\r\n"
        b"X-Mixed-Case: Value With Case\r\n\r\n"
    )
    scope, facts = request_scope(serve, request)
    assert scope == {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.1",
        "server": facts["server"],
        "client": facts["client"],
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/café/x y",
        "raw_path": b"/caf%C3%A9/x%20y",
        "query_string": b"a=1&b=%C3%A9&c",
        "headers": [
            (b"host", b"example.com"),
            (b"x-dup", b"1"),
            (b"user-agent", b"test"),
            (b"x-dup", b"2"),
            (b"x-mixed-case", b"Value With Case"),
        ],
        "state": {},
    }
    assert facts["client"][0] == "127.0.0.1"


def test_http10_post_scope(serve):
    request = b"POST /submit HTTP/1.0\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nabc"
    scope, facts = request_scope(serve, request)
    assert scope == {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.0",
        "server": facts["server"],
        "client": facts["client"],
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/submit",
        "raw_path": b"/submit",
        "query_string": b"",
        "headers": [(b"content-length", b"3"), (b"content-type", b"text/plain")],
        "state": {},
    }


@pytest.mark.parametrize(
    "target, path, raw_path, query",
    [
        (b"/", "/", b"/", b""),
        (b"/?", "/", b"/", b""),
        (b"/a%2Fb", "/a/b", b"/a%2Fb", b""),
        (b"/%E2%82%AC?x=%E2%82%AC", "/€", b"/%E2%82%AC", b"x=%E2%82%AC"),
        (b"/a+b?q=a+b", "/a+b", b"/a+b", b"q=a+b"),
        (b"/p?a=1?b=2", "/p", b"/p", b"a=1?b=2"),
        (b"http://example.com/p?q=1", "/p", b"/p", b"q=1"),
        (b"http://example.com:8080/a/b", "/a/b", b"/a/b", b""),
        (b"http://example.com", "/", b"/", b""),
        (b"http://example.com?q=1", "/", b"/", b"q=1"),
    ],
)
def test_target_forms(serve, target, path, raw_path, query):
    scope, _facts = request_scope(serve, b"GET %b HTTP/1.1\r\nHost: example.com\r\n\r\n" % target)
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == (path, raw_path, query)


def test_root_path_prefixes_path_and_raw_path(serve):
    request = b"GET /users/caf%C3%A9?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    scope, facts = request_scope(serve, request, root_path="/api")
    assert scope == {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.1",
        "server": facts["server"],
        "client": facts["client"],
        "scheme": "http",
        "method": "GET",
        "root_path": "/api",
        "path": "/api/users/café",
        "raw_path": b"/api/users/caf%C3%A9",
        "query_string": b"x=1",
        "headers": [(b"host", b"x")],
        "state": {},
    }


def test_root_path_with_absolute_form_target(serve):
    request = b"GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    scope, _facts = request_scope(serve, request, root_path="/api")
    assert (scope["root_path"], scope["path"], scope["raw_path"], scope["query_string"]) == (
        "/api",
        "/api/p",
        b"/api/p",
        b"q=1",
    )


# Per-request freshness


def mutating_app():
    """Records each request's state, then mutates everything in its scope that a later request could see."""
    seen: list = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await lifespan(scope, receive, send)
            return
        seen.append(copy.deepcopy({key: scope[key] for key in ("state", "asgi", "headers")}))
        assert isinstance(scope["state"], dict)
        scope["state"]["db"] = "replaced"
        scope["state"]["request_only"] = True
        scope["headers"].append((b"x-added", b"1"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app, seen


@pytest.mark.parametrize("lifespan_mode", ["on", "off"])
def test_state_is_a_fresh_copy_per_request(serve, lifespan_mode):
    app, seen = mutating_app()
    with serve(app, lifespan=lifespan_mode) as srv:
        for _ in range(2):  # two connections...
            with srv.connect() as sock:
                for _ in range(2):  # ...of two requests each
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert read_until(sock, b"\r\n\r\nok", TIMEOUT).endswith(b"ok")
    initial = {"db": "connection", "shared": ["one"]} if lifespan_mode == "on" else {}
    assert [entry["state"] for entry in seen] == [initial] * 4
    assert [entry["headers"] for entry in seen] == [[(b"host", b"x")]] * 4


def test_asgi_dict_is_not_shared_between_requests(serve):
    seen: list = []
    mutated: list = []

    async def app(scope, receive, send):
        seen.append(dict(scope["asgi"]))
        scope["asgi"]["mutated"] = True  # a careless middleware
        mutated.append(scope["asgi"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    try:
        with serve(app) as srv, srv.connect() as sock:
            for _ in range(2):
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_until(sock, b"\r\n\r\nok").endswith(b"ok")
        assert seen == [ASGI, ASGI]
    finally:
        for asgi in mutated:  # undo the mutation, in case that dict is the server's own constant
            asgi.pop("mutated", None)
