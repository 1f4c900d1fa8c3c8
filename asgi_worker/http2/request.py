"""An HTTP/2 request header block -> the ``RequestHead`` HTTP/1.1 parsers produce, in one pass.

h2 decodes HPACK; its own header checks are off (they make every request error a connection error
and cost a generator stage per rule and a Python loop per byte). Two kinds of refusal, kept apart:

- ``Malformed``: what RFC 9113 calls malformed (8.1.1, 8.2, 8.3). The session resets the stream
  with PROTOCOL_ERROR, as the RFC requires; no app runs and no status is sent.
- a ``RequestError``: a well-formed HTTP/2 request our HTTP rules refuse, answered with the status
  HTTP/1.1 gives the same request (``headers.build_head``): an unknown method or a target not in
  origin form 400, a target past ``limits.request_line`` 414, too many or too large fields 431, a
  Content-Length past ``limits.body`` 413, and a plain CONNECT 501 (we are no proxy; RFC 9110 9.1).

What h2 still checks before we see a block: the HPACK encoding, the header list size, and
Content-Length values that are not digits or disagree (it ends the connection for those; RFC 9113
5.4.1 allows treating a stream error as a connection error).
"""

from __future__ import annotations

from collections.abc import Iterable

from asgi_worker.errors import (
    BodyTooLarge,
    HeadersTooLarge,
    MalformedRequest,
    RequestError,
    TargetTooLong,
)
from asgi_worker.http.events import BODY_CHUNKED, RequestHead
from asgi_worker.http.headers import METHOD_NAMES, TOKEN_CHARS, check_host, is_token
from asgi_worker.http.limits import RequestLimits

__all__ = [
    "CONNECTION_SPECIFIC",
    "ConnectNotSupported",
    "Malformed",
    "OpenedRequest",
    "read_request",
    "read_trailers",
]

# RFC 9113 8.2.2: connection-specific fields; a message carrying one is malformed.
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)

# Lowercase token characters -> "a", every other byte (uppercase included) -> NUL: a field name is
# valid iff its translation isalpha(). RFC 9113 8.2.1 bans only controls, space, uppercase and
# non-ASCII; we also hold names to RFC 9110's token, as HTTP/1.1 does.
_NAME_MAP = bytes(0x61 if byte in TOKEN_CHARS and not 0x41 <= byte <= 0x5A else 0 for byte in range(256))
_BREAKING = b"\r\n\0"
_WHITESPACE = (0x20, 0x09)
# Bytes a request target may not hold: controls, space, DEL and anything not ASCII (RFC 3986 2;
# both HTTP/1.1 parsers answer 400 for them).
_TARGET_BAD = bytes(range(0x21)) + bytes(range(0x7F, 0x100))

# Names that need more than a name check; everything else passes through untouched.
_CONTENT_LENGTH, _TE, _HOST, _COOKIE, _CONNECTION_SPECIFIC = range(5)
_SPECIAL_NAMES = {
    b"content-length": _CONTENT_LENGTH,
    b"te": _TE,
    b"host": _HOST,
    b"cookie": _COOKIE,
    **dict.fromkeys(CONNECTION_SPECIFIC, _CONNECTION_SPECIFIC),
}
_PSEUDO = {b":method": 0, b":scheme": 1, b":authority": 2, b":path": 3, b":protocol": 4}
_SCHEMES = {b"http": "http", b"https": "https"}
_MAX_LENGTH_DIGITS = 19  # as headers.build_head: always fits in 64 bits
# RFC 9113 6.5.2: each field counts its name, its value and 32 bytes towards the header list size.
_FIELD_OVERHEAD = 32


class Malformed(Exception):
    """RFC 9113 calls this message malformed: reset the stream with PROTOCOL_ERROR (8.1.1)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectNotSupported(RequestError):
    """A plain CONNECT (a tunnel through us): we are an origin server, not a proxy."""

    status = 501
    reason = b"Not Implemented"


class OpenedRequest:
    """A request head that passed every rule, with what the scope needs beyond ``RequestHead``."""

    __slots__ = ("content_length", "head", "protocol", "scheme")

    def __init__(self, head: RequestHead, scheme: str, protocol: bytes | None, content_length: int) -> None:
        self.head = head
        self.scheme = scheme
        self.protocol = protocol
        self.content_length = content_length  # -1: none declared


def read_request(
    fields: Iterable[tuple[bytes, bytes]],
    end_stream: bool,
    limits: RequestLimits,
    list_limit: int,
    extended_connect: bool,
) -> OpenedRequest:
    """Validate a decoded request header block and build its head; raise ``Malformed`` or a
    ``RequestError``. ``list_limit`` is the header list size we advertised (431 past it)."""
    pseudo: list[bytes | None] = [None, None, None, None, None]
    headers: list[tuple[bytes, bytes]] = []
    host: bytes | None = None
    content_length: bytes | None = None
    cookies = 0
    list_size = 0
    oversized = False
    field_size = limits.field_size
    for name, value in fields:
        list_size += len(name) + len(value) + _FIELD_OVERHEAD
        if name[:1] == b":":
            if headers:
                raise Malformed("pseudo-header field after a regular field (RFC 9113 8.3)")
            index = _PSEUDO.get(name)
            if index is None or (index == 4 and not extended_connect):
                raise Malformed(f"unknown pseudo-header field {name!r} (RFC 9113 8.3)")
            if pseudo[index] is not None:
                raise Malformed(f"repeated pseudo-header field {name!r} (RFC 9113 8.3)")
            pseudo[index] = value
            continue
        if not name.translate(_NAME_MAP).isalpha():
            raise Malformed(f"field name {name!r} is not a lowercase token (RFC 9113 8.2.1)")
        if value and (
            len(value.translate(None, _BREAKING)) != len(value)
            or value[0] in _WHITESPACE
            or value[-1] in _WHITESPACE
        ):
            raise Malformed(f"field {name!r} has a value RFC 9113 8.2.1 forbids")
        if field_size and len(name) + len(value) > field_size:
            oversized = True
        kind = _SPECIAL_NAMES.get(name)
        if kind is not None:
            if kind == _CONNECTION_SPECIFIC:
                raise Malformed(f"connection-specific field {name!r} (RFC 9113 8.2.2)")
            if kind == _TE:
                if value.lower() != b"trailers":
                    raise Malformed("te other than trailers (RFC 9113 8.2.2)")
            elif kind == _CONTENT_LENGTH:
                if content_length is not None:
                    raise MalformedRequest("more than one Content-Length header")
                content_length = value
            elif kind == _HOST:
                if host is not None:
                    raise MalformedRequest("more than one Host header")
                host = value
            else:
                cookies += 1
        headers.append((name, value))
    method, scheme, authority, path, protocol = pseudo
    if method is None:
        raise Malformed("no :method (RFC 9113 8.3.1)")
    if method == b"CONNECT" and protocol is None:
        if scheme is not None or path is not None:
            raise Malformed("CONNECT with :scheme or :path (RFC 9113 8.5)")
        if authority is None:
            raise Malformed("CONNECT without :authority (RFC 9113 8.5)")
        raise ConnectNotSupported("CONNECT tunnels are not supported")
    if protocol is not None and (method != b"CONNECT" or not is_token(protocol)):
        raise Malformed(":protocol on a method other than CONNECT, or not a token (RFC 8441 4)")
    if scheme is None or path is None:
        raise Malformed("no :scheme or :path (RFC 9113 8.3.1)")
    if not path:
        raise Malformed("empty :path (RFC 9113 8.3.1)")
    if authority is not None and host is not None and host != authority:
        raise Malformed("Host differs from :authority (RFC 9113 8.3.1)")
    if authority is None and host is None:
        raise Malformed("neither :authority nor Host (RFC 9113 8.3.1)")
    method_name = METHOD_NAMES.get(method)
    if method_name is None:
        raise MalformedRequest(f"unknown method {method!r}")
    if limits.request_line and len(path) > limits.request_line:
        raise TargetTooLong(f"request target longer than {limits.request_line} bytes")
    _check_path(method_name, path)
    scheme_name = _SCHEMES.get(scheme)
    if scheme_name is None:
        raise MalformedRequest(f"unsupported :scheme {scheme!r}")
    if list_size > list_limit:
        raise HeadersTooLarge(f"header list larger than {list_limit} bytes")
    if authority is not None:
        check_host(authority)
        if host is None:
            headers.insert(0, (b"host", authority))  # RFC 9113 8.3.1: :authority is the Host
    else:
        assert host is not None
        check_host(host)
    if limits.fields and len(headers) > limits.fields:
        raise HeadersTooLarge(f"more than {limits.fields} header fields")
    if oversized:
        raise HeadersTooLarge(f"header field longer than {field_size} bytes")
    if cookies > 1:
        _join_cookies(headers)
    length = -1
    if content_length is not None:
        if len(content_length) > _MAX_LENGTH_DIGITS or not content_length.isdigit():
            raise MalformedRequest("Content-Length is not a number of at most 19 digits")
        length = int(content_length)
        if end_stream and length:
            raise Malformed("content-length on a request without DATA (RFC 9113 8.1.1)")
        if limits.body and length > limits.body:
            raise BodyTooLarge(f"Content-Length {length} is over the {limits.body}-byte limit")
    # A client holding its body back for "100 Continue" (RFC 9110 10.1.1); the cycle sends it, as a
    # HEADERS frame with :status 100, on the app's first receive.
    expect_continue = not end_stream and any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in headers
    )
    head = RequestHead(
        method_name,
        path,
        "2",
        headers,
        True,
        expect_continue,
        None,
        False,
        length if length >= 0 else 0 if end_stream else BODY_CHUNKED,
    )
    return OpenedRequest(head, scheme_name, protocol, length)


def read_trailers(fields: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Validate a trailer block (RFC 9113 8.1: no pseudo-header fields; 8.2 as for headers)."""
    trailers: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        if not name.translate(_NAME_MAP).isalpha():
            raise Malformed(f"trailer name {name!r} is not a lowercase token (RFC 9113 8.1, 8.2.1)")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific trailer {name!r} (RFC 9113 8.2.2)")
        if value and (
            len(value.translate(None, _BREAKING)) != len(value)
            or value[0] in _WHITESPACE
            or value[-1] in _WHITESPACE
        ):
            raise Malformed(f"trailer {name!r} has a value RFC 9113 8.2.1 forbids")
        trailers.append((name, value))
    return trailers


def _check_path(method: str, path: bytes) -> None:
    """The target form HTTP/1.1 takes for the same method (``headers._check_target_form``)."""
    if len(path.translate(None, _TARGET_BAD)) != len(path):
        raise MalformedRequest(":path holds a control character, a space or a byte outside ASCII")
    if path[0] == 0x2F:  # "/"
        if 0x23 in path:  # "#"
            raise MalformedRequest("fragment in request target")
    elif path == b"*":
        if method != "OPTIONS":
            raise MalformedRequest("asterisk target on a method other than OPTIONS")
    else:
        raise MalformedRequest(":path is not in origin or asterisk form")


def _join_cookies(headers: list[tuple[bytes, bytes]]) -> None:
    """RFC 9113 8.2.3: cookie crumbs become one field again, joined by "; ", where the first was.

    ASGI frameworks read one ``cookie`` header (Starlette takes the first).
    """
    first = -1
    crumbs: list[bytes] = []
    kept: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b"cookie":
            if first < 0:
                first = len(kept)
                kept.append((name, value))
            crumbs.append(value)
        else:
            kept.append((name, value))
    kept[first] = (b"cookie", b"; ".join(crumbs))
    headers[:] = kept
