"""Serve a WSGI (PEP 3333) application from a thread pool, behind the one ASGI HTTP cycle.

Rules:
- The app runs in one of ``--wsgi-threads`` worker threads; the event loop only awaits its future.
  Every step back to the loop (``receive``, ``send``) is ``run_coroutine_threadsafe(...).result()``
  from the worker, so the thread waits and the loop never does.
- At most that many calls are ever in the executor: a request first takes a slot on the loop, the
  others wait in a FIFO line of loop futures. Why the bound is the pool size: a queued work item adds
  no throughput, while a parked coroutine is just an ASGI app that awaits. It has not called
  ``receive``, so its connection pauses reading at the body high-water mark; ``--limit-concurrency``
  counts it; a graceful stop lets it run, the graceful timeout cancels it out of the line. A slot
  comes back when its thread returns, not when its request is cancelled: an abandoned call holds it.
- ``wsgi.input`` pulls ``http.request`` messages on demand and keeps at most one read ahead, so an
  upload is never buffered whole; the server pauses reading while its unconsumed body is above the
  high-water mark, which is the backpressure. The read-ahead starts with the app's first read or its
  first response message, so ``Expect: 100-continue`` is answered only if the app reads the body.
- The head is held until the first non-empty body chunk (PEP 3333), which is what lets
  ``start_response(..., exc_info)`` replace it after an error. Each chunk is sent with
  ``more_body=True`` and the thread waits for that send, so a slow client slows the app, not memory.
  A list or tuple of at most one item goes out as one final message: one write, with Content-Length.
- Once the body is in (or a response streams) a watch awaits ``http.disconnect``; after it the
  thread stops iterating. The iterable's ``close()`` is always called. A cancelled request (the
  server gave up) makes the thread's next step raise ``ClientDisconnected``.
- A body that cannot complete (the client left, or the server ended the request: past
  ``--limit-request-body``, stalled past ``--timeout-request-body``, malformed) is never handed over
  as if whole: the app's next ``wsgi.input`` read raises ``ClientDisconnected`` (an ``OSError``,
  which frameworks turn into their "unreadable body" error). If the app lets it through, that is
  the client's doing, not an app fault: one debug line, no traceback, and the server has answered
  the client already (413, 408, 400) or closed the connection.
- Any other exception from the app propagates out of the ASGI callable: the cycle answers 500 if no
  byte was written, else closes the connection.
- ``lifespan`` is answered (WSGI has none) and its shutdown stops the pool; ``websocket`` is closed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from asgi_worker.errors import ClientDisconnected
from asgi_worker.types import ExcInfo, Message, Receive, Scope, Send, WSGIApp, WSGIEnviron
from asgi_worker.wsgi_environ import build_environ, encode_headers, encode_status

__all__ = ["WSGI_THREADS", "WSGIAdapter", "WSGIInput", "WSGIPool"]

logger = logging.getLogger("asgi_worker.error")

# Default worker threads per adapter: uvicorn's WSGIMiddleware uses 10 (``workers=10``), as does
# a2wsgi. A request holds its thread for its whole life, so this bounds concurrent WSGI requests per
# process; ``--wsgi-threads`` changes it.
WSGI_THREADS = 10

_T = TypeVar("_T")
_ABANDONED = "the server stopped waiting for this request"


class WSGIInput:
    """``wsgi.input``: the request body, pulled as the app reads it. Used from the worker thread only.

    ``pull()`` returns the next non-empty chunk, or b"" at the end of the body.
    """

    def __init__(self, pull: Callable[[], bytes]) -> None:
        self._pull = pull
        self._buffer = bytearray()
        self._eof = False

    def _fill(self) -> bool:
        """Append one more chunk to the buffer; False once the body is over."""
        if self._eof:
            return False
        chunk = self._pull()
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if negative or None); b"" at the end."""
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        """One line including its ``\\n`` (at most ``size`` bytes if given); b"" at the end."""
        limit = -1 if size is None else size
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if end != -1:
                cut = end + 1
                break
            searched = len(self._buffer)
            if 0 <= limit <= searched or not self._fill():
                cut = searched
                break
        return self._take(cut if limit < 0 else min(cut, limit))

    def readlines(self, hint: int = -1) -> list[bytes]:
        """The remaining lines; stops once their total length reaches ``hint`` when it is positive."""
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class _Exchange:
    """One request: the loop-side read-ahead and the worker-side PEP 3333 callables."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Receive, send: Send) -> None:
        self._loop = loop
        self._receive = receive
        self._send = send
        self.disconnected = False  # set on the loop, read by the worker
        self._ahead: asyncio.Task[Message] | None = None  # the next body message, read ahead
        self._watch: asyncio.Task[None] | None = None  # waits for http.disconnect once the body is in
        self._lock = threading.Lock()  # orders a worker's call against ``abandon``
        self._pending: concurrent.futures.Future[Any] | None = None
        self._abandoned = False
        self._body_done = False
        self._start: Message | None = None
        self._head_sent = False

    # Loop side.

    async def _pull(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request":
            self.disconnected = True
        elif not message.get("more_body", False):  # the body is all in: now watch for the client leaving
            self._watch = self._loop.create_task(self._watch_disconnect())
        return message

    async def _watch_disconnect(self) -> None:
        await self._receive()  # after the body only http.disconnect comes (also once the response is done)
        self.disconnected = True

    async def _take(self) -> Message:
        ahead = self._ahead
        if ahead is None:
            ahead = self._ahead = self._loop.create_task(self._pull())
        message = await ahead
        if message["type"] == "http.request" and message.get("more_body", False):
            self._ahead = self._loop.create_task(self._pull())  # keep one read ahead
        return message

    async def _deliver(self, messages: list[Message]) -> None:
        for message in messages:
            await self._send(message)
        if self._ahead is None and messages[-1]["more_body"]:  # a response is streaming: start watching
            self._ahead = self._loop.create_task(self._pull())

    def abandon(self) -> None:
        """The ASGI task was cancelled: fail the worker's current and every later call to the loop."""
        with self._lock:
            self._abandoned = True
            if self._pending is not None:
                self._pending.cancel()

    async def finish(self) -> None:
        """Stop the read-ahead and the watch. Call on the loop once the worker is done (or abandoned)."""
        tasks = [task for task in (self._ahead, self._watch) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # Worker side.

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        with self._lock:
            if self._abandoned:
                coro.close()
                raise ClientDisconnected(_ABANDONED)
            try:
                future = asyncio.run_coroutine_threadsafe(coro, self._loop)
            except RuntimeError:  # the loop is closed
                coro.close()
                raise
            self._pending = future
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ClientDisconnected(_ABANDONED) from None
        finally:
            self._pending = None

    def read_chunk(self) -> bytes:
        """The next non-empty body chunk, b"" at the end. Raises ``ClientDisconnected``."""
        while not self._body_done:
            message = self._call(self._take())
            if message["type"] != "http.request":
                self._body_done = True
                raise ClientDisconnected("the client disconnected before the request body was complete")
            self._body_done = not message.get("more_body", False)
            body: bytes = message.get("body", b"")
            if body:
                return body
        return b""

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``: again only with ``exc_info``, which re-raises once the head is out."""
        if exc_info is not None:
            try:
                if self._head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self._start is not None:
            raise RuntimeError("start_response() called twice without exc_info")
        self._start = {
            "type": "http.response.start",
            "status": encode_status(status),
            "headers": encode_headers(headers),
        }
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333 ``write()``: send ``data`` now; returns once the server has taken it."""
        if self._start is None:
            raise RuntimeError("write() called before start_response()")
        if data:
            self._send_body(data, True)

    def _send_body(self, body: bytes, more: bool) -> None:
        if not isinstance(body, bytes):
            raise TypeError(f"a WSGI body chunk must be bytes, not {type(body).__name__}")
        message: Message = {"type": "http.response.body", "body": body, "more_body": more}
        if self._head_sent:
            self._call(self._deliver([message]))
            return
        if self._start is None:
            raise RuntimeError("the WSGI application did not call start_response()")
        self._head_sent = True
        self._call(self._deliver([self._start, message]))

    def run(self, app: WSGIApp, environ: WSGIEnviron) -> None:
        """Call the app and send its response. Runs in a worker thread; the app's exceptions propagate."""
        result = app(environ, self.start_response)
        try:
            if isinstance(result, (list, tuple)) and len(result) <= 1 and not self._head_sent:
                self._send_body(result[0] if result else b"", False)
                return
            for chunk in result:
                if self.disconnected:
                    return
                if chunk:
                    self._send_body(chunk, True)
            if not self.disconnected:
                self._send_body(b"", False)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _release_soon(loop: asyncio.AbstractEventLoop, release: Callable[[], None]) -> None:
    """Give a slot back from the thread that held it; a closed loop has nobody left waiting."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(release)


class WSGIPool:
    """``size`` worker threads (started with the first call) and the line of calls waiting for one."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a WSGI thread pool needs at least 1 thread, not {size}")
        self.size = size
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def busy(self) -> int:
        """Calls holding a thread (an abandoned call holds it until its thread returns)."""
        return self.size - self._free

    @property
    def waiting(self) -> int:
        """Calls parked on the loop until a thread frees."""
        return len(self._waiters)

    async def run(self, func: Callable[..., None], *args: Any) -> None:
        """Call ``func(*args)`` in a thread once one is free (FIFO); returns or raises as it did.

        Cancelled while waiting, ``func`` never runs; while running, its thread keeps its slot until done.
        """
        await self._acquire()
        loop = asyncio.get_running_loop()
        try:
            future = self._pool().submit(func, *args)
        except BaseException:
            self._release()
            raise
        try:
            await asyncio.wrap_future(future)
        finally:
            if future.done():
                self._release()
            else:
                future.add_done_callback(lambda _done: _release_soon(loop, self._release))

    async def _acquire(self) -> None:
        if self._free:  # never while a live waiter is parked: ``_release`` hands slots to them first
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):  # ``_release`` may have dropped it already
                    self._waiters.remove(waiter)
            else:  # granted a slot just as it was cancelled: pass the slot on
                self._release()
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # skip a waiter cancelled but not yet resumed
                waiter.set_result(None)
                return
        self._free += 1

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(self.size, "asgi_worker-wsgi")
        return self._executor

    def shutdown(self) -> None:
        """Stop the threads without waiting: idle ones exit now, a running call finishes. Idempotent.

        A call still waiting (or a later one) gets a new pool when its turn comes.
        """
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class WSGIAdapter:
    """A WSGI app as an ASGI 3 callable, run in a ``WSGIPool`` of ``threads`` threads."""

    def __init__(self, app: WSGIApp, threads: int = WSGI_THREADS) -> None:
        self.app = app
        self.pool = WSGIPool(threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._serve_http(scope, receive, send)
        elif kind == "lifespan":
            await self._serve_lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise ValueError(f"a WSGI application cannot serve a {kind!r} scope")

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange(asyncio.get_running_loop(), receive, send)
        environ = build_environ(scope, WSGIInput(exchange.read_chunk), multithread=self.pool.size > 1)
        try:
            await self.pool.run(exchange.run, self.app, environ)
        except ClientDisconnected as exc:
            if not exchange.disconnected:  # not ours: an app error like any other
                raise
            logger.debug("WSGI request ended before its body was complete: %s", exc)
        except asyncio.CancelledError:
            exchange.abandon()  # the thread cannot be stopped: make its next loop call fail instead
            raise
        finally:
            await exchange.finish()

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def shutdown(self) -> None:
        """Stop the pool without waiting (``WSGIPool.shutdown``). Idempotent."""
        self.pool.shutdown()
