"""HTTP/2 through a graceful stop and in real processes: ``python -m asgi_worker --http2`` and
``asgi-supervise --http2``, stopped by real signals or recycled by ``--limit-max-requests`` with
streams in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from asgi_worker.http2.events import ErrorCode
from tests.http2.peer import H2Peer, Response
from tests.http2.served import LOOPS, curl, h2_server, peer, respond
from tests.processes import ServerProcess, accepting, in_flight_env, python_m_server, wait_in_flight
from tests.supervisor.harness import supervise
from tests.timing import TIMEOUT, wait_until

CLI_APPS = str(Path(__file__).parents[1] / "cli" / "apps")


def stop_with_a_stream_in_flight(client: H2Peer, in_flight: int, stop: Callable[[], object]) -> Response:
    """Call ``stop``; then the client must get GOAWAY (NO_ERROR, last stream ``in_flight``), see a
    stream opened after it refused, the whole response of ``in_flight``, and the connection close."""
    stop()
    assert client.read(lambda: client.goaway is not None), client.summary()
    assert client.goaway is not None
    assert (client.goaway.error_code, client.goaway.last_stream_id) == (ErrorCode.NO_ERROR, in_flight)
    late = client.request(b"/late")
    response = client.response(in_flight, TIMEOUT * 2)
    assert response.status == 200 and response.ended, client.summary()
    assert client.read_until_closed(), client.summary()
    assert client.streams[late].reset == ErrorCode.REFUSED_STREAM, client.summary()
    assert client.streams[late].status is None
    return response


@pytest.mark.parametrize("loop", LOOPS)
def test_a_graceful_stop_finishes_the_stream_in_flight(loop):
    reached = threading.Event()

    async def slow(scope, receive, send):
        reached.set()
        await asyncio.sleep(0.5)
        await respond(send, 200, b"finished")

    with h2_server(slow, loop) as server, peer(server) as client:
        first = client.response(client.request(b"/first"))  # a finished stream does not count
        reached.clear()
        in_flight = client.request(b"/slow")
        assert reached.wait(TIMEOUT)

        def stop() -> None:
            server.server.should_exit = True

        response = stop_with_a_stream_in_flight(client, in_flight, stop)
        assert wait_until(lambda: not accepting(server.port)), "the server still listens"
    assert first.status == 200
    assert response.body == b"finished"


def cli_server(
    *args: str, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[ServerProcess]:
    """``python -m asgi_worker ARGS`` (apps from tests/cli/apps) on a free port, once it is running."""
    return python_m_server("--app-dir", CLI_APPS, *args, env=env)


def test_python_m_asgi_worker_http2_serves_curl_and_stops_on_sigterm(tmp_path):
    marker = tmp_path / "in-flight"
    with cli_server("--http2", "cliapps:slow", env=in_flight_env(marker)) as running:
        answer = curl("--http2-prior-knowledge", f"http://127.0.0.1:{running.port}/?0")
        assert answer.stdout.startswith("HTTP/2 200") and answer.stdout.endswith("done"), answer
        with H2Peer(("127.0.0.1", running.port)) as client:
            in_flight = client.request(b"/?1")
            wait_in_flight(marker, count=2)
            response = stop_with_a_stream_in_flight(
                client, in_flight, lambda: running.proc.send_signal(signal.SIGTERM)
            )
        assert running.proc.wait(TIMEOUT) == 0, running.text()
    assert response.body == b"done"


def test_asgi_supervise_http2_serves_curl_and_drains_on_sigterm(tmp_path):
    marker = tmp_path / "in-flight"
    with supervise("supapps:info", "--http2", "--workers", "1", env=in_flight_env(marker)) as sup:
        answer = curl("--http2-prior-knowledge", f"http://127.0.0.1:{sup.port}/")
        assert answer.stdout.startswith("HTTP/2 200") and '"pid"' in answer.stdout, answer
        with H2Peer(("127.0.0.1", sup.port)) as client:
            in_flight = client.request(b"/slow?1")
            wait_in_flight(marker)
            response = stop_with_a_stream_in_flight(client, in_flight, lambda: sup.signal(signal.SIGTERM))
        assert sup.proc.wait(TIMEOUT * 2) == 0, sup.log
    assert b'"pid"' in response.body


# Held in the app until the test creates the gate file: the streams are in flight for as long as
# the test needs (a replacement worker booting), not for a guessed number of seconds. A held answer
# is larger than a stream's default window, so part of each one is sent after the GOAWAY.
_GATED_APP = """
import asyncio, json, os

HELD_PADDING = {padding}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    facts = {{"pid": os.getpid()}}
    if scope["path"] == "/held":
        with open(os.environ["ASGI_WORKER_TEST_IN_FLIGHT"], "a") as marker:
            marker.write(f"{{os.getpid()}}\\n")
        for _ in range(6000):  # a minute at most, should the test never open the gate
            if os.path.exists(os.environ["ASGI_WORKER_TEST_GATE"]):
                break
            await asyncio.sleep(0.01)
        facts.update(n=scope["query_string"].decode(), pad="." * HELD_PADDING)
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": json.dumps(facts).encode()}})
"""

HELD_PADDING = 100_000


def gated_app(folder: Path) -> dict[str, str]:
    """Write ``gated:app`` into ``folder``; the environment to serve it in (its marker and gate
    files in ``folder`` too)."""
    (folder / "gated.py").write_text(_GATED_APP.format(padding=HELD_PADDING))
    return {**in_flight_env(folder / "in-flight"), "ASGI_WORKER_TEST_GATE": str(folder / "gate")}


def held_through_the_limit(port: int, limit: int, folder: Path) -> list[int]:
    """On one connection, ``limit`` requests held in the app, the last of them reaching
    ``--limit-max-requests``. While all are held the client must get GOAWAY NO_ERROR naming the
    last one and see a stream opened after it refused; once the gate opens, every held stream
    gets its whole answer, then the server closes. Returns the pids that answered."""
    with H2Peer(("127.0.0.1", port)) as client:
        held = [client.request(b"/held?%d" % n) for n in range(limit)]
        wait_in_flight(folder / "in-flight", count=limit)
        assert client.read(lambda: client.goaway is not None, TIMEOUT * 2), client.summary()
        assert client.goaway is not None
        assert (client.goaway.error_code, client.goaway.last_stream_id) == (ErrorCode.NO_ERROR, held[-1])
        assert not any(client.streams[s].done for s in held), client.summary()
        late = client.request(b"/late")
        assert client.read(lambda: client.streams[late].done), client.summary()
        assert client.streams[late].reset == ErrorCode.REFUSED_STREAM, client.summary()
        assert client.streams[late].status is None
        (folder / "gate").touch()
        answers = [client.response(s, TIMEOUT * 2) for s in held]
        assert client.read_until_closed(), client.summary()
    pids = []
    for n, answer in enumerate(answers):
        assert (answer.status, answer.ended, answer.reset) == (200, True, None), client.summary()
        facts = json.loads(answer.body)
        assert (facts["n"], facts["pad"]) == (str(n), "." * HELD_PADDING)
        pids.append(facts["pid"])
    return pids


def h2_pid(port: int) -> int:
    """The pid of the process that answers a new HTTP/2 connection."""
    with H2Peer(("127.0.0.1", port)) as client:
        response = client.response(client.request(b"/"))
    assert response.status == 200, client.summary()
    pid: int = json.loads(response.body)["pid"]
    return pid


LIMIT = 3


def test_asgi_supervise_http2_recycles_a_worker_with_its_streams_in_flight(tmp_path):
    """The worker reaches --limit-max-requests with all of one connection's streams in its app:
    it keeps serving them until its replacement is ready, then drains with GOAWAY; the next
    connection is the replacement's."""
    env = gated_app(tmp_path)
    limits = ("--limit-max-requests", str(LIMIT), "--limit-max-requests-jitter", "0")
    args = ("--app-dir", str(tmp_path), "--http2", "--workers", "1", *limits)
    with supervise("gated:app", *args, env=env) as sup:
        [old] = sup.workers()
        pids = held_through_the_limit(sup.port, LIMIT, tmp_path)
        assert pids == [old.pid] * LIMIT
        _gone, alive = psutil.wait_procs([old], timeout=TIMEOUT)
        assert alive == [], sup.log
        new = h2_pid(sup.port)
        assert new != old.pid and [p.pid for p in sup.workers()] == [new]
        log = sup.log
    assert log.count("asks to be recycled: max-requests") == 1, log
    assert f"Stopping worker {old.pid}" in log, log


def test_python_m_asgi_worker_http2_stops_at_the_request_limit_with_its_streams_in_flight(tmp_path):
    """A single process reaching --limit-max-requests stops as on SIGTERM: GOAWAY, the held
    streams finish, no more connections, exit 0."""
    env = gated_app(tmp_path)
    limits = ("--limit-max-requests", str(LIMIT), "--limit-max-requests-jitter", "0")
    with python_m_server("--app-dir", str(tmp_path), "--http2", *limits, "gated:app", env=env) as running:
        pids = held_through_the_limit(running.port, LIMIT, tmp_path)
        assert running.proc.wait(TIMEOUT) == 0, running.text()
        assert not accepting(running.port)
        log = running.text()
    assert pids == [running.proc.pid] * LIMIT
    assert f"Maximum request limit of {LIMIT} exceeded" in log, log
