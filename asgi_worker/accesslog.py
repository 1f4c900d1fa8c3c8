"""The access log: one line per completed response, at little cost to the event loop.

Lines are logged when a response is complete, so status, size and duration are final. Whether to
log is decided once per server (``AccessLog.enabled``), never per request.

Two paths:
- Default configuration (our own stream handler and format on ``asgi_worker.access``): the line is
  formatted on the loop with one f-string, lines are batched per loop iteration, and each batch is
  handed to a writer thread that only writes. The thread releases the GIL while it writes, so it
  does not compete with the loop (a thread that formats records would), and a slow or blocked
  stdout never stalls the loop: past ``MAX_PENDING`` unwritten bytes, lines are dropped and counted.
- Any other configuration (``--log-config``, extra handlers or filters): records go through
  ``logging`` as usual, handed to a ``QueueListener`` thread; filters and formatters apply there.
Request text is escaped either way: control characters become ``\\xNN`` (no log injection).
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import sys
import threading
from typing import Any, TextIO

from asgi_worker.http.response import reason_phrase
from asgi_worker.logs import ACCESS_MESSAGE, DEFAULT_ACCESS_FORMAT, AccessFormatter, escape_controls

__all__ = ["AccessLog"]

# Unwritten access-log text allowed to wait for a stuck stdout before lines are dropped.
MAX_PENDING = 8 * 1024 * 1024

_STATUS_TEXT: dict[int, str] = {}


def _status_text(status: int) -> str:
    text = _STATUS_TEXT.get(status)
    if text is None:
        text = _STATUS_TEXT[status] = f"{status} {reason_phrase(status)}".rstrip()
    return text


class _LineWriter:
    """Writes text batches to a stream from its own thread; ``write`` never waits."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._pending = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="asgi_worker-access-log", daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        if self._pending > MAX_PENDING:
            self.dropped += text.count("\n")
            return
        self._pending += len(text)
        self._queue.put(text)

    def _run(self) -> None:
        while True:
            text = self._queue.get()
            if text is None:
                return
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):  # stdout closed under us: nothing useful left to do
                pass
            self._pending -= len(text)

    def close(self) -> None:
        """Write what is queued, then end the thread (bounded wait)."""
        self._queue.put(None)
        self._thread.join(5.0)


class _HandoffHandler(logging.handlers.QueueHandler):
    """Queues records for the listener thread as they are: formatting happens over there."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class AccessLog:
    """The access log of one server. Call ``start`` on the loop before serving and ``stop`` after."""

    def __init__(self, enabled: bool) -> None:
        self.logger = logging.getLogger("asgi_worker.access")
        self.enabled = enabled and self.logger.isEnabledFor(logging.INFO)
        self._listener: logging.handlers.QueueListener | None = None
        self._writer: _LineWriter | None = None
        self._lines: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: list[logging.Handler] = []

    def start(self) -> None:
        """Choose the path (see the module docstring) and start its thread."""
        handlers = self.logger.handlers
        if not self.enabled or not handlers or self._listener is not None or self._writer is not None:
            return
        stream = _default_stream(self.logger)
        if stream is not None:
            self._loop = asyncio.get_running_loop()
            self._writer = _LineWriter(stream)
            return
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
        self._handlers = list(handlers)
        self.logger.handlers = [_HandoffHandler(records)]
        self._listener.start()

    def stop(self) -> None:
        """Write out what is pending and end the thread."""
        if self._writer is not None:
            self._flush()
            self._writer.close()
            if self._writer.dropped:
                logging.getLogger("asgi_worker.error").warning(
                    "%d access log lines were dropped: stdout did not keep up", self._writer.dropped
                )
            self._writer = None
        if self._listener is not None:
            self._listener.stop()
            self.logger.handlers = self._handlers
            self._listener = None

    def log(self, scope: dict[str, Any], status: int, size: int, duration: float) -> None:
        """Log one completed response. Call only when ``enabled``."""
        client = scope["client"]
        client_text = f"{client[0]}:{client[1]}" if client else "-"
        query = scope["query_string"]
        target = scope["raw_path"].decode("latin-1")
        if query:
            target = f"{target}?{query.decode('latin-1')}"
        if self._writer is None:
            self.logger.info(
                ACCESS_MESSAGE,
                client_text,
                scope["method"],
                target,
                scope["http_version"],
                status,
                size,
                duration,
            )
            return
        lines = self._lines
        if not lines:
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]
        request_line = escape_controls(f"{scope['method']} {target} HTTP/{scope['http_version']}")
        lines.append(f'INFO:     {client_text} - "{request_line}" {_status_text(status)}\n')

    def _flush(self) -> None:
        if self._lines and self._writer is not None:
            text = "".join(self._lines)
            self._lines.clear()
            self._writer.write(text)


def _default_stream(logger: logging.Logger) -> TextIO | None:
    """The stream of the default access configuration, or None when the operator configured their own."""
    if logger.filters or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    formatter = handler.formatter
    if (
        type(handler) is not logging.StreamHandler
        or handler.filters
        or handler.level > logging.INFO
        or type(formatter) is not AccessFormatter
        or formatter._fmt != DEFAULT_ACCESS_FORMAT
    ):
        return None
    stream: TextIO = handler.stream
    return stream if stream is not None else sys.stdout
