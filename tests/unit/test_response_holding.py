"""``ResponseBatch`` on its own, and with the ``Http1Writer`` that holds into it (rules in
``http/response_batch.py``): held responses leave in the order they were held, on the loop's next
iteration or at once at ``HOLD_LIMIT``, and whatever a connection writes next goes after them.

The wire-level tests, with real connections on every backend: tests/http/test_response_batch.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from asgi_worker.http.h1_writer import COALESCE_LIMIT, Http1Writer
from asgi_worker.http.response import CONTINUE_RESPONSE, DefaultHeaderBlock, encode_error_response
from asgi_worker.http.response_batch import HOLD_LIMIT, ResponseBatch

SCOPE = {"method": "GET", "http_version": "1.1"}
DEFAULTS = DefaultHeaderBlock(None, [])


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)


class Flushed:
    """A writer that notes each flush in a shared list (what the batch calls)."""

    def __init__(self, name: str, flushes: list[str]) -> None:
        self.name = name
        self._flushes = flushes

    def flush(self) -> None:
        self._flushes.append(self.name)


class Wire:
    """The bytes a connection's writer wrote, in order, as one list for every connection."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, bytes]] = []

    def writer(self, name: str, batch: ResponseBatch) -> Http1Writer:
        def write(data: bytes) -> None:
            self.writes.append((name, bytes(data)))

        def writelines(data: list[bytes]) -> None:
            self.writes.append((name, b"".join(data)))

        return Http1Writer(write, writelines, DEFAULTS, batch)


def respond(writer: Http1Writer, body: bytes) -> None:
    """A complete small response, as the cycle sends it: the fast path."""
    writer.start(200, [], body, False, SCOPE, True, False, True)


def on_a_loop(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 5.0))


async def one_turn() -> None:
    """Let the loop run once more: a callback queued before this runs before it returns."""
    await asyncio.sleep(0)


# ResponseBatch


def test_held_writers_leave_on_the_next_iteration_in_the_order_they_were_held() -> None:
    async def test() -> None:
        batch, flushes = ResponseBatch(), list[str]()
        for name in "abc":
            batch.hold(Flushed(name, flushes))
        assert flushes == []  # nothing leaves inside the iteration that held it
        await one_turn()
        assert flushes == ["a", "b", "c"]
        assert batch.held == []
        batch.hold(Flushed("d", flushes))  # a new batch gets its own callback
        await one_turn()
        assert flushes == ["a", "b", "c", "d"]

    on_a_loop(test)


def test_the_batch_leaves_before_callbacks_queued_after_its_first_response() -> None:
    """Its callback is queued with the first response: app calls started after it come later."""

    async def test() -> None:
        loop = asyncio.get_running_loop()
        batch, events = ResponseBatch(), list[str]()
        batch.hold(Flushed("held", events))
        loop.call_soon(events.append, "queued after")
        batch.hold(Flushed("held later", events))
        await one_turn()
        assert events == ["held", "held later", "queued after"]

    on_a_loop(test)


def test_hold_limit_writers_leave_at_once() -> None:
    async def test() -> None:
        batch, flushes = ResponseBatch(), list[str]()
        for index in range(HOLD_LIMIT - 1):
            batch.hold(Flushed(str(index), flushes))
        assert flushes == []
        batch.hold(Flushed("last", flushes))
        assert flushes == [*map(str, range(HOLD_LIMIT - 1)), "last"]  # at once, in order
        assert batch.held == []
        batch.hold(Flushed("next", flushes))  # the callback already queued releases the next one
        await one_turn()
        assert flushes[-1] == "next" and batch.held == []

    on_a_loop(test)


def test_release_with_nothing_held_writes_nothing() -> None:
    batch = ResponseBatch()
    batch.release()
    assert batch.held == [] and batch.apps_ready == 0


# Http1Writer with a batch


def test_a_lone_response_is_written_at_once() -> None:
    async def test() -> None:
        wire, batch = Wire(), ResponseBatch()
        respond(wire.writer("a", batch), b"alone")
        assert wire.writes == [("a", ok(b"alone"))]
        assert batch.held == []

    on_a_loop(test)


@pytest.mark.parametrize("because", ["apps ready", "another held"])
def test_a_response_is_held_while_app_calls_are_about_to_run_or_others_are_held(because: str) -> None:
    async def test() -> None:
        wire, batch = Wire(), ResponseBatch()
        first, second = wire.writer("a", batch), wire.writer("b", batch)
        batch.apps_ready = 1
        respond(first, b"first")
        if because == "another held":
            batch.apps_ready = 0  # the other call began: the batch still waits for its callback
        respond(second, b"second")
        assert wire.writes == []
        await one_turn()
        assert wire.writes == [("a", ok(b"first")), ("b", ok(b"second"))]

    on_a_loop(test)


def send_after_held(writer: Http1Writer, what: str) -> None:
    if what == "error":
        writer.error(400)
    elif what == "continue":
        writer.interim_continue()
    elif what == "flush":
        writer.flush()
    elif what == "response":
        respond(writer, b"next")
    else:  # a streamed response: head and first chunk, then its end
        plan = writer.start(200, [], b"chunk", True, SCOPE, True, False, True)
        writer.body(plan, b"", False)


EXPECTED_AFTER: dict[str, bytes] = {
    "error": encode_error_response(400, DEFAULTS),
    "continue": CONTINUE_RESPONSE,
    "flush": b"",
    "response": ok(b"next"),
    "stream": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nchunk\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("what", list(EXPECTED_AFTER))
def test_what_a_connection_writes_after_a_held_response_goes_after_it(what: str) -> None:
    async def test() -> None:
        wire, batch = Wire(), ResponseBatch()
        writer = wire.writer("a", batch)
        batch.apps_ready = 1
        respond(writer, b"held")
        send_after_held(writer, what)
        batch.apps_ready = 0
        await one_turn()
        await one_turn()  # a streamed body's own flush callback too
        assert b"".join(data for _name, data in wire.writes) == ok(b"held") + EXPECTED_AFTER[what]
        assert batch.held == []

    on_a_loop(test)


def test_held_responses_of_one_connection_stay_in_order_and_leave_in_one_write() -> None:
    async def test() -> None:
        wire, batch = Wire(), ResponseBatch()
        writer = wire.writer("a", batch)
        batch.apps_ready = 1
        for body in (b"one", b"two", b"three"):
            respond(writer, body)
        await one_turn()
        assert wire.writes == [("a", ok(b"one") + ok(b"two") + ok(b"three"))]

    on_a_loop(test)


def test_held_bytes_past_the_coalescing_limit_leave_at_once() -> None:
    async def test() -> None:
        wire, batch = Wire(), ResponseBatch()
        writer = wire.writer("a", batch)
        batch.apps_ready = 1
        body = b"x" * (COALESCE_LIMIT // 2)
        respond(writer, body)
        assert wire.writes == []
        respond(writer, body)
        assert b"".join(data for _name, data in wire.writes) == ok(body) * 2

    on_a_loop(test)


def test_a_lost_connection_drops_what_it_held_and_the_others_still_leave() -> None:
    async def test() -> None:
        wire, batch = Wire(), ResponseBatch()
        lost, kept = wire.writer("lost", batch), wire.writer("kept", batch)
        batch.apps_ready = 1
        respond(lost, b"lost")
        respond(kept, b"kept")
        lost.drop()
        await one_turn()
        assert wire.writes == [("kept", ok(b"kept"))]

    on_a_loop(test)


def test_a_writer_without_a_batch_of_its_own_writes_at_once() -> None:
    """``Http1Writer``'s default batch: nothing ever counts app calls in it."""

    def write(data: Any) -> None:
        writes.append(bytes(data))

    writes: list[bytes] = []
    writer = Http1Writer(write, lambda data: writes.append(b"".join(data)), DEFAULTS)
    respond(writer, b"now")
    assert writes == [ok(b"now")]
