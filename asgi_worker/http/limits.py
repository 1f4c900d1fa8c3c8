"""Size limits on the request head, declared once with the precedent each one follows.

A limit protects memory, not taste: each is large enough for any real browser or proxy and small
enough that a hostile client cannot make one connection hold megabytes of half-parsed head.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_LIMIT_REQUEST_FIELDS",
    "DEFAULT_LIMIT_REQUEST_FIELD_SIZE",
    "DEFAULT_LIMIT_REQUEST_HEAD",
    "DEFAULT_LIMIT_REQUEST_LINE",
    "HeadLimits",
]

# The request target (method, URL and version line). gunicorn's default is 4094, which real sites
# outgrow with long query strings; nginx's large_client_header_buffers is 8 KiB. Past it: 414.
DEFAULT_LIMIT_REQUEST_LINE = 8190

# Header field count. gunicorn's limit_request_fields default; browsers send 10-30. Past it: 431.
DEFAULT_LIMIT_REQUEST_FIELDS = 100

# One header line (name + value). gunicorn's limit_request_field_size default. Past it: 431.
DEFAULT_LIMIT_REQUEST_FIELD_SIZE = 8190

# The whole head. uvicorn's h11 default (h11_max_incomplete_event_size) is 16 KiB, which breaks apps
# with large cookies; Node.js settled on 16 KiB too, nginx allows 4 x 8 KiB. We take 64 KiB. Past it: 431.
DEFAULT_LIMIT_REQUEST_HEAD = 65536


@dataclass(frozen=True)
class HeadLimits:
    """The limits one parser enforces; 0 for a field means "no limit"."""

    request_line: int = DEFAULT_LIMIT_REQUEST_LINE
    fields: int = DEFAULT_LIMIT_REQUEST_FIELDS
    field_size: int = DEFAULT_LIMIT_REQUEST_FIELD_SIZE
    head: int = DEFAULT_LIMIT_REQUEST_HEAD
