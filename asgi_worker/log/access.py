"""The access log: one line per completed response, at little cost to the event loop.

Lines are logged when a response is complete, so status, size and duration are final. Whether to
log is decided once per server (``AccessLog.enabled``), never per request.

Two paths:
- Default configuration (one plain ``StreamHandler`` on ``asgi_worker.access`` whose formatter is
  our ``AccessFormatter`` with its default format, or our ``JsonFormatter``): the line is formatted
  on the loop (``access_line`` for the default line; the compiled ``--access-log-format`` function;
  or ``AccessEntry.json_line``), exactly as that formatter would write it (colors included), lines are batched
  per loop iteration, and each batch is handed to a writer thread that only writes. The thread
  releases the GIL while it writes, so it does not compete with the loop (a thread that formats
  records would), and a slow or blocked stdout never stalls the loop: past ``MAX_PENDING``
  unwritten bytes, lines are dropped and counted.
- Any other configuration (``--log-config``, extra handlers or filters): records go through
  ``logging`` as usual, handed to a ``QueueListener`` thread; filters and formatters apply there.
  Each record carries an ``access_line.AccessEntry`` as ``asgi_access``; the text is rendered
  lazily, over there. The default line keeps uvicorn-like args (``access_line.record_args``).
The path and the per-line function are chosen once, in ``start``: ``log`` is rebound, so a line
costs no branch on settings. Request text is escaped either way: on text lines control characters
become ``\\xNN`` and ``"``, ``\\`` get a backslash (``text.escape_field``); JSON lines rely on JSON
escaping (no log injection). The words of every line come from ``access_line``.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import queue
import sys
import threading
from collections.abc import Callable
from time import time
from typing import TextIO

from asgi_worker.log.access_format import compile_access_format
from asgi_worker.log.access_line import (
    ACCESS_MESSAGE,
    AccessEntry,
    CompletedCycle,
    Render,
    access_line,
    record_args,
)
from asgi_worker.log.json import JsonFormatter
from asgi_worker.log.setup import DEFAULT_ACCESS_FORMAT, AccessFormatter
from asgi_worker.log.text import level_prefix, status_text

__all__ = ["AccessLog"]

# Unwritten access-log text allowed to wait for a stuck stdout before lines are dropped.
MAX_PENDING = 8 * 1024 * 1024


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
    """The access log of one server. Call ``start`` on the loop before serving and ``stop`` after.

    ``log(cycle, duration)`` logs one completed response; call it only when ``enabled``.
    ``access_format`` (gunicorn's atoms) is compiled here: a bad one raises ``ConfigError``.
    """

    def __init__(self, enabled: bool, access_format: str | None = None) -> None:
        self.logger = logging.getLogger("asgi_worker.access")
        self.enabled = enabled and self.logger.isEnabledFor(logging.INFO)
        self._render: Render | None = compile_access_format(access_format) if access_format else None
        self._listener: logging.handlers.QueueListener | None = None
        self._writer: _LineWriter | None = None
        self._lines: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: list[logging.Handler] = []
        self._prefix = "INFO:     "
        self._colors = False
        self._pid = 0
        self.log: Callable[[CompletedCycle, float], None] = self._log_record

    def start(self) -> None:
        """Choose the path (see the module docstring) and the line function, and start the thread."""
        handlers = self.logger.handlers
        if not self.enabled or not handlers or self._listener is not None or self._writer is not None:
            return
        default = _default_stream(self.logger)
        if default is not None:
            stream, formatter = default
            self._loop = asyncio.get_running_loop()
            self._writer = _LineWriter(stream)
            self._pid = os.getpid()
            if isinstance(formatter, JsonFormatter):
                self.log = self._log_json
            elif self._render is not None:
                self.log = self._log_custom
            else:
                self._colors = bool(formatter.use_colors)
                self._prefix = level_prefix("INFO", logging.INFO, self._colors) + " "
                self.log = self._log_text
            return
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
        self._handlers = list(handlers)
        self.logger.handlers = [_HandoffHandler(records)]
        self._listener.start()

    def stop(self) -> None:
        """Write out what is pending and end the thread."""
        self.log = self._log_record
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

    # The writer path: one function per kind of line, chosen in start().

    def _log_text(self, cycle: CompletedCycle, duration: float) -> None:
        lines = self._lines
        if not lines:
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]
        lines.append(f"{self._prefix}{access_line(cycle.scope, status_text(cycle.status, self._colors))}\n")

    def _log_custom(self, cycle: CompletedCycle, duration: float) -> None:
        self._append(self._render(cycle, duration, time()) + "\n")  # type: ignore[misc]

    def _log_json(self, cycle: CompletedCycle, duration: float) -> None:
        self._append(AccessEntry(cycle, duration, time(), self._render).json_line(self._pid) + "\n")

    def _append(self, line: str) -> None:
        lines = self._lines
        if not lines:
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]
        lines.append(line)

    def _flush(self) -> None:
        if self._lines and self._writer is not None:
            text = "".join(self._lines)
            self._lines.clear()
            self._writer.write(text)

    # The logging path: a record per line, rendered lazily by whichever formatter handles it.

    def _log_record(self, cycle: CompletedCycle, duration: float) -> None:
        logger = self.logger
        entry = AccessEntry(cycle, duration, time(), self._render)
        if self._render is not None:
            record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "%s", (entry,), None)
        else:
            args = record_args(entry)
            record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, ACCESS_MESSAGE, args, None)
        record.asgi_access = entry
        logger.handle(record)


def _default_stream(logger: logging.Logger) -> tuple[TextIO, AccessFormatter | JsonFormatter] | None:
    """The stream and formatter of a default access configuration, or None for the operator's own."""
    if logger.filters or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    formatter = handler.formatter
    if (
        type(handler) is not logging.StreamHandler
        or handler.filters
        or handler.level > logging.INFO
        or not (
            (type(formatter) is AccessFormatter and formatter._fmt == DEFAULT_ACCESS_FORMAT)
            or type(formatter) is JsonFormatter
        )
    ):
        return None
    stream: TextIO = handler.stream
    return (stream if stream is not None else sys.stdout), formatter
