"""Size limits on the request head, declared once with the precedent each one follows.

A limit protects memory, not taste: each is large enough for any real browser or proxy and small
enough that a hostile client cannot make one connection hold megabytes of half-parsed head.

The head budget (``RequestLimits.head``) counts, for each request on its own, every byte of its head as
received: from the first byte of the request line through the CRLF of the empty line that ends the
head. Empty lines before the request line (RFC 9112 2.2 lets a server skip them) are not counted and
never kept; the body and any request pipelined after it are not part of the head. A head of exactly
``head`` bytes is read; one byte more is 431, answered as soon as the head's bytes pass the budget,
without waiting for its end, so an unfinished head never holds more than the budget plus one read.
Why raw bytes: they are what a client can make us hold (h11 buffers the head whole), and the only
measure both parsers can take the same way in every chunking. A sum over parsed fields would miss
the whitespace around values and in the request line, which llhttp skips unseen and h11 buffers,
and which a client can make as long as it likes.
A chunked body's trailer section is held to the same budget (by ``chunks.py``, for both parsers).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_LIMIT_REQUEST_FIELDS",
    "DEFAULT_LIMIT_REQUEST_FIELD_SIZE",
    "DEFAULT_LIMIT_REQUEST_HEAD",
    "DEFAULT_LIMIT_REQUEST_LINE",
    "RequestLimits",
]

# The request target (method, URL and version line). gunicorn's default is 4094, which real sites
# outgrow with long query strings; nginx's large_client_header_buffers is 8 KiB. Past it: 414.
DEFAULT_LIMIT_REQUEST_LINE = 8190

# Header field count. gunicorn's limit_request_fields default; browsers send 10-30. Past it: 431.
DEFAULT_LIMIT_REQUEST_FIELDS = 100

# One header line (name + value). gunicorn's limit_request_field_size default. Past it: 431.
DEFAULT_LIMIT_REQUEST_FIELD_SIZE = 8190

# The whole head, measured as the module docstring says. uvicorn's h11 default
# (h11_max_incomplete_event_size, which sets this) is 16 KiB, which breaks apps with large cookies;
# Node.js settled on 16 KiB too, nginx allows 4 x 8 KiB. We take 64 KiB. Past it: 431.
DEFAULT_LIMIT_REQUEST_HEAD = 65536


@dataclass(frozen=True)
class RequestLimits:
    """The limits one parser enforces; 0 for a field means "no limit"."""

    request_line: int = DEFAULT_LIMIT_REQUEST_LINE
    fields: int = DEFAULT_LIMIT_REQUEST_FIELDS
    field_size: int = DEFAULT_LIMIT_REQUEST_FIELD_SIZE
    head: int = DEFAULT_LIMIT_REQUEST_HEAD
    # The request body (--limit-request-body): a larger declared Content-Length, or a chunked body
    # growing past it, is 413. Off by default, as in uvicorn.
    body: int = 0
