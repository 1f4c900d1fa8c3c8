"""``--limit-request-body`` and ``--timeout-request-body`` under ``gunicorn -k asgi_worker.Worker``.

gunicorn has no name for either, so they come as ``ASGI_WORKER_<NAME>`` variables: from gunicorn's
own environment, or from its ``-e`` (``raw_env``), which the worker applies before it reads them.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.gunicorn.harness import gunicorn
from tests.timing import TICK, TIMEOUT

pytest.importorskip("gunicorn")

LIMIT = 100


def exchange(port: int, data: bytes) -> tuple[bytes, float]:
    """Send ``data``, then read until the server closes; what came back and how long it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        started = time.monotonic()
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


@pytest.mark.parametrize("worker", ["asgi_worker.Worker", "asgi_worker.H11Worker"])
def test_limit_request_body_from_the_environment(worker):
    with gunicorn(worker=worker, env={"ASGI_WORKER_LIMIT_REQUEST_BODY": str(LIMIT)}) as g:
        over = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
        answer, _ = exchange(g.port, over % (LIMIT + 1))
        assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer, answer
        within = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % LIMIT
        answer, _ = exchange(g.port, within + b"x" * LIMIT)
        assert answer.startswith(b"HTTP/1.1 200 "), answer


@pytest.mark.parametrize("worker", ["asgi_worker.Worker", "asgi_worker.H11Worker"])
def test_timeout_request_body_from_gunicorns_raw_env(worker):
    timeout = 5 * TICK
    with gunicorn("-e", f"ASGI_WORKER_TIMEOUT_REQUEST_BODY={timeout}", worker=worker) as g:
        # /slow: the app is busy and does not read; the client sends 3 of 10 body bytes, then stalls.
        stalled = b"POST /slow?%g HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc" % TIMEOUT
        answer, elapsed = exchange(g.port, stalled)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert timeout - 0.005 <= elapsed <= timeout + 10 * TICK
