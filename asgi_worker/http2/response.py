"""An app's response headers -> an HTTP/2 field list (RFC 9113 8.2, 8.3.2).

h2's own outbound checks are off: this one pass lowercases names (8.2.1), drops the
connection-specific fields an HTTP/1.1 app may still send (8.2.2: ``connection``,
``transfer-encoding``, ...), trims the whitespace a value may not start or end with (8.2.1), and
refuses what could never be valid, as ``http/response.py`` does for HTTP/1.1.
"""

from __future__ import annotations

from collections.abc import Iterable

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.headers import is_safe_value, is_token
from asgi_worker.http2.request import CONNECTION_SPECIFIC

__all__ = ["response_fields", "trailer_fields"]

# Dropped, not refused: an app written for HTTP/1.1 sends them in good faith. "te" has no meaning
# in a response and is allowed in HTTP/2 only as a request's "te: trailers".
_DROPPED = CONNECTION_SPECIFIC | {b"te"}
_STATUS_VALUES = {status: b"%d" % status for status in range(100, 600)}
_WHITESPACE = (0x20, 0x09)


def response_fields(status: int, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``:status`` and the app's headers, ready for h2; ``AppProtocolError`` for a bad one."""
    value = _STATUS_VALUES.get(status)
    if value is None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise AppProtocolError(f"status {status!r} is not a three-digit integer")
        value = b"%d" % status
    fields = [(b":status", value)]
    _add_fields(fields, headers)
    return fields


def trailer_fields(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The app's trailers, checked and cleaned like headers (no pseudo-header fields: 8.1)."""
    fields: list[tuple[bytes, bytes]] = []
    _add_fields(fields, headers)
    return fields


def _add_fields(fields: list[tuple[bytes, bytes]], headers: Iterable[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if not name.islower():
            name = name.lower()
        if name in _DROPPED:
            continue
        if not is_token(name):
            raise AppProtocolError(f"header name {name!r} is not a token")
        if not is_safe_value(value):
            raise AppProtocolError(f"header {name!r} has CR, LF or NUL in its value")
        if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
            value = value.strip(b" \t")
        fields.append((name, value))
