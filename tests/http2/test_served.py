"""HTTP/2 served over real sockets (issue 17): curl, httpx and frame-exact clients against
``--http2``, in cleartext (prior knowledge) and over TLS (ALPN), on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from hyperframe.frame import DataFrame, SettingsFrame

from asgi_worker.http2.events import ErrorCode
from tests.conftest import read_response, run_server
from tests.http2.peer import PREFACE
from tests.http2.served import (
    LOOPS,
    MIB,
    app,
    big_body,
    client_tls,
    curl,
    h2_server,
    peer,
    respond,
    tls_options,
)
from tests.http2.wire import data_frame
from tests.timing import TICK, TIMEOUT


@pytest.mark.parametrize("loop", LOOPS)
def test_curl_prior_knowledge_and_http1_share_the_cleartext_port(loop):
    with h2_server(app, loop) as server:
        h2 = curl("--http2-prior-knowledge", f"{server.url}/hello")
        h1 = curl(f"{server.url}/hello")
    assert h2.returncode == 0, h2.stderr
    assert h2.stdout.startswith("HTTP/2 200"), h2.stdout
    assert json.loads(h2.stdout.split("\n\n", 1)[1])["http_version"] == "2"
    assert h1.returncode == 0, h1.stderr
    assert h1.stdout.startswith("HTTP/1.1 200"), h1.stdout
    assert json.loads(h1.stdout.split("\n\n", 1)[1])["http_version"] == "1.1"


@pytest.mark.parametrize("loop", LOOPS)
def test_curl_over_tls_picks_its_protocol_by_alpn(loop, tls_files):
    with h2_server(app, loop, **tls_options(tls_files)) as server:
        h2 = curl("--http2", "--cacert", tls_files["ca"], f"{server.url}/tls")
        h1 = curl("--http1.1", "--cacert", tls_files["ca"], f"{server.url}/tls")
    assert h2.stdout.startswith("HTTP/2 200"), h2.stdout + h2.stderr
    facts = json.loads(h2.stdout.split("\n\n", 1)[1])
    assert (facts["http_version"], facts["scheme"], facts["extensions"]) == (
        "2",
        "https",
        ["http.response.trailers", "tls"],
    )
    assert h1.stdout.startswith("HTTP/1.1 200"), h1.stdout + h1.stderr
    assert json.loads(h1.stdout.split("\n\n", 1)[1])["http_version"] == "1.1"


@pytest.fixture(scope="module")
def mtls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA; a server certificate and a client certificate it signed, each with its key (paths)."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.test", common_name="alice, the client")
    folder = tmp_path_factory.mktemp("mtls")
    blobs = {
        "ca": ca.cert_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in server.cert_chain_pems),
        "key": server.private_key_pem.bytes(),
        "client_cert": b"".join(blob.bytes() for blob in client.cert_chain_pems),
        "client_key": client.private_key_pem.bytes(),
    }
    for name, blob in blobs.items():
        (folder / f"{name}.pem").write_bytes(blob)
    return {name: str(folder / f"{name}.pem") for name in blobs}


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (Debian's, built with nghttp2)")
@pytest.mark.parametrize("loop", LOOPS)
def test_a_required_client_certificate_over_http2(loop, mtls_files):
    """--ssl-cert-reqs 2: a client with a certificate the CA signed gets h2 by ALPN, and its
    streams the same TLS extension (its certificate included) as an HTTP/1.1 request; a client
    without one fails the handshake, never reaches the app, and costs the next client nothing."""
    seen: list[str] = []

    async def tls_scope(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append(scope["http_version"])
        facts = {"http_version": scope["http_version"], "tls": scope["extensions"]["tls"]}
        await respond(send, 200, json.dumps(facts).encode())

    settings = {
        **tls_options(mtls_files),
        "ssl_ca_certs": mtls_files["ca"],
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    trust = ("--cacert", mtls_files["ca"])
    identity = ("--cert", mtls_files["client_cert"], "--key", mtls_files["client_key"])
    with run_server(tls_scope, loop, http2=True, **settings) as server:
        h2 = curl("--http2", *trust, *identity, f"{server.url}/")
        h1 = curl("--http1.1", *trust, *identity, f"{server.url}/")
        anonymous = curl("--http2", *trust, f"{server.url}/")
        after = curl("--http2", *trust, *identity, f"{server.url}/")
    # In debug mode (only) asyncio hands the refused handshake to the loop's exception handler.
    refused = "Error on transport creation for incoming connection"
    errors = [
        e
        for e in server.loop_errors
        if e.get("message") != refused or not isinstance(e.get("exception"), ssl.SSLError)
    ]
    assert not errors, f"event loop reported errors: {errors}"
    assert h2.stdout.startswith("HTTP/2 200"), h2.stdout + h2.stderr
    assert h1.stdout.startswith("HTTP/1.1 200"), h1.stdout + h1.stderr
    over_h2, over_h1 = (json.loads(answer.stdout.split("\n\n", 1)[1]) for answer in (h2, h1))
    assert (over_h2["http_version"], over_h1["http_version"]) == ("2", "1.1")
    tls = over_h2["tls"]
    assert tls == over_h1["tls"]
    assert len(tls["client_cert_chain"]) == 1
    client_cert = Path(mtls_files["client_cert"]).read_text()
    assert ssl.PEM_cert_to_DER_cert(tls["client_cert_chain"][0]) == ssl.PEM_cert_to_DER_cert(client_cert)
    assert tls["client_cert_name"].startswith("CN=alice\\, the client"), tls["client_cert_name"]
    assert tls["client_cert_error"] is None
    assert anonymous.returncode != 0 and "HTTP/" not in anonymous.stdout, anonymous
    assert after.stdout.startswith("HTTP/2 200"), after.stdout + after.stderr
    assert seen == ["2", "1.1", "2"]


@pytest.mark.parametrize("loop", LOOPS)
def test_httpx_over_tls_gets_http2_and_the_scope(loop, tls_files):
    with (
        h2_server(app, loop, **tls_options(tls_files)) as server,
        httpx.Client(http2=True, verify=client_tls(tls_files), timeout=TIMEOUT) as client,
    ):
        answers = [client.get(f"{server.url}/a%20b/c", params={"x": "1", "y": "2"}) for _ in range(3)]
    for response in answers:
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
    facts = answers[0].json()
    assert facts["http_version"] == "2"
    assert facts["scheme"] == "https"
    assert (facts["path"], facts["raw_path"], facts["query_string"]) == ("/a b/c", "/a%20b/c", "x=1&y=2")
    assert ["host", f"127.0.0.1:{server.port}"] in facts["headers"]
    assert facts["server"] == ["127.0.0.1", server.port]


def test_the_scope_of_a_cleartext_stream():
    with h2_server(app) as server, peer(server) as client:
        extra = [(b"user-agent", b"peer"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]
        stream = client.request(b"/p%2Fq/r?k=v&k=w", b"DELETE", extra, authority=b"example.com:8000")
        response = client.response(stream)
        local = client.sock.getsockname()
    assert response.status == 200
    facts = json.loads(response.body)
    assert facts["http_version"] == "2"
    assert facts["method"] == "DELETE"
    assert (facts["path"], facts["raw_path"], facts["query_string"]) == ("/p/q/r", "/p%2Fq/r", "k=v&k=w")
    assert facts["scheme"] == "http"
    assert facts["client"] == list(local)
    assert facts["server"] == ["127.0.0.1", server.port]
    names = [name for name, _ in facts["headers"]]
    assert names[0] == "host" and facts["headers"][0][1] == "example.com:8000"
    assert not any(name.startswith(":") for name in names)
    assert ["user-agent", "peer"] in facts["headers"]


def test_response_trailers_are_served_when_the_scope_offers_them():
    seen: list[dict[str, Any]] = []

    async def trailers(scope, receive, send):
        seen.append(scope)
        if "http.response.trailers" not in scope.get("extensions", {}):
            await respond(send, 200, b"no trailers")
            return
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"42")]})

    with h2_server(trailers) as server, peer(server) as client:
        response = client.response(client.request(b"/", extra=[(b"te", b"trailers")]))
    if "http.response.trailers" not in seen[0].get("extensions", {}):
        pytest.skip("the scope does not offer http.response.trailers: not served yet")
    assert (bytes(response.body), response.trailers) == (b"data", [(b"x-checksum", b"42")])


@pytest.mark.parametrize("loop", LOOPS)
def test_a_slow_reader_holds_the_upload_to_the_stream_window(loop):
    """5 MiB read slowly: each read finds at most the server's stream window (256 KiB) buffered,
    the client is never further ahead of the app than that window plus the chunk it is sending,
    and the app gets every byte, in order."""
    window, total, chunk = 256 * 1024, 5 * MIB, 64 * 1024
    produced = [0]
    ahead: list[int] = []  # before each read: bytes the client produced that the app has not read
    reads: list[int] = []
    body = big_body(total)

    def upload() -> Iterator[bytes]:
        for offset in range(0, total, chunk):
            produced[0] = offset + chunk
            yield body[offset : offset + chunk]

    async def slow_reader(scope, receive, send):
        received = bytearray()
        while True:
            message = await receive()
            ahead.append(produced[0] - len(received))
            reads.append(len(message["body"]))
            received += message["body"]
            if not message["more_body"]:
                break
            await asyncio.sleep(0.02)
        await respond(send, 200, b"%d %s" % (len(received), b"same" if received == body else b"differs"))

    with (
        h2_server(slow_reader, loop) as server,
        httpx.Client(http1=False, http2=True, timeout=TIMEOUT * 4) as client,
    ):
        response = client.post(f"{server.url}/upload", content=upload())
    assert response.http_version == "HTTP/2"
    assert response.text == f"{total} same"
    assert max(reads) <= window, max(reads)
    assert max(ahead) <= window + chunk, max(ahead)
    assert max(reads) > window // 2, "the client was never ahead: the test did not test the window"


@pytest.mark.parametrize("loop", LOOPS)
def test_a_stream_without_window_stalls_alone(loop):
    """Stream 1's response waits for the client's window (1024 bytes); stream 3 is served meanwhile;
    once the window opens stream 1 gets all of its 1 MiB."""
    with (
        h2_server(app, loop) as server,
        peer(server, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1024}) as client,
    ):
        client.hold.add(1)
        first = client.request(b"/big?%d" % MIB)
        stalled = client.streams[first]
        assert client.read(lambda: len(stalled.body) >= 1024)
        second = client.response(client.request(b"/small"))
        assert second.status == 200 and second.ended
        assert len(stalled.body) == 1024 and not stalled.done
        client.open_window(first, MIB)
        done = client.response(first)
    assert done.ended and done.reset is None
    assert bytes(done.body) == big_body(MIB)


@pytest.mark.parametrize("loop", LOOPS)
def test_fifty_streams_on_one_connection_are_served_concurrently(loop):
    with h2_server(app, loop) as server, peer(server) as client:
        start = time.monotonic()
        streams = [client.request(b"/sleep?0.3") for _ in range(50)]
        assert client.read(lambda: all(client.streams[s].done for s in streams), TIMEOUT * 2)
        elapsed = time.monotonic() - start
    assert all(client.streams[s].status == 200 and client.streams[s].body == b"slept" for s in streams)
    assert elapsed < 50 * 0.3 / 5, elapsed


def test_a_stream_past_the_concurrent_limit_is_refused():
    with h2_server(app, http2_max_concurrent_streams=5) as server, peer(server) as client:
        assert client.read(lambda: client.server_settings)
        assert client.server_settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 5
        streams = [client.request(b"/sleep?0.5") for _ in range(6)]
        assert client.read(lambda: all(client.streams[s].done for s in streams))
    answers = [client.streams[s] for s in streams]
    assert [a.status for a in answers[:5]] == [200] * 5
    assert answers[5].reset == ErrorCode.REFUSED_STREAM and answers[5].status is None
    assert client.goaway is None


def test_a_body_past_the_limit_is_refused_413():
    """Declared too large: 413 before the app runs. Grown too large: the app sees http.disconnect
    and the client 413 if no response had begun, else RST_STREAM CANCEL."""
    disconnects: list[str] = []

    async def reader(scope, receive, send):
        if scope["path"] == "/early":  # a response begun before the body is read: it can only be reset
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"early", "more_body": True})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnects.append(scope["path"])
                return
            if not message["more_body"]:
                await respond(send, 200, b"read it all")
                return

    with h2_server(reader, limit_request_body=1000) as server, peer(server) as client:
        declared = client.request(b"/declared", b"POST", [(b"content-length", b"5000")], body=b"x" * 5000)
        grown = client.request(b"/grown", b"POST", body=b"x" * 5000)
        fits = client.request(b"/fits", b"POST", body=b"x" * 1000)
        early = client.request(b"/early", b"POST", end_stream=False)
        assert client.read(lambda: client.streams[early].body == b"early")
        client.send_frames([data_frame(early, b"x" * 5000, end_stream=True)])
        answers = {s: client.response(s) for s in (declared, grown, fits, early)}
        good = client.response(client.request(b"/after"))
    assert answers[declared].status == 413
    assert answers[grown].status == 413
    assert answers[fits].status == 200 and answers[fits].body == b"read it all"
    assert answers[early].status == 200 and answers[early].reset == ErrorCode.CANCEL
    assert good.status == 200
    assert sorted(disconnects) == ["/early", "/grown"]


def test_a_path_past_the_request_line_limit_is_414_and_too_many_headers_431():
    calls: list[str] = []

    async def counted(scope, receive, send):
        calls.append(scope["path"])
        await respond(send, 200, b"ok")

    with (
        h2_server(counted, limit_request_line=200, limit_request_fields=10) as server,
        peer(server) as client,
    ):
        long_path = client.request(b"/" + b"a" * 300)
        many = client.request(b"/many", extra=[(b"x-h%d" % i, b"v") for i in range(20)])
        fine = client.request(b"/fine", extra=[(b"x-h%d" % i, b"v") for i in range(5)])
        answers = [client.response(s) for s in (long_path, many, fine)]
    assert [a.status for a in answers] == [414, 431, 200]
    assert calls == ["/fine"]
    assert client.goaway is None


def test_an_app_fault_ends_its_own_stream_only(caplog):
    """Before the head: 500 on that stream. After it: RST_STREAM INTERNAL_ERROR. Other streams
    on the connection are answered as usual."""

    async def faulty(scope, receive, send):
        if scope["path"] == "/before":
            raise RuntimeError("before the head")
        if scope["path"] == "/after":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            await asyncio.sleep(0.05)
            raise RuntimeError("after the head")
        await asyncio.sleep(0.1)
        await respond(send, 200, b"fine")

    with (
        caplog.at_level(logging.ERROR, logger="asgi_worker.error"),
        h2_server(faulty) as server,
        peer(server) as client,
    ):
        before, after, fine = (client.request(p) for p in (b"/before", b"/after", b"/fine"))
        answers = [client.response(s) for s in (before, after, fine)]
        later = client.response(client.request(b"/later"))
    assert answers[0].status == 500 and answers[0].ended
    assert answers[1].status == 200 and answers[1].reset == ErrorCode.INTERNAL_ERROR
    assert answers[2].status == 200 and answers[2].body == b"fine"
    assert later.status == 200
    assert client.goaway is None
    assert [r.exc_info[1].args[0] for r in caplog.records if r.exc_info] == [
        "before the head",
        "after the head",
    ]


def test_a_server_fault_opening_a_stream_is_that_streams_500(caplog, monkeypatch):
    """A bug of ours that raises while a stream opens (the way a non-ASCII path once did) is one
    stream's 500 with a logged traceback; the connection and its other streams carry on."""
    from asgi_worker.http2 import connection

    real = connection.build_http_scope

    def failing_on_boom(head, facts):
        if head.target == b"/boom":
            raise RuntimeError("a scope we could not build")
        return real(head, facts)

    monkeypatch.setattr(connection, "build_http_scope", failing_on_boom)
    with (
        caplog.at_level(logging.ERROR, logger="asgi_worker.error"),
        h2_server(app) as server,
        peer(server) as client,
    ):
        boom, fine = (client.request(p) for p in (b"/boom", b"/fine"))
        answers = [client.response(s) for s in (boom, fine)]
        later = client.response(client.request(b"/later"))
    assert answers[0].status == 500 and answers[0].ended
    assert answers[1].status == 200 and later.status == 200
    assert client.goaway is None
    assert [r.exc_info[1].args[0] for r in caplog.records if r.exc_info] == ["a scope we could not build"]


def test_access_log_and_metrics_say_http_2(caplog):
    with (
        caplog.at_level(logging.INFO, logger="asgi_worker.access"),
        h2_server(app, access_log=True, control_bind="127.0.0.1:0") as server,
        peer(server) as client,
    ):
        assert client.response(client.request(b"/logged?q=1")).status == 200
        snapshot = server.server.server_state.snapshot()
    lines = [r.getMessage() for r in caplog.records if r.name == "asgi_worker.access"]
    assert any('"GET /logged?q=1 HTTP/2.0" 200' in line for line in lines), lines
    labels = [tuple(row[:4]) for row in snapshot["requests"]]
    assert labels == [("GET", 200, "http", "2")]


def test_many_clients_each_with_streams_at_once():
    """Four connections, each with 10 streams, from threads: every answer right."""
    failures: list[str] = []

    def one_client(index: int) -> None:
        with peer(server) as client:
            streams = [client.request(b"/echo", b"POST", body=b"%d-%d" % (index, n)) for n in range(10)]
            for n, stream in enumerate(streams):
                response = client.response(stream)
                if response.body != b"%d-%d" % (index, n):
                    failures.append(f"{index}-{n}: {response.status} {bytes(response.body)!r}")

    with h2_server(app) as server:
        threads = [threading.Thread(target=one_client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 2)
    assert not failures


def test_a_request_body_that_stops_arriving_times_out_408():
    """The stream's body stalls while its app waits for it: 408 after --timeout-request-body, the
    app sees http.disconnect; another stream on the connection is served meanwhile. A client
    whose body the app has not read yet is not late, however long the app takes to read it."""
    timeout = 5 * TICK
    seen: list[str] = []
    first_read = threading.Event()

    async def reader(scope, receive, send):
        if scope["path"] == "/late-reader":
            await asyncio.sleep(2 * timeout)
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                seen.append(f"{scope['path']} disconnect")
                return
            body += message["body"]
            if scope["path"] == "/late-reader":
                first_read.set()
            if not message["more_body"]:
                seen.append(f"{scope['path']} {len(body)}")
                await respond(send, 200, b"whole")
                return

    with h2_server(reader, timeout_request_body=timeout) as server, peer(server) as client:
        start = time.monotonic()
        late_reader = client.request(b"/late-reader", b"POST", body=b"z" * 10, end_stream=False)
        stalled = client.request(b"/stalled", b"POST", body=b"x" * 1000, end_stream=False)
        other = client.response(client.request(b"/other", b"POST", body=b"y"))
        assert other.status == 200 and not client.streams[stalled].done
        answer = client.response(stalled, timeout + TIMEOUT)
        elapsed = time.monotonic() - start
        assert first_read.wait(TIMEOUT)
        client.send_frames([data_frame(late_reader, b"z" * 10, end_stream=True)])
        read_late = client.response(late_reader)
    assert answer.status == 408
    assert timeout <= elapsed < timeout + TIMEOUT, elapsed
    assert read_late.status == 200 and read_late.body == b"whole"
    assert sorted(seen) == ["/late-reader 20", "/other 1", "/stalled disconnect"]


def test_the_preface_decides_the_protocol_even_byte_by_byte():
    """Cleartext: the first bytes are read until they stop matching the HTTP/2 preface (then
    HTTP/1.1, even for a method that starts like it) or complete it (then HTTP/2)."""
    with h2_server(app) as server:
        with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in b"PUT /one HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n":
                sock.sendall(bytes((byte,)))
                time.sleep(0.002)
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        with peer(server, preface=False) as client:
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in PREFACE + SettingsFrame(0).serialize():
                client.send(bytes((byte,)))
                time.sleep(0.002)
            response = client.response(client.request(b"/two"))
    assert response.status == 200
    assert json.loads(response.body)["http_version"] == "2"


def test_response_framing_on_a_stream():
    """A whole body gets its content-length; a streamed one ends with END_STREAM; HEAD and 204 send
    no DATA frame; connection-specific headers of the app's are dropped (RFC 9113 8.2.2)."""

    async def framed(scope, receive, send):
        path = scope["path"]
        if path == "/streamed":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"a", b"b", b"c"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/empty":
            await respond(send, 204, b"")
        else:
            await respond(send, 200, b"whole", [(b"connection", b"keep-alive"), (b"x-app", b"1")])

    with h2_server(framed) as server, peer(server) as client:
        whole, streamed, empty = (client.request(p) for p in (b"/whole", b"/streamed", b"/empty"))
        head = client.request(b"/whole", b"HEAD")
        answers = {s: client.response(s) for s in (whole, streamed, empty, head)}
    data_streams = [frame.stream_id for frame in client.of_type(DataFrame) if frame.data]
    assert answers[whole].body == b"whole" and answers[whole].header(b"content-length") == b"5"
    assert answers[whole].header(b"x-app") == b"1" and answers[whole].header(b"connection") is None
    assert answers[streamed].body == b"abc" and answers[streamed].header(b"content-length") is None
    assert answers[empty].status == 204 and empty not in data_streams
    assert answers[head].status == 200 and head not in data_streams and answers[head].ended


def test_no_request_body_timeout_when_it_is_off():
    """--timeout-request-body 0: a body may take its time, even on a connection that was idle (and
    so had its keep-alive deadline armed) when the stream opened."""
    keep_alive = 3 * TICK
    with (
        h2_server(app, timeout_request_body=0, timeout_keep_alive=keep_alive) as server,
        peer(server) as client,
    ):
        assert client.read(lambda: client.server_settings)
        time.sleep(keep_alive / 3)
        stream = client.request(b"/echo", b"POST", end_stream=False)
        assert not client.read(lambda: client.streams[stream].done, 2 * keep_alive), client.summary()
        client.send_frames([data_frame(stream, b"late", end_stream=True)])
        response = client.response(stream)
    assert response.status == 200 and response.body == b"late"


def test_expect_100_continue_is_answered_when_the_app_first_reads():
    """RFC 9110 10.1.1 over HTTP/2: a HEADERS frame with :status 100 before the final response,
    sent only when the app asks for the body the client holds back."""

    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await respond(send, 200, body)

    with h2_server(app) as server, peer(server) as client:
        stream_id = client.request(b"/", b"POST", extra=[(b"expect", b"100-continue")], end_stream=False)
        assert client.read(lambda: client.streams[stream_id].interim)
        assert client.streams[stream_id].interim == [100]
        client.send_frames([DataFrame(stream_id, b"late body", flags={"END_STREAM"})])
        response = client.response(stream_id)
    assert (response.status, bytes(response.body)) == (200, b"late body")


def test_trailers_wait_behind_data_the_peer_has_no_window_for():
    """The trailers end the stream only after every byte of the body has left."""
    body = b"t" * 70000  # more than the peer's default 65535-byte stream window

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": body})
        await send({"type": "http.response.trailers", "headers": [(b"x-digest", b"abc")]})

    with h2_server(app) as server, peer(server) as client:
        stream_id = client.request(b"/")
        client.hold.add(stream_id)
        client.read(lambda: len(client.streams[stream_id].body) >= 65535, timeout=2)
        assert not client.streams[stream_id].trailers
        client.open_window(stream_id, 1 << 20)
        response = client.response(stream_id)
    assert len(response.body) == len(body) and response.trailers == [(b"x-digest", b"abc")]
