"""HTTP/2 through a graceful stop and in real processes: ``python -m asgi_worker --http2`` and
``asgi-supervise --http2``, stopped by real signals with a stream in flight."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from pathlib import Path

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
