"""gunicorn's ``pre_request`` / ``post_request`` hooks under ``gunicorn -k asgi_worker.Worker``.

Real arbiters with a config file (``-c``) whose hooks append one JSON line per call to a file: the
lines are what a deployment's hooks would see, so the tests read them instead of the server's
internals. The app and the config are written to ``tmp_path`` for each test.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.gunicorn.harness import gunicorn
from tests.timing import TICK, TIMEOUT, wait_until

pytest.importorskip("gunicorn")

WORKERS = ["asgi_worker.Worker", "asgi_worker.H11Worker"]

APP = '''
import asyncio


async def app(scope, receive, send):
    """/echo answers the method, query and body size; /missing 404; /boom raises; /slow?S sleeps S
    seconds; a WebSocket is echoed until the client leaves."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        return
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("the app failed on purpose")
    if path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or 1))
    status = 404 if path == "/missing" else 200
    body = f"{scope['method']} {scope['query_string'].decode()} {size}".encode()
    headers = [(b"content-type", b"text/plain"), (b"x-hook-test", b"yes")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
'''

RECORDING_HOOKS = """
import itertools
import json
import time

LOG = {log!r}
TAGS = itertools.count()


def _note(entry):
    with open(LOG, "a") as out:
        out.write(json.dumps(entry) + "\\n")


def pre_request(worker, req):
    req.started_at = time.monotonic()
    req.tag = "%s-%s" % (worker.pid, next(TAGS))
    _note({{
        "hook": "pre", "tag": req.tag, "method": req.method, "path": req.path, "query": req.query,
        "uri": req.uri, "version": list(req.version), "scheme": req.scheme,
        "remote_addr": req.remote_addr, "headers": req.headers, "scope_type": req.scope["type"],
    }})


def post_request(worker, req, environ, resp):
    _note({{
        "hook": "post", "tag": getattr(req, "tag", None), "path": req.path,
        "elapsed": time.monotonic() - req.started_at, "status": resp.status,
        "status_code": resp.status_code, "headers": resp.headers, "sent": resp.sent,
        "response_length": resp.response_length, "duration": resp.duration,
        "environ": {{k: v for k, v in environ.items() if isinstance(v, str)}},
    }})
"""

RAISING_HOOKS = """
def pre_request(worker, req):
    raise RuntimeError("pre_request failed on purpose")


def post_request(worker, req, environ, resp):
    raise RuntimeError("post_request failed on purpose")
"""


def serve_with(tmp_path: Path, hooks: str | None, *args: str, worker: str = WORKERS[0]) -> Any:
    """A gunicorn arbiter serving ``APP`` from ``tmp_path``, with ``hooks`` as its config file."""
    (tmp_path / "hookapp.py").write_text(APP)
    options = ["--pythonpath", str(tmp_path), *args]
    if hooks is not None:
        config = tmp_path / "hooks_conf.py"
        config.write_text(hooks)
        options += ["-c", str(config)]
    return gunicorn(*options, app="hookapp:app", worker=worker)


def recording(tmp_path: Path) -> tuple[str, Path]:
    """The recording config's text, and the file its hooks write to."""
    log = tmp_path / "hooks.jsonl"
    return RECORDING_HOOKS.format(log=str(log)), log


def hook_lines(log: Path, count: int) -> list[dict[str, Any]]:
    """The hooks' lines once there are ``count`` of them: ``post_request`` may run just after the
    client has read its response, so the test waits for the lines rather than assuming them."""

    def lines() -> list[dict[str, Any]]:
        written = log.read_text().split("\n")[:-1] if log.exists() else []  # whole lines only
        return [json.loads(line) for line in written]

    wait_until(lambda: len(lines()) >= count)
    found = lines()
    assert len(found) == count, found
    return found


def request(
    conn: http.client.HTTPConnection, method: str, target: str, body: bytes | None = None, trace: str = ""
) -> tuple[int, bytes]:
    conn.request(method, target, body=body, headers={"X-Trace": trace})
    response = conn.getresponse()
    return response.status, response.read()


def pairs(lines: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each ``pre`` line with the ``post`` line of the same request (same tag), in request order;
    every line must belong to exactly one pair and each post must come after its pre."""
    pres = [line for line in lines if line["hook"] == "pre"]
    posts = {line["tag"]: line for line in lines if line["hook"] == "post"}
    assert len(posts) == len(pres) and 2 * len(pres) == len(lines), lines
    assert len({pre["tag"] for pre in pres}) == len(pres), "one pre_request line written twice"
    for pre in pres:
        assert lines.index(pre) < lines.index(posts[pre["tag"]]), lines
    return [(pre, posts[pre["tag"]]) for pre in pres]


REQUESTS = [  # method, target, body, expected status, expected response body
    ("GET", "/echo?a=1&b=two", None, 200, b"GET a=1&b=two 0"),
    ("POST", "/echo?kind=post", b"x" * 1000, 200, b"POST kind=post 1000"),
    ("GET", "/missing", None, 404, b"GET  0"),
    ("GET", "/boom?why=test", None, 500, None),
    ("GET", "/slow?0.2", None, 200, b"GET 0.2 0"),
]


@pytest.mark.parametrize("worker", WORKERS)
def test_each_request_calls_both_hooks_once_with_its_facts(tmp_path, worker):
    config, log = recording(tmp_path)
    with serve_with(tmp_path, config, worker=worker) as g:
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT)
        try:
            for index, (method, target, body, status, answer) in enumerate(REQUESTS):
                got_status, got_body = request(conn, method, target, body, trace=f"t{index}")
                assert got_status == status, (target, got_status, got_body)
                if answer is not None:
                    assert got_body == answer
        finally:
            conn.close()
        lines = hook_lines(log, 2 * len(REQUESTS))
        assert g.text().count("Exception in ASGI application") == 1  # /boom, logged by the server
    found = pairs(lines)
    for index, ((method, target, body, status, _), (pre, post)) in enumerate(
        zip(REQUESTS, found, strict=True)
    ):
        path, _, query = target.partition("?")
        assert (pre["method"], pre["path"], pre["query"], pre["uri"]) == (method, path, query, target)
        assert pre["version"] == [1, 1] and pre["scheme"] == "http" and pre["remote_addr"] == "127.0.0.1"
        assert pre["scope_type"] == "http"
        assert ["X-TRACE", f"t{index}"] in pre["headers"]
        if body is not None:
            assert ["CONTENT-LENGTH", str(len(body))] in pre["headers"]
        assert post["path"] == path and post["status"] == post["status_code"] == status
        environ = post["environ"]
        assert environ["PATH_INFO"] == path and environ["QUERY_STRING"] == query
        assert environ["REQUEST_METHOD"] == method and environ["RAW_URI"] == target
        assert environ["SERVER_PROTOCOL"] == "HTTP/1.1" and environ["REMOTE_ADDR"] == "127.0.0.1"
        assert environ["HTTP_X_TRACE"] == f"t{index}"
        # duration runs from the request head to the end of the app's call: the span the two hooks
        # saw, within a tick, and never longer than the test itself
        assert 0 < post["duration"] < TIMEOUT
        assert abs(post["duration"] - post["elapsed"]) < TICK, post
        assert post["sent"] == post["response_length"]
        if status != 500:
            assert ["x-hook-test", "yes"] in post["headers"]
            assert post["sent"] == len(REQUESTS[index][4] or b"")
    # /slow?0.2 slept that long inside the app (uvloop's millisecond timers may wake it ~1 ms early)
    assert found[-1][1]["duration"] >= 0.2 - TICK / 10


def test_pipelined_requests_get_one_pair_each(tmp_path):
    config, log = recording(tmp_path)
    with serve_with(tmp_path, config) as g:
        head = "GET /echo?n={} HTTP/1.1\r\nHost: x\r\nX-Trace: p{}\r\n\r\n"
        data = "".join(head.format(n, n) for n in range(3)).encode()
        data += b"GET /echo?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", g.port), timeout=TIMEOUT) as sock:
            sock.sendall(data)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.count(b"HTTP/1.1 200 ") == 4, answer
        found = pairs(hook_lines(log, 8))
    assert [pre["query"] for pre, _ in found] == [f"n={n}" for n in range(4)]
    assert [post["environ"]["QUERY_STRING"] for _, post in found] == [f"n={n}" for n in range(4)]


def test_a_client_that_leaves_mid_request_still_gets_post_request(tmp_path):
    config, log = recording(tmp_path)
    with serve_with(tmp_path, config) as g:
        with socket.create_connection(("127.0.0.1", g.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /slow?0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
            hook_lines(log, 1)  # pre_request ran: the request is in the app
        ((pre, post),) = pairs(hook_lines(log, 2))
    assert pre["path"] == post["path"] == "/slow"
    assert post["duration"] >= 0.3 - TICK / 10


@pytest.mark.parametrize("worker", WORKERS)
def test_a_raising_hook_is_logged_once_per_request_and_the_client_gets_its_answer(tmp_path, worker):
    count = 3
    with serve_with(tmp_path, RAISING_HOOKS, worker=worker) as g:
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT)
        try:
            for n in range(count):
                assert request(conn, "GET", f"/echo?n={n}") == (200, f"GET n={n} 0".encode())
        finally:
            conn.close()
        log = g.wait_for("Exception in post_request hook", count=count)
    assert log.count("Exception in pre_request hook") == count
    assert log.count("Exception in post_request hook") == count
    assert log.count("RuntimeError: pre_request failed on purpose") == count
    assert log.count("RuntimeError: post_request failed on purpose") == count
    assert "Exception in ASGI application" not in log


def test_a_websocket_session_does_not_call_the_hooks_per_message(tmp_path):
    from tests.ws.apps import client

    config, log = recording(tmp_path)
    with serve_with(tmp_path, config) as g:
        with client(g, "/ws?room=1") as ws:
            for n in range(5):
                ws.send(f"message {n}")
                assert ws.recv(timeout=TIMEOUT) == f"message {n}"
        # a plain request after the session: its pair is the fence after anything the session wrote
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT)
        try:
            assert request(conn, "GET", "/echo?after=ws")[0] == 200
        finally:
            conn.close()
        lines = hook_lines(log, 2)
    ws_lines = [line for line in lines if line["path"] == "/ws"]
    # The handshake is handed to the WebSocket side before any HTTP cycle starts: no hook sees it.
    assert ws_lines == [], ws_lines
    assert [(pre["path"], post["path"]) for pre, post in pairs(lines)] == [("/echo", "/echo")]


def test_without_hooks_configured_requests_are_served(tmp_path):
    with serve_with(tmp_path, None) as g:
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT)
        try:
            assert request(conn, "POST", "/echo?x=1", b"abc") == (200, b"POST x=1 3")
            assert request(conn, "GET", "/boom")[0] == 500
        finally:
            conn.close()
        log = g.wait_for("Exception in ASGI application")
    assert "_request hook" not in log


def test_gunicorns_default_pre_request_logs_at_debug(tmp_path):
    """At debug level gunicorn's default pre_request does something (a debug line), so it runs."""
    with serve_with(tmp_path, None, "--log-level", "debug") as g:
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT)
        try:
            assert request(conn, "GET", "/echo?debug=1")[0] == 200
        finally:
            conn.close()
        g.wait_for("[DEBUG] GET /echo")


class _FakeWorker:
    """What ``GunicornRequestHooks.of`` reads of a worker: ``cfg`` (gunicorn's real Config) and
    ``log.error_log``."""

    def __init__(self, level: int) -> None:
        from gunicorn.config import Config

        self.cfg = Config()
        self.log = self
        self.error_log = logging.getLogger("tests.gunicorn.hooks")
        self.error_log.setLevel(level)


def test_default_hooks_are_skipped_unless_debug_or_configured():
    from asgi_worker.gunicorn_worker import GunicornRequestHooks

    assert GunicornRequestHooks.of(_FakeWorker(logging.INFO)) is None
    assert GunicornRequestHooks.of(_FakeWorker(logging.DEBUG)) is not None  # its debug line
    worker = _FakeWorker(logging.INFO)
    worker.cfg.set("post_request", lambda worker, req, environ, resp: None)
    assert GunicornRequestHooks.of(worker) is not None
    worker = _FakeWorker(logging.WARNING)
    worker.cfg.set("pre_request", lambda worker, req: None)
    assert GunicornRequestHooks.of(worker) is not None
