"""How one connection's responses look on the wire in HTTP/1.1: heads, bodies, chunks, few writes.

The cycle (``cycle.py``) decides what is sent and checks it (states, lengths, app faults); a
writer frames it. This is the HTTP/1.1 writer, one per connection; HTTP/2 has one per stream.

Rules:
- A response whose whole body comes in its first message (and is under ``COALESCE_LIMIT``) is one
  ``write`` of head and body together: the common case, and the fast path. While more app calls
  are about to run, that write waits for them in the connection's queue (``response_batch.py``);
  so whatever the connection writes next goes through ``flush`` first (``error`` and
  ``interim_continue`` do).
- Body messages sent within one loop iteration leave in one write: they are queued and flushed by a
  ``call_soon`` callback, at once when the queue reaches ``COALESCE_LIMIT`` (so the transport's
  ``write_paused`` keeps telling the truth to an app that sends without waiting), and with the last
  message. A lone message (a server-sent event) still leaves before the loop next waits for I/O.
- Large bodies and large chunks are framed around the app's own object and go out through
  ``writelines``, uncopied (``flow.writelines_of``).
- Once the connection is lost (``drop``), queued bytes are forgotten and nothing more is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.headers import is_safe_value, is_token
from asgi_worker.http.response import (
    CHUNKED,
    CHUNKED_END,
    CONTENT_LENGTH,
    CONTINUE_RESPONSE,
    NO_BODY,
    DefaultHeaderBlock,
    ResponsePlan,
    check_length,
    encode_chunk,
    encode_error_response,
    plan_response,
)
from asgi_worker.http.response_batch import ResponseBatch

__all__ = ["COALESCE_LIMIT", "Http1Writer"]

# Bodies at least this large are handed over as they are (``writelines``) instead of copied onto
# their head or queued; also the queue size that is flushed at once.
COALESCE_LIMIT = 65536

# What follows a large chunk's data: its CRLF, and the last-chunk marker when no more is coming.
_CHUNK_END_MORE = b"\r\n"
_CHUNK_END_LAST = b"\r\n" + CHUNKED_END


class Http1Writer:
    """The HTTP/1.1 framing of one connection. Created by ``HttpConnection`` once connected."""

    __slots__ = (
        "_batch",
        "_flush_due",
        "_gone",
        "_out",
        "_out_size",
        "_trailer_lines",
        "_write",
        "_writelines",
        "defaults",
    )

    def __init__(
        self,
        write: Callable[[bytes], Any],
        writelines: Callable[[list[bytes]], Any],
        defaults: DefaultHeaderBlock,
        batch: ResponseBatch | None = None,
    ) -> None:
        self._batch = batch or ResponseBatch()  # a batch of its own holds nothing: apps_ready stays 0
        self._write = write
        self._writelines = writelines
        self.defaults = defaults
        self._out: list[bytes] | None = None  # bytes queued for one write
        self._out_size = 0
        self._flush_due = False
        self._gone = False
        self._trailer_lines: list[bytes] | None = None  # made on first use: a few bytes per idle connection

    def start(
        self,
        status: int,
        headers: Any,
        body: bytes,
        more: bool,
        scope: dict[str, Any],
        request_keeps: bool,
        draining: bool,
        body_complete: bool,
    ) -> ResponsePlan:
        """Validate and encode the head (``response.plan_response``) and write it with the first body
        message. Raises ``AppProtocolError`` before writing anything (an invalid head, a body that
        breaks the app's Content-Length)."""
        size = len(body)
        plan = plan_response(
            status,
            headers,
            self.defaults,
            None if more else size,
            scope["method"] == "HEAD",
            scope["http_version"] == "1.0",
            request_keeps,
            draining,
            body_complete,
        )
        if plan.framing == CONTENT_LENGTH:
            if size != plan.content_length and (not more or size > plan.content_length):
                check_length(plan, size, more)  # raises: the body breaks the app's Content-Length
            if not more and size < COALESCE_LIMIT:
                batch = self._batch
                if batch.apps_ready or batch.held:  # not a lone request: leave with the batch
                    self._hold(plan.head + body)
                elif self._out is None:
                    self._write(plan.head + body)  # the common case: the whole response in one write
                else:  # behind a response held for a batch (pipelined)
                    self.body(plan, body, False, plan.head)
                return plan
        self.body(plan, body, more, plan.head)
        return plan

    def body(self, plan: ResponsePlan, body: bytes, more: bool, head: bytes = b"") -> None:
        """Frame a body message (after ``head``, if given) and queue it, or write it with the queue."""
        out = self._out
        if out is None:
            out = self._out = []
        size = len(body)
        if head:
            out.append(head)
            self._out_size += len(head)
        framing = plan.framing
        if framing == CHUNKED:
            if size >= COALESCE_LIMIT:  # framed around the app's own object: no copy of a large body
                out += (b"%x\r\n" % size, body, _CHUNK_END_MORE if more else _CHUNK_END_LAST)
            elif size:
                out.append(encode_chunk(body) + CHUNKED_END if not more else encode_chunk(body))
            elif not more:
                out.append(CHUNKED_END)
        elif size and framing != NO_BODY:
            out.append(body)
        self._out_size += size
        if not more or self._out_size >= COALESCE_LIMIT:
            self.flush()
        elif not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def _hold(self, response: bytes) -> None:
        """Queue a complete response for the batch to write (``response_batch.py``)."""
        out = self._out
        if out is None:
            self._out = [response]
            self._out_size = len(response)
            self._batch.hold(self)
        else:
            out.append(response)
            self._out_size += len(response)
            if self._out_size >= COALESCE_LIMIT:
                self.flush()

    def trailers(self, plan: ResponsePlan, headers: Any, more: bool) -> None:
        """Trailer fields (the ASGI trailers extension) end a chunked body: the last chunk, the
        fields, the blank line. A body framed otherwise has no place for them: they are dropped."""
        lines = self._trailer_lines
        if lines is None:
            lines = self._trailer_lines = []
        for name, value in headers:
            if not (is_token(name) and is_safe_value(value)):
                raise AppProtocolError(f"invalid trailer {name!r}: {value!r}")
            lines.append(b"%b: %b\r\n" % (name, value))
        if more:
            return
        self._trailer_lines = None
        if plan.framing == CHUNKED:
            self.body(plan, b"", True, b"0\r\n" + b"".join(lines) + b"\r\n")
        self.flush()

    def interim_continue(self) -> None:
        """``100 Continue``: the client may send the body it held back."""
        if self._out:
            self.flush()
        self._write(CONTINUE_RESPONSE)

    def error(self, status: int) -> None:
        """The server's own complete answer, closing the connection: after the app's earlier
        responses, in place of this one's (nothing of it was written)."""
        if self._out:
            self.flush()
        self._write(encode_error_response(status, self.defaults))

    def flush(self) -> None:
        """Write what is queued: one ``write`` when small (joined), else ``writelines``, uncopied."""
        out = self._out
        if not out:
            return
        self._out = None
        size, self._out_size = self._out_size, 0
        if self._gone:
            return
        if len(out) == 1:
            self._write(out[0])
        elif size < COALESCE_LIMIT:
            self._write(b"".join(out))
        else:
            self._writelines(out)

    def drop(self) -> None:
        """The connection is lost: forget what is queued; write nothing more."""
        self._gone = True
        self._out = None
        self._out_size = 0

    def _flush_soon(self) -> None:
        self._flush_due = False
        self.flush()
