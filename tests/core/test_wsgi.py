"""``--interface wsgi`` over real sockets on every backend (rules in ``asgi_worker/wsgi.py``).

WSGI apps run in the adapter's worker threads; they report to the test thread through lists and
``threading.Event``s, which the test waits on for at most ``TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import sys
import threading
import time

import flask
import httpx
import pytest

from asgi_worker.apploader import load_app
from asgi_worker.wsgi import WSGIAdapter, WSGIInput
from tests.cli.test_cli import server as cli_server
from tests.conftest import read_exact, read_response, read_until
from tests.core.test_app_faults import ERROR_500
from tests.timing import TICK, TIMEOUT, wait_until

EXACT = {"server_header": False, "date_header": False, "interface": "wsgi"}
GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def exchange(srv, request=GET):
    with srv.connect() as sock:
        sock.sendall(request)
        return read_response(sock)


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Thing", "1")])
    return [b"hello"]


ENVIRON_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_PROTOCOL",
    "HTTP_HOST",
    "HTTP_X_MULTI",
    "HTTP_X_DASHED_NAME",
    "wsgi.version",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "wsgi.input_terminated",
)


def echo_environ(environ, start_response):
    seen = {key: environ[key] for key in ENVIRON_KEYS if key in environ}
    seen["body"] = environ["wsgi.input"].read().decode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


# The basics


def test_status_headers_body_and_head(serve):
    with serve(hello, **EXACT) as srv:
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-thing: 1\r\ncontent-length: 5\r\n"
            b"connection: close\r\n\r\n"
        )
        assert exchange(srv) == head + b"hello"
        assert exchange(srv, GET.replace(b"GET", b"HEAD")) == head


def test_custom_status_and_empty_body(serve):
    def app(environ, start_response):
        start_response("404 Not Found", [("X-Why", "gone")])
        return []

    with serve(app, **EXACT) as srv:
        assert exchange(srv) == (
            b"HTTP/1.1 404 Not Found\r\nx-why: gone\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )


def test_environ_from_scope(serve):
    request = (
        b"POST /a%20b/%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 4\r\nX-Multi: a\r\nX-Multi: b\r\n"
        b"X-Dashed-Name: v\r\nConnection: close\r\n\r\nbody"
    )
    with serve(echo_environ, root_path="/app", **EXACT) as srv, srv.connect() as sock:
        sock.sendall(request)
        data = read_response(sock)
        client_port = sock.getsockname()[1]
    environ = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert environ == {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/a b/\xc3\xa9",  # PEP 3333: the UTF-8 bytes of "/a b/é", as latin-1
        "QUERY_STRING": "x=1&y=%20",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "4",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(srv.port),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": str(client_port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.com:8080",
        "HTTP_X_MULTI": "a,b",
        "HTTP_X_DASHED_NAME": "v",
        "wsgi.version": [1, 0],
        "wsgi.url_scheme": "http",
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "body": "body",
    }


def test_environ_without_root_path_or_body(serve):
    with serve(echo_environ, **EXACT) as srv:
        environ = json.loads(exchange(srv, b"GET /x HTTP/1.0\r\n\r\n").split(b"\r\n\r\n", 1)[1])
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"] == "/x" and environ["QUERY_STRING"] == ""
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0" and environ["body"] == ""
    assert "CONTENT_TYPE" not in environ and "CONTENT_LENGTH" not in environ and "HTTP_HOST" not in environ


def test_wsgi_errors_go_to_the_error_log(serve, caplog):
    def app(environ, start_response):
        print("from the app", file=environ["wsgi.errors"])
        environ["wsgi.errors"].flush()
        start_response("200 OK", [])
        return [b""]

    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(app, **EXACT) as srv:
        assert exchange(srv).startswith(b"HTTP/1.1 200 OK\r\n")
    assert [r.getMessage() for r in caplog.records if r.name == "asgi_worker.error"] == ["from the app"]


# Flask


def flask_app():
    app = flask.Flask(__name__)

    @app.get("/hello/<name>")
    def greet(name):
        return f"Hello {name} at {flask.request.script_root}{flask.request.path}"

    @app.post("/form")
    def form():
        return {"form": flask.request.form.to_dict(), "args": flask.request.args.to_dict()}

    @app.post("/json")
    def post_json():
        return {"got": flask.request.get_json(), "length": flask.request.content_length}

    return app


def test_flask_routes_form_and_json(serve):
    with (
        serve(flask_app(), interface="wsgi", root_path="/app") as srv,
        httpx.Client(timeout=TIMEOUT) as client,
    ):
        response = client.get(f"{srv.url}/hello/w%C3%B6rld")
        assert response.status_code == 200 and response.text == "Hello wörld at /app/hello/wörld"
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        response = client.post(f"{srv.url}/form?q=1", data={"a": "1", "b": "two"})
        assert response.json() == {"form": {"a": "1", "b": "two"}, "args": {"q": "1"}}
        response = client.post(f"{srv.url}/json", json={"x": [1, 2]})
        assert response.json() == {"got": {"x": [1, 2]}, "length": 11}
        # Chunked, no Content-Length: Flask reads it because the server marks wsgi.input_terminated.
        response = client.post(
            f"{srv.url}/json", content=iter([b'{"x":', b" 3}"]), headers={"content-type": "application/json"}
        )
        assert response.json() == {"got": {"x": 3}, "length": None}
        assert client.get(f"{srv.url}/missing").status_code == 404


# Streamed request bodies


def progress_app(got_first: threading.Event):
    def app(environ, start_response):
        first = environ["wsgi.input"].read(5)
        got_first.set()
        rest = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [first + b"|" + rest]

    return app


@pytest.mark.parametrize(
    ("framing", "first", "rest"),
    [
        (b"Content-Length: 10", b"hello", b"world"),
        (b"Transfer-Encoding: chunked", b"5\r\nhello\r\n", b"5\r\nworld\r\n0\r\n\r\n"),
    ],
    ids=["content-length", "chunked"],
)
def test_app_reads_first_part_before_the_rest_is_sent(serve, framing, first, rest):
    got_first = threading.Event()
    with serve(progress_app(got_first), **EXACT) as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n" + first)
        assert got_first.wait(TIMEOUT), "the app did not see the first part on its own"
        sock.sendall(rest)
        expected = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello|world"
        assert read_exact(sock, len(expected)) == expected


def test_large_upload_is_read_in_pieces(serve):
    reads: list[int] = []

    def app(environ, start_response):
        digest = hashlib.sha256()
        stream = environ["wsgi.input"]
        while chunk := stream.read(65536):
            reads.append(len(chunk))
            digest.update(chunk)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"length": sum(reads), "sha256": digest.hexdigest()}).encode()]

    payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    with serve(app, interface="wsgi") as srv:
        response = httpx.post(srv.url, content=payload, timeout=TIMEOUT * 4)
    assert response.json() == {"length": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    assert len(reads) >= len(payload) // 65536


def test_readline_and_iteration(serve):
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        lines = [stream.readline(), stream.readline(3), stream.readline(), *stream.readlines(1)]
        lines += list(stream)
        start_response("200 OK", [])
        return [json.dumps([line.decode() for line in lines]).encode()]

    body = b"one\ntwo-long\nthree\nfour\nfive\nsix"
    with serve(app, interface="wsgi") as srv:
        response = httpx.post(srv.url, content=iter([body[:6], body[6:20], body[20:]]), timeout=TIMEOUT)
    assert response.json() == ["one\n", "two", "-long\n", "three\n", "four\n", "five\n", "six"]


def test_expect_continue_only_when_the_app_reads(serve):
    def app(environ, start_response):
        body = environ["wsgi.input"].read() if environ["PATH_INFO"] == "/read" else b"skipped"
        start_response("200 OK", [])
        return [body]

    head = (
        b"POST %b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n"
    )
    with serve(app, **EXACT) as srv:
        with srv.connect() as sock:
            sock.sendall(head % b"/read")
            assert read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"ok")
            assert read_response(sock).endswith(b"\r\n\r\nok")
        with srv.connect() as sock:
            sock.sendall(head % b"/skip")
            data = read_response(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"skipped")


def test_input_file_api_unit():
    chunks = [b"ab", b"c\nde", b"f\n", b"g"]
    stream = WSGIInput(lambda: chunks.pop(0) if chunks else b"")
    assert stream.read(1) == b"a"
    assert stream.readline() == b"bc\n"
    assert stream.read(0) == b""
    assert stream.readline(1) == b"d"
    assert stream.readlines() == [b"ef\n", b"g"]
    assert stream.read() == b"" and stream.readline() == b"" and list(stream) == []


# Responses


class Recorded:
    """An iterable response that records whether the server closed it."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.closed = threading.Event()

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed.set()


def test_generator_is_streamed_chunked(serve):
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"one"
        yield b""  # skipped: an empty chunk would end chunked framing
        yield b"two"

    with serve(app, **EXACT) as srv:
        assert exchange(srv) == (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
        )


def test_write_callable_then_iterable_and_close(serve):
    recorded = Recorded([b"cd"])

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"ab")
        return recorded

    with serve(app, **EXACT) as srv:
        assert exchange(srv) == (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"
        )
    assert recorded.closed.is_set()


def test_close_called_when_client_disconnects_mid_response(serve):
    sent: list[int] = []
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            for index in range(100_000):
                sent.append(index)
                yield b"x" * 1024
                time.sleep(TICK / 20)  # paced like a slow producer, so the client leaves mid-stream
        finally:
            closed.set()  # runs when the server calls the generator's close()

    with serve(app, interface="wsgi") as srv:
        with srv.connect() as sock:
            sock.sendall(GET)
            assert b"\r\n\r\n" in read_until(sock, b"\r\n\r\n")
        assert closed.wait(TIMEOUT), "the app's iterable was not closed after the client left"
        assert len(sent) < 100_000  # closed generators yield no more: it stopped early


def test_loop_stays_free_while_a_request_blocks(serve):
    release = threading.Event()
    entered = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            release.wait(TIMEOUT)  # blocks its worker thread, not the loop
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    with serve(app, interface="wsgi") as srv, srv.connect() as slow:
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert entered.wait(TIMEOUT)
        started = time.monotonic()
        assert httpx.get(f"{srv.url}/fast", timeout=TIMEOUT).text == "/fast"
        assert time.monotonic() - started < TIMEOUT / 2 and not release.is_set()
        release.set()
        assert read_response(slow).endswith(b"\r\n\r\n/slow")


def test_request_abandoned_at_shutdown_fails_its_next_step(serve):
    entered = threading.Event()
    release = threading.Event()
    outcome: list[BaseException] = []
    done = threading.Event()

    def app(environ, start_response):
        entered.set()
        release.wait(TIMEOUT)  # still busy when the graceful timeout cancels its task
        try:
            start_response("200 OK", [])(b"late")
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            done.set()
        return []

    with serve(app, interface="wsgi", timeout_graceful_shutdown=TICK) as srv, srv.connect() as sock:
        sock.sendall(GET)
        assert entered.wait(TIMEOUT)
        srv.server.should_exit = True
        assert read_response(sock) == b""  # cancelled before a byte was written: just closed
    release.set()
    assert done.wait(TIMEOUT)
    assert [type(exc).__name__ for exc in outcome] == ["ClientDisconnected"]


# Failures


def test_raise_before_start_response_is_500_with_traceback(serve, caplog):
    def app(environ, start_response):
        raise RuntimeError("boom in wsgi")

    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(app, **EXACT) as srv:
        assert exchange(srv) == ERROR_500
    assert any(r.exc_info and "boom in wsgi" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize(
    "app_result",
    [
        pytest.param(lambda start_response: None, id="no-start-response"),
        pytest.param(lambda start_response: [start_response("200 OK", []), "text"][1:], id="str-body"),
        pytest.param(lambda start_response: [start_response("OK", []), b""][1:], id="bad-status"),
        pytest.param(
            lambda start_response: [start_response("200 OK", [(b"x", b"y")]), b""][1:], id="bytes-header"
        ),
    ],
)
def test_pep3333_violations_are_500(serve, app_result):
    def app(environ, start_response):
        return app_result(start_response) or []

    with serve(app, **EXACT) as srv:
        assert exchange(srv) == ERROR_500


def test_exc_info_replaces_headers_before_they_are_sent(serve):
    def app(environ, start_response):
        start_response("200 OK", [("X-Was", "ok")])
        try:
            raise ValueError("late failure")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Now", "error")], sys.exc_info())
        return [b"sorry"]

    with serve(app, **EXACT) as srv:
        assert exchange(srv) == (
            b"HTTP/1.1 503 Service Unavailable\r\nx-now: error\r\ncontent-length: 5\r\n"
            b"connection: close\r\n\r\nsorry"
        )


def test_exc_info_after_headers_sent_reraises_and_closes(serve, caplog):
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            yield b"part"
            try:
                raise ValueError("after the head")
            except ValueError:
                start_response("500 Oops", [], sys.exc_info())  # re-raises: the head is out
            yield b"never"
        finally:
            closed.set()

    with caplog.at_level(logging.ERROR, logger="asgi_worker.error"), serve(app, **EXACT) as srv:
        data = exchange(srv)
    assert data.startswith(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n4\r\npart\r\n"
    )
    assert not data.endswith(b"0\r\n\r\n") and b"never" not in data
    assert closed.is_set()
    assert any(r.exc_info and "after the head" in str(r.exc_info[1]) for r in caplog.records)


def test_second_start_response_without_exc_info_is_500(serve):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b""]

    with serve(app, **EXACT) as srv:
        assert exchange(srv) == ERROR_500


# Lifespan, websocket, loading


def wsgi_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asgi_worker-wsgi")]


def test_lifespan_answered_and_pool_stopped_at_shutdown(serve, caplog):
    before = set(wsgi_threads())
    with caplog.at_level(logging.INFO, logger="asgi_worker.error"):
        with serve(hello, interface="wsgi", lifespan="on") as srv:
            assert httpx.get(srv.url, timeout=TIMEOUT).text == "hello"
            assert set(wsgi_threads()) - before
        assert wait_until(lambda: not set(wsgi_threads()) - before), "the WSGI pool outlived the server"
    messages = [r.getMessage() for r in caplog.records]
    assert "Application startup complete." in messages and "Application shutdown complete." in messages


def test_websocket_scope_is_closed():
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    asyncio.run(WSGIAdapter(hello)({"type": "websocket"}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1000}]


def test_load_app_wraps_only_when_asked():
    assert isinstance(load_app(hello, False, "wsgi", None), WSGIAdapter)
    assert not isinstance(load_app(hello, False, "auto", None), WSGIAdapter)  # auto never guesses WSGI


def test_cli_interface_wsgi():
    with cli_server("tests.core.wsgi_apps:app", "--interface", "wsgi") as (proc, port):
        assert httpx.get(f"http://127.0.0.1:{port}/p", timeout=TIMEOUT).text == "wsgi GET /p"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
    assert "Application startup complete." in err and "Application shutdown complete." in err
