"""``HttpCycle`` against a fake host: every state transition and error path, asserting exact bytes and calls.

The host records each call the cycle makes (writes, ``wait_writable``, ``body_consumed``,
``response_complete``, ``abort``) in order, so a test asserts the whole conversation instead of a
summary of it. The connection's side (``feed_body``, ``end_body``, ``disconnect`` ...) is driven by the
test's own coroutine on a real event loop, one loop per test; ``settle`` yields to the loop a bounded
number of times, so "the app is blocked" is a fact about the loop, not about a sleep.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.cycle import CycleState, HttpCycle
from asgi_worker.http.h1_writer import COALESCE_LIMIT as _COALESCE_LIMIT
from asgi_worker.http.h1_writer import Http1Writer
from asgi_worker.http.response import (
    CHUNKED_END,
    CONTINUE_RESPONSE,
    DefaultHeaderBlock,
    encode_chunk,
    encode_error_response,
)
from asgi_worker.http.response_batch import ResponseBatch
from tests.timing import TIMEOUT

AWAITING_START, SENDING_BODY, DONE, FAILED = (
    CycleState.AWAITING_START,
    CycleState.SENDING_BODY,
    CycleState.DONE,
    CycleState.FAILED,
)

DEFAULTS = DefaultHeaderBlock(b"test-server", [])
ERROR_500 = encode_error_response(500, DEFAULTS)
DISCONNECT = {"type": "http.disconnect"}
BIG = b"x" * _COALESCE_LIMIT


def head(*lines: bytes, status: bytes = b"200 OK") -> bytes:
    """The response head the cycle should write: status line, default block, then ``lines``."""
    return b"HTTP/1.1 %b\r\nserver: test-server\r\n%b\r\n" % (
        status,
        b"".join(line + b"\r\n" for line in lines),
    )


def start(status: Any = 200, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes = b"", more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def request(data: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


# The fakes


class FakeHost:
    """A ``CycleHost`` that records every call, in order, as a tuple: ``("write", bytes)`` and
    ``("writelines", [bytes])`` (what the cycle's real ``Http1Writer`` wrote through it),
    ``("wait_writable",)``, ``("body_consumed",)``, ``("response_complete", keep_alive)``,
    ``("abort",)``. A ``response_complete`` naming another cycle than ``cycle`` is recorded with
    that cycle, so it cannot pass for this one. ``release_writes`` ends every pending ``wait_writable``."""

    def __init__(self) -> None:
        self.write_paused = False
        self.defaults = DEFAULTS
        self.calls: list[tuple[Any, ...]] = []
        self.cycle: HttpCycle | None = None  # set by make_cycle
        self._writable: list[asyncio.Future[None]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, data: list[bytes]) -> None:
        self.calls.append(("writelines", [bytes(piece) for piece in data]))

    async def wait_writable(self) -> None:
        self.calls.append(("wait_writable",))
        waiter = asyncio.get_running_loop().create_future()
        self._writable.append(waiter)
        await waiter

    def release_writes(self) -> None:
        self.write_paused = False
        waiters, self._writable = self._writable, []
        for waiter in waiters:
            waiter.set_result(None)

    def body_consumed(self) -> None:
        self.calls.append(("body_consumed",))

    def response_complete(self, cycle: HttpCycle, keep_alive: bool) -> None:
        if cycle is self.cycle:
            self.calls.append(("response_complete", keep_alive))
        else:
            self.calls.append(("response_complete", cycle, keep_alive))

    def abort(self) -> None:
        self.calls.append(("abort",))

    @property
    def writes(self) -> list[bytes]:
        return [call[1] for call in self.calls if call[0] == "write"]

    @property
    def consumed(self) -> int:
        return self.calls.count(("body_consumed",))


class FakeRegistry:
    """A ``TaskRegistry`` that records each ``cycle_finished`` with the cycle's state at that moment."""

    def __init__(self, cycle: HttpCycle) -> None:
        self._cycle = cycle
        self.batch = ResponseBatch()
        self.batch.apps_ready = 1  # as the connection leaves it when it creates the task
        self.finished: list[tuple[asyncio.Task[None] | None, CycleState]] = []

    def cycle_finished(self, cycle: HttpCycle) -> None:
        assert cycle is self._cycle
        self.finished.append((cycle.task, cycle.state))


# Running a cycle

App = Callable[[Any, Any, Any], Awaitable[None]]
Connection = Callable[["asyncio.Task[None]"], Awaitable[None]]


def make_cycle(
    method: str = "GET",
    version: str = "1.1",
    keep_alive: bool = True,
    expect_continue: bool = False,
    body_done: bool = True,
) -> tuple[HttpCycle, FakeHost]:
    """A cycle as the connection creates it; ``body_done`` means the request's end arrived with its head."""
    host = FakeHost()
    scope = {"type": "http", "method": method, "http_version": version, "path": "/", "headers": []}
    writer = Http1Writer(host.write, host.writelines, host.defaults)
    cycle = host.cycle = HttpCycle(host, writer, scope, keep_alive, expect_continue, 0.0)
    if body_done:
        cycle.end_body()
    return cycle, host


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on a fresh loop, bounded by ``TIMEOUT``; a loop exception-handler call fails the test."""
    loop_errors: list[dict[str, Any]] = []

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(context))
        return await asyncio.wait_for(coro, TIMEOUT)

    result = asyncio.run(main())
    assert not loop_errors, f"the event loop reported errors: {loop_errors}"
    return result


def run_app(cycle: HttpCycle, app: App, connection: Connection | None = None) -> asyncio.Task[None]:
    """Run ``app`` through ``cycle.run_asgi`` as the connection does, with ``connection(task)`` alongside.

    Returns the finished task, and checks the one thing every path owes: ``cycle_finished`` called
    exactly once, with this task, after the cycle reached its final state.
    """
    registry = FakeRegistry(cycle)

    async def main() -> asyncio.Task[None]:
        task = cycle.task = asyncio.get_running_loop().create_task(cycle.run_asgi(app, registry))
        if connection is not None:
            await connection(task)
        await asyncio.wait([task])
        return task

    task: asyncio.Task[None] = run(main())
    if not task.cancelled():
        task.exception()  # retrieved here; the tests that expect one ask again
    assert registry.finished == [(task, cycle.state)]
    assert cycle.state is not AWAITING_START and cycle.state is not SENDING_BODY
    return task


async def settle() -> None:
    """Let every task that can run, run (enough loop turns for a few hand-offs, and no more)."""
    for _ in range(20):
        await asyncio.sleep(0)


def replying(*messages: dict[str, Any]) -> App:
    """An app that sends ``messages`` and returns."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    return app


def raising_after(*messages: dict[str, Any], error: BaseException | None = None) -> App:
    """An app that sends ``messages``, then raises ``error`` (a RuntimeError by default)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)
        raise error if error is not None else RuntimeError("app failed")

    return app


class ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[list[logging.LogRecord]]:
    """What the cycle logs to ``asgi_worker.error`` (attached to that logger: propagation may be off)."""
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("asgi_worker.error")
    handler = ListHandler(records)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def logged(records: list[logging.LogRecord]) -> list[tuple[str, type[BaseException] | None]]:
    """Each record as (message, type of the exception it carries)."""
    return [(r.getMessage(), r.exc_info[0] if r.exc_info else None) for r in records]


INCOMPLETE = "ASGI callable returned without completing the response"
APP_EXCEPTION = "Exception in ASGI application"


# AWAITING_START -> SENDING_BODY -> DONE


def test_start_holds_the_head_and_the_last_body_message_completes_the_response():
    cycle, host = make_cycle()
    headers = [(b"content-type", b"text/plain")]
    seen: list[tuple[CycleState, list[tuple[Any, ...]], Any]] = []

    async def app(scope, receive, send):
        seen.append((cycle.state, list(host.calls), cycle.response_headers))
        await send(start(201, headers))
        seen.append((cycle.state, list(host.calls), cycle.response_headers))
        await send(body(b"hello"))
        seen.append((cycle.state, list(host.calls), cycle.response_headers))

    run_app(cycle, app)
    response = head(b"content-type: text/plain", b"content-length: 5", status=b"201 Created") + b"hello"
    assert seen == [
        (AWAITING_START, [], ()),
        (SENDING_BODY, [], ()),  # nothing written until the first body message
        (DONE, [("write", response), ("response_complete", True)], headers),
    ]
    assert (cycle.status, cycle.bytes_sent) == (201, 5)


@pytest.mark.parametrize("size", [0, 5, _COALESCE_LIMIT - 1])
def test_a_one_message_response_is_one_write_of_head_and_body(size):
    cycle, host = make_cycle()
    data = b"x" * size
    run_app(cycle, replying(start(), body(data)))
    assert host.calls == [
        ("write", head(b"content-length: %d" % size) + data),
        ("response_complete", True),
    ]
    assert cycle.bytes_sent == size


def test_optional_message_keys_default_to_no_headers_and_an_empty_last_body():
    cycle, host = make_cycle()
    run_app(cycle, replying({"type": "http.response.start", "status": 200}, {"type": "http.response.body"}))
    assert host.calls == [("write", head(b"content-length: 0")), ("response_complete", True)]
    assert cycle.response_headers == ()


@pytest.mark.parametrize("size", [_COALESCE_LIMIT, _COALESCE_LIMIT + 1])
def test_a_body_at_or_over_the_coalescing_limit_goes_with_its_head_uncopied(size):
    """One ``writelines``: a single ``writev`` under uvloop, and the body is the app's own object."""
    cycle, host = make_cycle()
    data = b"x" * size
    run_app(cycle, replying(start(), body(data)))
    assert host.calls == [
        ("writelines", [head(b"content-length: %d" % size), data]),
        ("response_complete", True),
    ]


@pytest.mark.parametrize(("last", "last_write"), [(b"!", b"1\r\n!\r\n0\r\n\r\n"), (b"", b"0\r\n\r\n")])
def test_a_streamed_response_is_chunked_on_http11(last, last_write):
    """Messages sent in one loop iteration are one write."""
    cycle, host = make_cycle()
    run_app(cycle, replying(start(), body(b"hello", more=True), body(b"world", more=True), body(last)))
    assert host.calls == [
        ("write", head(b"transfer-encoding: chunked") + b"5\r\nhello\r\n5\r\nworld\r\n" + last_write),
        ("response_complete", True),
    ]
    assert cycle.bytes_sent == 10 + len(last)


def test_an_empty_body_message_mid_stream_writes_no_chunk():
    """An empty chunk would end a chunked body: an empty ``more_body`` message must add no bytes."""
    cycle, host = make_cycle()
    run_app(cycle, replying(start(), body(b"a", more=True), body(b"", more=True), body(b"b")))
    assert b"".join(host.writes) == head(b"transfer-encoding: chunked") + b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n"
    assert host.calls[-1] == ("response_complete", True)


def test_large_streamed_chunks_are_framed_around_the_apps_own_bytes():
    """A chunk past the coalescing limit leaves at once, uncopied, with whatever was queued before it."""
    cycle, host = make_cycle()
    run_app(cycle, replying(start(), body(BIG, more=True), body(BIG, more=True), body()))
    size_line = b"%x\r\n" % len(BIG)
    assert host.calls == [
        ("writelines", [head(b"transfer-encoding: chunked"), size_line, BIG, b"\r\n"]),
        ("writelines", [size_line, BIG, b"\r\n"]),
        ("write", CHUNKED_END),
        ("response_complete", True),
    ]


def test_a_lone_streamed_message_leaves_before_the_app_next_waits():
    """Server-sent events: a piece followed by a real wait is written within one loop turn."""
    cycle, host = make_cycle()
    later = asyncio.Event()
    seen: list[list[bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        await send(body(b"event", more=True))
        await later.wait()
        await send(body())

    async def connection(task: asyncio.Task[None]) -> None:
        await asyncio.sleep(0)  # the app runs up to its wait
        await asyncio.sleep(0)  # one more turn: the queued piece is flushed
        seen.append(list(host.writes))
        later.set()

    run_app(cycle, app, connection)
    assert seen == [[head(b"transfer-encoding: chunked") + b"5\r\nevent\r\n"]]
    assert host.writes[1:] == [CHUNKED_END]


def test_many_small_messages_in_one_turn_are_written_once_the_queue_reaches_the_limit():
    """An app that sends without ever waiting cannot queue without bound: past the coalescing limit
    the queue is written, so the transport's ``write_paused`` sees it."""
    cycle, host = make_cycle()
    piece = b"p" * 1000
    count = 2 * _COALESCE_LIMIT // len(piece)
    run_app(cycle, replying(start(), *(body(piece, more=True) for _ in range(count)), body()))
    assert 2 <= len(host.calls) - 1 <= 4  # a few writes, not ``count``
    written = b"".join(b"".join(call[1]) if call[0] == "writelines" else call[1] for call in host.calls[:-1])
    assert written == head(b"transfer-encoding: chunked") + encode_chunk(piece) * count + CHUNKED_END


def test_a_streamed_response_to_http10_is_delimited_by_closing():
    cycle, host = make_cycle(version="1.0", keep_alive=True)  # the client asked for keep-alive
    run_app(cycle, replying(start(), body(b"hello", more=True), body(b"world", more=True), body(b"!")))
    assert host.calls == [
        ("write", head(b"connection: close") + b"helloworld!"),
        ("response_complete", False),
    ]


@pytest.mark.parametrize(
    ("messages", "framing"),
    [
        ([body(b"hello")], b"content-length: 5"),
        ([body(b"hello", more=True), body(b"world", more=True), body(b"!")], b"transfer-encoding: chunked"),
    ],
    ids=["one-message", "streamed"],
)
def test_a_head_request_gets_the_framing_of_a_get_and_no_body_bytes(messages, framing):
    cycle, host = make_cycle(method="HEAD")
    run_app(cycle, replying(start(), *messages))
    assert host.calls == [("write", head(framing)), ("response_complete", True)]


@pytest.mark.parametrize(("status", "status_line"), [(204, b"204 No Content"), (304, b"304 Not Modified")])
@pytest.mark.parametrize("data", [b"", b"ignored"])
def test_204_and_304_get_no_body_and_no_framing_header(status, status_line, data):
    cycle, host = make_cycle()
    run_app(cycle, replying(start(status), body(data)))
    assert host.calls == [("write", head(status=status_line)), ("response_complete", True)]


@pytest.mark.parametrize(
    ("messages", "writes"),
    [
        ([body(b"helloworld")], [head(b"content-length: 10") + b"helloworld"]),
        ([body(b"hello", more=True), body(b"world")], [head(b"content-length: 10") + b"helloworld"]),
    ],
    ids=["one-message", "streamed"],
)
def test_the_app_content_length_is_honoured(messages, writes):
    cycle, host = make_cycle()
    run_app(cycle, replying(start(headers=[(b"content-length", b"10")]), *messages))
    assert host.calls == [*(("write", w) for w in writes), ("response_complete", True)]


def _refused_body_app(errors: list[AppProtocolError], *messages: dict[str, Any]) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            for message in messages:
                await send(message)
        except AppProtocolError as exc:
            errors.append(exc)
            raise

    return app


@pytest.mark.parametrize(
    ("messages", "written", "error"),
    [
        ([body(b"hel", more=True), body(b"lo!")], b"hel", "response body longer than its Content-Length"),
        ([body(b"hello", more=True), body(b"!")], b"hello", "response body longer than its Content-Length"),
        ([body(b"hel", more=True), body(b"")], b"hel", "response body shorter than its Content-Length"),
    ],
    ids=["longer", "longer-by-a-later-message", "shorter-at-the-end"],
)
def test_a_body_that_breaks_the_app_content_length_after_the_head_aborts(error_log, messages, written, error):
    cycle, host = make_cycle()
    errors: list[AppProtocolError] = []
    task = run_app(cycle, _refused_body_app(errors, start(headers=[(b"content-length", b"5")]), *messages))
    assert [str(exc) for exc in errors] == [error]
    assert host.calls == [("write", head(b"content-length: 5") + written), ("abort",)]
    assert cycle.state is FAILED and task.exception() is None  # an Exception is logged, not re-raised
    assert logged(error_log) == [(APP_EXCEPTION, AppProtocolError)]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"hello!", "response body longer than its Content-Length"),
        (b"hell", "response body shorter than its Content-Length"),
    ],
    ids=["longer", "shorter"],
)
def test_a_first_body_message_that_breaks_the_app_content_length_gets_a_500(error_log, data, error):
    """The message is refused before any byte is written, so the app's failure gets the clean 500
    every failure before the first written byte gets, and the refused body is not counted as sent."""
    cycle, host = make_cycle()
    errors: list[AppProtocolError] = []
    run_app(cycle, _refused_body_app(errors, start(headers=[(b"content-length", b"5")]), body(data)))
    assert [str(exc) for exc in errors] == [error]
    assert host.calls == [("write", ERROR_500), ("response_complete", False)]
    assert cycle.status == 500 and cycle.bytes_sent == 0  # what the access log reports


@pytest.mark.parametrize(
    ("status", "headers", "version", "error"),
    [
        (99, [], "1.1", "invalid HTTP status 99"),
        (1000, [], "1.1", "invalid HTTP status 1000"),
        ("200", [], "1.1", "invalid HTTP status '200'"),
        (200, [(b"bad name", b"v")], "1.1", "invalid response header b'bad name': b'v'"),
        (
            200,
            [(b"x", b"a\r\nset-cookie: b")],
            "1.1",
            "invalid response header b'x': b'a\\r\\nset-cookie: b'",
        ),
        (200, [(b"content-length", b"five")], "1.1", "invalid content-length b'five'"),
        (
            200,
            [(b"transfer-encoding", b"chunked")],
            "1.0",
            "transfer-encoding: chunked in a response to HTTP/1.0",
        ),
    ],
    ids=[
        "status-99",
        "status-1000",
        "status-str",
        "header-name",
        "header-value",
        "content-length",
        "chunked-http10",
    ],
)
def test_an_invalid_head_is_refused_before_any_byte_and_answered_500(
    error_log, status, headers, version, error
):
    cycle, host = make_cycle(version=version)
    errors: list[AppProtocolError] = []
    run_app(cycle, _refused_body_app(errors, start(status, headers), body(b"hi")))
    assert [str(exc) for exc in errors] == [error]
    assert host.calls == [("write", ERROR_500), ("response_complete", False)]
    assert (cycle.state, cycle.status, cycle.response_headers) == (FAILED, 500, ())
    assert logged(error_log) == [(APP_EXCEPTION, AppProtocolError)]


# Messages a state does not allow


async def _advance(cycle: HttpCycle, state: CycleState) -> None:
    if state is SENDING_BODY or state is DONE:
        await cycle.send(start())
    if state is DONE:
        await cycle.send(body(b"hi"))


@pytest.mark.parametrize(
    ("state", "mtype"),
    [
        (AWAITING_START, "http.response.body"),
        (AWAITING_START, "http.response.trailers"),
        (SENDING_BODY, "http.response.start"),
        (SENDING_BODY, "http.response.trailers"),
        (DONE, "http.response.start"),
        (DONE, "http.response.body"),
        (DONE, "http.response.trailers"),
        (FAILED, "http.response.start"),
        (FAILED, "http.response.body"),
    ],
)
def test_a_message_its_state_does_not_allow_is_refused_naming_both(state, mtype):
    cycle, host = make_cycle()
    if state is FAILED:
        run_app(cycle, raising_after())
    else:
        run(_advance(cycle, state))
    assert cycle.state is state
    before = list(host.calls)
    message = {"type": mtype, "status": 200, "headers": [], "body": b"x"}
    expected = f"ASGI message {mtype!r} is not allowed in state {state.value!r}"
    with pytest.raises(AppProtocolError, match=f"^{re.escape(expected)}$"):
        run(cycle.send(message))
    assert cycle.state is state and host.calls == before


# The run_asgi wrapper


@pytest.mark.parametrize(
    "app",
    [
        raising_after(),
        raising_after(start(200, [(b"x-a", b"1")])),
        replying(body(b"before start")),
        replying(start(), start()),
    ],
    ids=["before-start", "after-start", "body-before-start", "start-twice"],
)
def test_an_app_failure_before_the_first_body_byte_is_answered_by_exactly_one_500(error_log, app):
    cycle, host = make_cycle()
    run_app(cycle, app)
    assert host.calls == [("write", ERROR_500), ("response_complete", False)]
    assert (cycle.state, cycle.status, cycle.response_headers) == (FAILED, 500, ())
    [record] = error_log
    assert record.getMessage() == APP_EXCEPTION and record.exc_info is not None


def test_an_app_exception_after_the_head_was_written_aborts(error_log):
    cycle, host = make_cycle()
    run_app(cycle, raising_after(start(), body(b"part", more=True)))
    assert host.calls == [("write", head(b"transfer-encoding: chunked") + b"4\r\npart\r\n"), ("abort",)]
    assert cycle.state is FAILED
    assert logged(error_log) == [(APP_EXCEPTION, RuntimeError)]


def test_an_app_exception_after_the_response_is_complete_is_only_logged(error_log):
    cycle, host = make_cycle()
    run_app(cycle, raising_after(start(), body(b"ok")))
    assert host.calls == [("write", head(b"content-length: 2") + b"ok"), ("response_complete", True)]
    assert cycle.state is DONE
    assert logged(error_log) == [(APP_EXCEPTION, RuntimeError)]


@pytest.mark.parametrize("messages", [[], [start()]], ids=["nothing-sent", "start-only"])
def test_an_app_that_returns_without_completing_before_its_head_gets_a_500(error_log, messages):
    cycle, host = make_cycle()
    run_app(cycle, replying(*messages))
    assert host.calls == [("write", ERROR_500), ("response_complete", False)]
    assert (cycle.state, cycle.status) == (FAILED, 500)
    assert logged(error_log) == [(INCOMPLETE, None)]


def test_an_app_that_returns_without_completing_after_its_head_aborts(error_log):
    cycle, host = make_cycle()
    run_app(cycle, replying(start(), body(b"part", more=True)))
    assert host.calls == [("write", head(b"transfer-encoding: chunked") + b"4\r\npart\r\n"), ("abort",)]
    assert cycle.state is FAILED
    assert logged(error_log) == [(INCOMPLETE, None)]


def _waits_for_disconnect(*messages: dict[str, Any], error: BaseException | None = None) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert await receive() == request(b"", False)
        for message in messages:
            await send(message)
        assert await receive() == DISCONNECT
        if error is not None:
            raise error

    return app


async def _client_leaves(task: asyncio.Task[None], cycle: HttpCycle) -> None:
    await settle()
    assert not task.done()
    cycle.disconnect()


@pytest.mark.parametrize(
    ("messages", "calls"),
    [
        ([], []),
        ([start()], []),
        (
            [start(), body(b"part", more=True)],
            [("write", head(b"transfer-encoding: chunked") + b"4\r\npart\r\n")],
        ),
    ],
    ids=["before-start", "after-start", "after-the-head"],
)
def test_an_app_that_returns_after_the_client_left_is_silent(error_log, messages, calls):
    cycle, host = make_cycle()
    run_app(cycle, _waits_for_disconnect(*messages), lambda task: _client_leaves(task, cycle))
    assert host.calls == calls
    assert cycle.state is FAILED
    assert error_log == []


def test_an_app_exception_after_the_client_left_is_logged_and_writes_nothing(error_log):
    cycle, host = make_cycle()
    app = _waits_for_disconnect(start(), error=RuntimeError("late"))
    run_app(cycle, app, lambda task: _client_leaves(task, cycle))
    assert host.calls == []
    assert cycle.state is FAILED
    assert logged(error_log) == [(APP_EXCEPTION, RuntimeError)]


def _blocks_after(*messages: dict[str, Any]) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)
        await asyncio.get_running_loop().create_future()  # until cancelled

    return app


@pytest.mark.parametrize(
    ("messages", "disconnected", "calls", "state"),
    [
        ([], False, [("abort",)], FAILED),
        ([start()], False, [("abort",)], FAILED),
        (
            [start(), body(b"ab", more=True)],
            False,
            [("write", head(b"transfer-encoding: chunked") + b"2\r\nab\r\n"), ("abort",)],
            FAILED,
        ),
        (
            [start(), body(b"ok")],
            False,
            [("write", head(b"content-length: 2") + b"ok"), ("response_complete", True)],
            DONE,
        ),
        ([start()], True, [], FAILED),
    ],
    ids=["before-start", "after-start", "after-the-head", "after-done", "after-disconnect"],
)
def test_a_cancelled_app_aborts_unless_the_response_is_over(error_log, messages, disconnected, calls, state):
    cycle, host = make_cycle()

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        if disconnected:
            cycle.disconnect()
        task.cancel()

    task = run_app(cycle, _blocks_after(*messages), connection)
    assert task.cancelled()
    assert host.calls == calls
    assert cycle.state is state
    assert error_log == []


class Halt(BaseException):
    """A BaseException that is not an Exception (as KeyboardInterrupt and SystemExit are)."""


@pytest.mark.parametrize(
    ("messages", "calls"),
    [
        ([], [("write", ERROR_500), ("response_complete", False)]),
        (
            [start(), body(b"ab", more=True)],
            [("write", head(b"transfer-encoding: chunked") + b"2\r\nab\r\n"), ("abort",)],
        ),
    ],
    ids=["before-the-head", "after-the-head"],
)
def test_a_base_exception_is_reraised_after_cleanup(error_log, messages, calls):
    cycle, host = make_cycle()
    task = run_app(cycle, raising_after(*messages, error=Halt()))
    assert isinstance(task.exception(), Halt)
    assert host.calls == calls
    assert cycle.state is FAILED
    assert logged(error_log) == [(APP_EXCEPTION, Halt)]


@pytest.mark.parametrize(
    ("app", "cancel"),
    [
        (replying(start(), body(b"ok")), False),
        (raising_after(), False),
        (raising_after(start(), body(b"a", more=True)), False),
        (replying(), False),
        (raising_after(error=Halt()), False),
        (_blocks_after(), True),
        (_blocks_after(start(), body(b"ok")), True),
    ],
    ids=[
        "completes",
        "raises",
        "raises-after-head",
        "returns-early",
        "base-exception",
        "cancelled",
        "cancelled-after-done",
    ],
)
def test_cycle_finished_is_called_exactly_once_on_every_path(app, cancel):
    cycle, _host = make_cycle()

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        if cancel:
            task.cancel()

    run_app(cycle, app, connection)  # asserts one cycle_finished, after the final state was reached


# receive: the request body


def _reader(messages: list[dict[str, Any]]) -> App:
    """An app that reads the whole body, recording each message, then answers 200 with it."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        data = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return
            data += message["body"]
            if not message["more_body"]:
                break
        await send(start())
        await send(body(data))

    return app


def test_chunks_fed_before_receive_are_joined_into_one_message():
    cycle, host = make_cycle(method="POST", body_done=False)
    for part in (b"a", b"b", b"c"):
        cycle.feed_body(part)
    cycle.end_body()
    assert cycle.body_size == 3
    messages: list[dict[str, Any]] = []
    run_app(cycle, _reader(messages))
    assert messages == [request(b"abc", False)]
    assert cycle.body_size == 0
    assert host.calls == [
        ("body_consumed",),
        ("write", head(b"content-length: 3") + b"abc"),
        ("response_complete", True),
    ]


def test_a_waiting_receive_is_woken_by_feed_body_and_end_body_in_order():
    cycle, host = make_cycle(method="POST", body_done=False)
    messages: list[dict[str, Any]] = []

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        assert messages == [] and host.calls == []  # the app waits: there is nothing to hand out
        cycle.feed_body(b"ab")
        assert cycle.body_size == 2  # buffered until the app runs
        await settle()
        assert (messages, cycle.body_size, host.consumed) == ([request(b"ab", True)], 0, 1)
        cycle.feed_body(b"cd")
        await settle()
        assert messages[-1] == request(b"cd", True)
        cycle.end_body()

    run_app(cycle, _reader(messages), connection)
    assert messages == [request(b"ab", True), request(b"cd", True), request(b"", False)]
    assert host.calls == [
        ("body_consumed",),
        ("body_consumed",),  # not for the empty last message: nothing was buffered
        ("write", head(b"content-length: 4") + b"abcd"),
        ("response_complete", True),
    ]


def test_an_empty_body_is_one_last_message_without_body_consumed():
    cycle, host = make_cycle()
    messages: list[dict[str, Any]] = []
    run_app(cycle, _reader(messages))
    assert messages == [request(b"", False)]
    assert host.calls == [("write", head(b"content-length: 0")), ("response_complete", True)]


def test_body_fed_after_the_body_was_handed_out_is_dropped():
    cycle, host = make_cycle()
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        got.append(await receive())
        cycle.feed_body(b"late")  # as a confused connection would
        assert cycle.body_size == 0
        await send(start())
        await send(body())
        got.append(await receive())

    run_app(cycle, app)
    assert got == [request(b"", False), DISCONNECT]
    assert host.consumed == 0


def test_after_the_body_receive_waits_for_the_response_then_answers_disconnect():
    cycle, host = make_cycle()
    steps: list[str] = []

    async def app(scope, receive, send):
        assert await receive() == request(b"", False)
        listener = asyncio.ensure_future(receive())
        await settle()
        steps.append(f"after body: {listener.done()}")
        await send(start())
        await settle()
        steps.append(f"after start: {listener.done()}")
        await send(body(b"ok"))
        assert await listener == DISCONNECT
        steps.append(f"after response: {host.calls[-1][0]}")
        assert await receive() == DISCONNECT  # and at once from now on

    run_app(cycle, app)
    assert steps == ["after body: False", "after start: False", "after response: response_complete"]


def test_every_waiting_receive_is_woken_when_the_response_completes():
    cycle, _host = make_cycle()

    async def app(scope, receive, send):
        await receive()
        listeners = [asyncio.ensure_future(receive()) for _ in range(2)]
        await settle()
        assert not any(listener.done() for listener in listeners)
        await send(start())
        await send(body())
        assert await asyncio.gather(*listeners) == [DISCONNECT, DISCONNECT]

    run_app(cycle, app)
    assert cycle.state is DONE


@pytest.mark.parametrize("body_done", [False, True], ids=["waiting-for-the-body", "after-the-body"])
def test_disconnect_wakes_a_waiting_receive_at_once_and_send_becomes_a_no_op(error_log, body_done):
    cycle, host = make_cycle(method="POST", body_done=body_done)
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        if body_done:
            got.append(await receive())
        got.append(await receive())
        await send(start())
        await send(body(b"unheard"))

    run_app(cycle, app, lambda task: _client_leaves(task, cycle))
    assert got == [request(b"", False)] * body_done + [DISCONNECT]
    assert host.calls == []
    assert (cycle.state, error_log) == (FAILED, [])


@pytest.mark.parametrize(
    ("body_done", "response", "keep_alive"),
    [
        (False, head(b"content-length: 2", b"connection: close") + b"ok", False),  # the body was never read
        (True, head(b"content-length: 2") + b"ok", True),
    ],
    ids=["waiting-for-the-body", "after-the-body"],
)
def test_peer_closed_ends_receive_but_send_still_writes(body_done, response, keep_alive):
    cycle, host = make_cycle(method="POST", body_done=body_done)
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        if body_done:
            got.append(await receive())
        got.append(await receive())
        await send(start())
        await send(body(b"ok"))

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        assert not task.done()
        cycle.peer_closed()

    run_app(cycle, app, connection)
    assert got == [request(b"", False)] * body_done + [DISCONNECT]
    assert host.calls == [("write", response), ("response_complete", keep_alive)]


def test_peer_closed_before_receive_answers_disconnect_right_after_the_body():
    """The connection reports a half-close once the body is complete; the app reads on without waiting."""
    cycle, host = make_cycle(method="POST", body_done=False)
    cycle.feed_body(b"ab")
    cycle.end_body()
    cycle.peer_closed()
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        got.append(await receive())
        got.append(await receive())  # before the response: nothing more can come
        await send(start())
        await send(body(b"ok"))

    run_app(cycle, app)
    assert got == [request(b"ab", False), DISCONNECT]
    assert host.calls == [
        ("body_consumed",),
        ("write", head(b"content-length: 2") + b"ok"),
        ("response_complete", True),
    ]


def test_a_cancelled_receive_does_not_lose_the_body():
    """An app may time out a receive (``asyncio.wait_for``); the chunk that arrives later is kept."""
    cycle, _host = make_cycle(method="POST", body_done=False)
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        waiting = asyncio.ensure_future(receive())
        await settle()
        waiting.cancel()
        await settle()
        cycle.feed_body(b"kept")  # wakes a waiter that is already cancelled
        cycle.end_body()
        got.append(await receive())
        await send(start())
        await send(body())

    run_app(cycle, app)
    assert got == [request(b"kept", False)]


# Expect: 100-continue


def test_100_continue_is_written_once_when_receive_has_to_wait():
    cycle, host = make_cycle(method="POST", expect_continue=True, body_done=False)
    messages: list[dict[str, Any]] = []

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        assert host.calls == [("write", CONTINUE_RESPONSE)]
        cycle.feed_body(b"ab")
        await settle()  # the app's second receive waits too: no second 100 Continue
        cycle.feed_body(b"cde")
        cycle.end_body()

    run_app(cycle, _reader(messages), connection)
    assert messages == [request(b"ab", True), request(b"cde", False)]
    assert host.calls == [
        ("write", CONTINUE_RESPONSE),
        ("body_consumed",),
        ("body_consumed",),
        ("write", head(b"content-length: 5") + b"abcde"),
        ("response_complete", True),
    ]


@pytest.mark.parametrize(
    ("before", "first", "calls"),
    [
        (
            lambda cycle: cycle.feed_body(b"ab"),
            request(b"ab", True),
            [
                ("body_consumed",),
                ("write", head(b"content-length: 2", b"connection: close") + b"ok"),
                ("response_complete", False),
            ],
        ),
        (
            lambda cycle: cycle.end_body(),
            request(b"", False),
            [("write", head(b"content-length: 2") + b"ok"), ("response_complete", True)],
        ),
        (lambda cycle: cycle.disconnect(), DISCONNECT, []),
    ],
    ids=["a-chunk", "the-end", "a-disconnect"],
)
def test_no_100_continue_when_receive_does_not_have_to_wait(before, first, calls):
    cycle, host = make_cycle(method="POST", expect_continue=True, body_done=False)
    before(cycle)
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        got.append(await receive())
        await send(start())
        await send(body(b"ok"))

    run_app(cycle, app)
    assert got == [first]
    assert host.calls == calls


def test_no_100_continue_once_the_client_sent_body_bytes_without_waiting():
    # RFC 9110 10.1.1: a server may omit it once content has arrived; we do, so whether it is
    # written does not depend on when the app first waits (found by the wire fuzz campaign).
    cycle, host = make_cycle(method="POST", expect_continue=True, body_done=False)
    cycle.feed_body(b"ab")
    messages: list[dict[str, Any]] = []

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()  # the app took "ab" and waits for the rest
        cycle.feed_body(b"cde")
        cycle.end_body()

    run_app(cycle, _reader(messages), connection)
    assert messages == [request(b"ab", True), request(b"cde", False)]
    assert ("write", CONTINUE_RESPONSE) not in host.calls


def test_no_100_continue_when_the_app_answers_without_reading():
    cycle, host = make_cycle(method="POST", expect_continue=True, body_done=False)
    run_app(cycle, replying(start(413), body(b"too big")))
    assert host.calls == [
        (
            "write",
            head(b"content-length: 7", b"connection: close", status=b"413 Request Entity Too Large")
            + b"too big",
        ),
        ("response_complete", False),
    ]


def test_no_100_continue_once_the_head_was_written():
    cycle, host = make_cycle(method="POST", expect_continue=True, body_done=False)
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        await send(start())
        await send(body(b"early", more=True))
        got.append(await receive())
        await send(body())

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        assert not task.done()
        cycle.end_body()

    run_app(cycle, app, connection)
    assert got == [request(b"", False)]
    assert host.calls == [
        ("write", head(b"transfer-encoding: chunked") + b"5\r\nearly\r\n"),
        ("write", CHUNKED_END),
        ("response_complete", True),
    ]


def test_100_continue_is_written_when_the_app_reads_after_start_while_its_head_is_held():
    """``http.response.start`` writes nothing (the head is held until the first body message), so
    the client is still waiting for "100 Continue" before it sends the body: an app that starts its
    response and then reads (a streaming echo) must still get it written."""
    cycle, host = make_cycle(method="POST", expect_continue=True, body_done=False)

    async def app(scope, receive, send):
        await send(start())
        message = await receive()
        await send(body(message["body"]))

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        assert host.calls == [("write", CONTINUE_RESPONSE)]
        cycle.feed_body(b"hi")
        cycle.end_body()

    run_app(cycle, app, connection)


# send: flow control and a client that left


def test_send_while_write_paused_waits_for_wait_writable_then_writes():
    cycle, host = make_cycle()
    host.write_paused = True

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        assert host.calls == [("wait_writable",)] and cycle.state is SENDING_BODY
        host.release_writes()

    run_app(cycle, replying(start(), body(b"ok")), connection)
    assert host.calls == [
        ("wait_writable",),
        ("write", head(b"content-length: 2") + b"ok"),
        ("response_complete", True),
    ]


def test_a_disconnect_while_waiting_to_write_makes_the_send_a_no_op(error_log):
    cycle, host = make_cycle()
    host.write_paused = True
    returned: list[bool] = []

    async def app(scope, receive, send):
        await send(start())
        await send(body(b"ok"))
        returned.append(True)

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        cycle.disconnect()
        host.release_writes()  # the connection releases its writers when it is lost

    run_app(cycle, app, connection)
    assert returned == [True]
    assert host.calls == [("wait_writable",)]
    assert (cycle.state, error_log) == (FAILED, [])


@pytest.mark.parametrize(
    "message",
    [start(), body(b"x"), {"type": "http.response.trailers"}],
    ids=["start", "body-before-start", "unknown-type"],
)
def test_send_after_disconnect_is_a_no_op_whatever_the_message(message):
    cycle, host = make_cycle()
    cycle.disconnect()
    run(cycle.send(message))
    assert (cycle.state, host.calls) == (AWAITING_START, [])


# Keep-alive and close, as the head announces them


@pytest.mark.parametrize(
    ("version", "keeps", "body_done", "draining", "streamed", "tail", "keep_alive"),
    [
        ("1.1", True, True, False, False, b"content-length: 2\r\n\r\n", True),
        ("1.0", True, True, False, False, b"content-length: 2\r\nconnection: keep-alive\r\n\r\n", True),
        ("1.1", False, True, False, False, b"content-length: 2\r\nconnection: close\r\n\r\n", False),
        ("1.0", False, True, False, False, b"content-length: 2\r\nconnection: close\r\n\r\n", False),
        ("1.1", True, True, True, False, b"content-length: 2\r\nconnection: close\r\n\r\n", False),
        ("1.1", True, True, True, True, b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n", False),
        ("1.1", True, False, False, False, b"content-length: 2\r\nconnection: close\r\n\r\n", False),
        ("1.1", True, False, False, True, b"transfer-encoding: chunked\r\n\r\n", True),
    ],
    ids=[
        "http11",
        "http10-keep-alive",
        "http11-close",
        "http10",
        "draining",
        "draining-streamed",
        "body-unread",
        "body-unread-streamed",
    ],
)
def test_the_head_announces_keep_alive_or_close(
    version, keeps, body_done, draining, streamed, tail, keep_alive
):
    cycle, host = make_cycle(method="POST", version=version, keep_alive=keeps, body_done=body_done)
    if draining:
        cycle.close_after()
    messages = [body(b"o", more=True), body(b"k")] if streamed else [body(b"ok")]
    run_app(cycle, replying(start(), *messages))
    assert host.writes[0].startswith(b"HTTP/1.1 200 OK\r\nserver: test-server\r\n" + tail)
    assert host.calls[-1] == ("response_complete", keep_alive)


@pytest.mark.parametrize(
    ("written", "tail", "keep_alive"),
    [
        (False, b"content-length: 2\r\nconnection: close\r\n\r\nok", False),
        (True, b"chunked\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n", True),
    ],
    ids=["head-held", "head-written"],
)
def test_close_after_changes_the_head_only_while_it_is_unwritten(written, tail, keep_alive):
    cycle, host = make_cycle()

    async def app(scope, receive, send):
        await send(start())
        if written:
            await send(body(b"o", more=True))
        cycle.close_after()  # the server starts draining now
        await send(body(b"k" if written else b"ok"))

    run_app(cycle, app)
    assert host.writes[0].endswith(tail)
    assert host.calls[-1] == ("response_complete", keep_alive)


@pytest.mark.parametrize(
    ("messages", "unwritten"),
    [
        ([], True),
        ([start()], True),
        ([start(), body(b"a", more=True)], False),
        ([start(), body(b"a")], False),
    ],
    ids=["fresh", "after-start", "after-the-head", "after-done"],
)
def test_abandon_returns_true_only_before_the_head_was_written(messages, unwritten):
    cycle, host = make_cycle()

    async def sending() -> None:
        for message in messages:
            await cycle.send(message)

    run(sending())
    calls = list(host.calls)
    assert cycle.abandon() is unwritten
    run(cycle.send(body(b"more")))  # the client is treated as gone: send is a no-op
    assert host.calls == calls


def test_abandon_wakes_a_waiting_receive_with_disconnect():
    cycle, _host = make_cycle(method="POST", body_done=False)
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        got.append(await receive())

    async def connection(task: asyncio.Task[None]) -> None:
        await settle()
        assert cycle.abandon() is True

    run_app(cycle, app, connection)
    assert got == [DISCONNECT]


# The ASGI trailers extension (served over HTTP/2; on HTTP/1.1 a chunked body ends with them)


def trailers(headers: list[tuple[bytes, bytes]], more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.trailers", "headers": headers, "more_trailers": more}


def test_trailers_end_a_chunked_body():
    cycle, host = make_cycle()
    start_message = {**start(), "trailers": True}
    run_app(
        cycle,
        replying(
            start_message,
            body(b"data"),
            trailers([(b"x-checksum", b"1")], more=True),
            trailers([(b"x-more", b"2")]),
        ),
    )
    assert b"".join(host.writes) == (
        head(b"transfer-encoding: chunked") + b"4\r\ndata\r\n0\r\nx-checksum: 1\r\nx-more: 2\r\n\r\n"
    )
    assert host.calls[-1] == ("response_complete", True)
    assert cycle.state is DONE


def test_trailers_after_a_content_length_body_are_dropped():
    cycle, host = make_cycle()
    start_message = {**start(headers=[(b"content-length", b"4")]), "trailers": True}
    run_app(cycle, replying(start_message, body(b"da", more=True), body(b"ta"), trailers([(b"x-a", b"1")])))
    assert b"".join(host.writes) == head(b"content-length: 4") + b"data"
    assert cycle.state is DONE


def test_the_response_is_not_complete_until_its_trailers(error_log):
    cycle, host = make_cycle()
    run_app(cycle, replying({**start(), "trailers": True}, body(b"data")))
    assert ("response_complete", True) not in host.calls
    assert host.calls[-1] == ("abort",)
    assert logged(error_log) == [(INCOMPLETE, None)]


def test_trailers_without_asking_for_them_are_refused(error_log):
    cycle, _host = make_cycle()
    errors: list[AppProtocolError] = []
    run_app(cycle, _refused_body_app(errors, start(), body(b"data"), trailers([(b"x-a", b"1")])))
    assert [str(exc) for exc in errors] == [
        "ASGI message 'http.response.trailers' is not allowed in state 'response complete'"
    ]
