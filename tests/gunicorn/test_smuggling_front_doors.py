"""Request smuggling at the other front doors: ``gunicorn -k asgi_worker.Worker`` (and ``H11Worker``)
and ``asgi-supervise`` with each parser, as real processes, answer like the in-process server.

One case per class from ``tests/http/test_smuggling.py`` (``REPRESENTATIVE``), alone and after a
valid request, checked the same way: the statuses, ``connection: close`` on the refusal, the close
right after it (``GET /hidden`` never answered). Each front door runs once for the module, at
``--log-level debug``, so every refusal must also be exactly one "Invalid HTTP request received"
debug line, and nothing may be logged at warning level or above while the cases run.

The test apps answer without reading the body. A refused request goes to ``/slow?1`` instead of
``/smuggle``: should its head reach the app, the app has not answered when the body is refused, so
the answer is the refusal whatever the reads were (once a response began, a bad body can only
close the connection).
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import pytest

from tests.conftest import read_response
from tests.gunicorn.harness import gunicorn
from tests.http.test_keepalive_pipelining import Responses
from tests.http.test_smuggling import CASES_BY_NAME, FIRST, HIDDEN, REPRESENTATIVE, Case, check_answer
from tests.processes import ServerProcess
from tests.supervisor.harness import supervise
from tests.timing import TIMEOUT

pytest.importorskip("gunicorn")

REFUSAL_LINE = "Invalid HTTP request received"
# gunicorn's "[LEVEL]" and our "LEVEL:" prefixes.
NOISY_LINE = re.compile(r"\[(?:WARNING|ERROR|CRITICAL)\]|^(?:WARNING|ERROR|CRITICAL):", re.MULTILINE)

FRONT_DOORS: dict[str, Callable[[], contextlib.AbstractContextManager[ServerProcess]]] = {
    "gunicorn-Worker": lambda: gunicorn("--log-level", "debug"),  # uvloop and httptools
    "gunicorn-H11Worker": lambda: gunicorn("--log-level", "debug", worker="asgi_worker.H11Worker"),
    "supervise-httptools": lambda: supervise(
        "supapps:info", "--workers", "1", "--http", "httptools", "--log-level", "debug"
    ),
    "supervise-h11": lambda: supervise(
        "supapps:info", "--workers", "1", "--loop", "asyncio", "--http", "h11", "--log-level", "debug"
    ),
}


@dataclass
class FrontDoor:
    """A running server process, where its log stood when the cases began, and the refusals sent."""

    server: ServerProcess
    log_start: int
    refusals: int = 0

    def log(self) -> str:
        return self.server.text("stderr")[self.log_start :]


@pytest.fixture(autouse=True)
def no_stray_children() -> Iterator[None]:
    """Replaces the conftest check: the front door's processes outlive each test, on purpose.
    The ``front_door`` fixture checks that none is left once it stops them."""
    yield


@pytest.fixture(scope="module", params=list(FRONT_DOORS), ids=list(FRONT_DOORS))
def front_door(request: pytest.FixtureRequest) -> Iterator[FrontDoor]:
    with FRONT_DOORS[request.param]() as server:
        yield FrontDoor(server, len(server.text("stderr")))
    children = psutil.Process().children(recursive=True)
    _gone, alive = psutil.wait_procs(children, timeout=TIMEOUT)
    assert not alive, f"{request.param} left processes behind: {[p.pid for p in alive]}"


def sent_bytes(case: Case) -> bytes:
    return case.data.replace(b" /smuggle ", b" /slow?1 ") if case.refused else case.data


@pytest.mark.parametrize("before", [0, 1], ids=["alone", "after-a-request"])
@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_smuggling_is_refused_at_every_front_door(front_door, name, before):
    case = CASES_BY_NAME[name]
    with socket.create_connection(("127.0.0.1", front_door.server.port), timeout=TIMEOUT) as sock:
        sock.sendall(FIRST * before + sent_bytes(case) + HIDDEN)
        answer = read_response(sock)
    check_answer(case, answer, before)
    check_log(front_door, case)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_smuggling_is_refused_after_a_repeated_head(front_door, name):
    """The same GET three times, a write each: behind httptools that head is then read from memory
    (``parse_httptools._Repeat``). The case sent after it is answered exactly as without."""
    case = CASES_BY_NAME[name]
    with socket.create_connection(("127.0.0.1", front_door.server.port), timeout=TIMEOUT) as sock:
        responses = Responses(sock)
        for _ in range(3):
            sock.sendall(FIRST)
            assert responses.next().startswith(b"HTTP/1.1 200 ")
        sock.sendall(sent_bytes(case) + HIDDEN)
        answer = bytes(responses.buf) + read_response(sock)
    check_answer(case, answer, 0)
    check_log(front_door, case)


def check_log(front_door: FrontDoor, case: Case) -> None:
    """One refusal line per refused case so far, and nothing at warning level or above."""
    if case.refused:
        front_door.refusals += 1
    expected = front_door.refusals
    if expected:
        front_door.server.wait_for(REFUSAL_LINE, count=expected)
    log = front_door.log()
    assert log.count(REFUSAL_LINE) == expected, log
    assert not NOISY_LINE.findall(log), log
