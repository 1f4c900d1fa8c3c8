"""Request-head rules that both parsers share, so the same bytes get the same answer.

The parser libraries disagree at the edges (h11 accepts two equal Content-Length headers, llhttp
rejects them; h11 accepts unknown methods, llhttp does not). Each adapter turns its library's output
into a method, target, version and header list and calls ``build_head``; every framing decision is
made here, once:

- Content-Length and Transfer-Encoding together, or Content-Length twice: 400 (RFC 9112 6.3 lets a
  server reject; we always do, since a disagreement between hops is how requests get smuggled).
- Transfer-Encoding other than exactly ``chunked``: 501 (RFC 9112 6.1).
- HTTP/1.1 without exactly one Host: 400 (RFC 9112 3.2). Versions other than 1.0 and 1.1: 505.
- Keep-alive: the client's wish is read here and decided by ``keepalive.request_keep_alive``.
- Methods: the set llhttp knows; any other is 400 from both parsers. (RFC 9110 9.1 prefers 501,
  but llhttp cannot tell an unknown method from garbage in every chunking, and one answer for the
  same bytes matters more.) HTTP/0.9 and unknown 1.x versions are 400, 2.0 and later 505.
"""

from __future__ import annotations

from asgi_worker.errors import (
    HeadersTooLarge,
    MalformedRequest,
    TargetTooLong,
    TransferCodingNotImplemented,
    VersionNotSupported,
)
from asgi_worker.http.events import BODY_CHUNKED, RequestHead
from asgi_worker.http.keepalive import request_keep_alive
from asgi_worker.http.limits import HeadLimits

__all__ = [
    "KNOWN_METHODS",
    "METHOD_NAMES",
    "TOKEN_CHARS",
    "build_head",
    "head_too_large",
    "is_safe_value",
    "is_token",
]

# llhttp's method table (httptools 0.6+); h11 would take any token, so we hold it to the same set.
KNOWN_METHODS = frozenset(
    (
        "DELETE",
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "CONNECT",
        "OPTIONS",
        "TRACE",
        "COPY",
        "LOCK",
        "MKCOL",
        "MOVE",
        "PROPFIND",
        "PROPPATCH",
        "SEARCH",
        "UNLOCK",
        "BIND",
        "REBIND",
        "UNBIND",
        "ACL",
        "REPORT",
        "MKACTIVITY",
        "CHECKOUT",
        "MERGE",
        "M-SEARCH",
        "NOTIFY",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PATCH",
        "PURGE",
        "MKCALENDAR",
        "LINK",
        "UNLINK",
        "SOURCE",
        "QUERY",
    )
)

# Method bytes -> str, so the hot path looks a method up instead of decoding it.
METHOD_NAMES = {name.encode(): name for name in KNOWN_METHODS}

TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Token characters -> "a", every other byte -> NUL: a name is a token iff its translation isalpha().
# One table lookup per byte, about half the cost of deleting TOKEN_CHARS (which rebuilds its set).
_TOKEN_MAP = bytes(0x61 if byte in TOKEN_CHARS else 0 for byte in range(256))
# Bytes a header value may not hold: they would end the field or the head (response splitting).
_BREAKING = b"\r\n\0"


def is_token(name: bytes) -> bool:
    """True for a non-empty RFC 9110 token (a valid header name)."""
    return name.translate(_TOKEN_MAP).isalpha()


def is_safe_value(value: bytes) -> bool:
    """True for a header value without CR, LF or NUL. (``translate`` beats three ``in`` tests by 4x.)"""
    return len(value.translate(None, _BREAKING)) == len(value)


def head_too_large(limit: int) -> HeadersTooLarge:
    """The error both adapters answer a head of more than ``limit`` bytes with (431)."""
    return HeadersTooLarge(f"request head larger than {limit} bytes")


# Header names whose value changes framing; everything else passes through untouched.
_CONTENT_LENGTH, _TRANSFER_ENCODING, _HOST, _CONNECTION, _EXPECT, _UPGRADE = range(6)
_FRAMING_NAMES = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"host": _HOST,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    b"upgrade": _UPGRADE,
}


def build_head(
    method: str,
    target: bytes,
    http_version: str,
    headers: list[tuple[bytes, bytes]],
    limits: HeadLimits,
) -> RequestHead:
    """Validate a parsed head and settle its framing. ``headers`` must have lowercased names.

    Raises a ``RequestError`` subclass whose ``status`` is the answer to send. The head's size in
    bytes is not checked here: only the adapters see the raw bytes it is measured on (``limits.py``),
    and they refuse a head past the budget before it is complete, so before this is called.
    """
    _check_request_line(method, target, http_version, limits)
    if limits.fields and len(headers) > limits.fields:
        raise HeadersTooLarge(f"more than {limits.fields} header fields")
    keep_alive = False  # Connection: keep-alive
    close = False  # Connection: close
    expect_continue = False
    upgrade_requested = False
    upgrade: bytes | None = None
    content_lengths = 0
    content_length = 0
    chunked = False
    hosts = 0
    field_size = limits.field_size
    get_kind = _FRAMING_NAMES.get
    for name, value in headers:
        size = len(name) + len(value)
        if field_size and size > field_size:
            raise HeadersTooLarge(f"header field longer than {field_size} bytes")
        kind = get_kind(name)
        if kind is None:
            continue
        if kind == _CONTENT_LENGTH:
            content_lengths += 1
            if content_lengths > 1:
                raise MalformedRequest("more than one Content-Length header")
            if not value.isdigit():
                raise MalformedRequest("Content-Length is not a number")
            content_length = int(value)
        elif kind == _TRANSFER_ENCODING:
            if chunked or value.strip().lower() != b"chunked":
                raise TransferCodingNotImplemented("only Transfer-Encoding: chunked is supported")
            chunked = True
        elif kind == _HOST:
            hosts += 1
        elif kind == _CONNECTION:
            for token in value.lower().split(b","):
                token = token.strip()
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    keep_alive = True
                elif token == b"upgrade":
                    upgrade_requested = True
        elif kind == _EXPECT:
            expect_continue = http_version == "1.1" and value.strip().lower() == b"100-continue"
        else:
            upgrade = value.strip().lower()
    if content_lengths and chunked:
        raise MalformedRequest("both Content-Length and Transfer-Encoding")
    if hosts > 1 or (hosts == 0 and http_version == "1.1"):
        raise MalformedRequest("HTTP/1.1 needs exactly one Host header")
    if not upgrade_requested:
        upgrade = None
    return RequestHead(
        method,
        target,
        http_version,
        headers,
        request_keep_alive(http_version, close, keep_alive),
        expect_continue,
        upgrade,
        upgrade == b"websocket" and method == "GET" and not (content_length or chunked),
        BODY_CHUNKED if chunked else content_length,
    )


def _check_request_line(method: str, target: bytes, http_version: str, limits: HeadLimits) -> None:
    """Raise the ``RequestError`` for a request line we must refuse; return for a good one."""
    if http_version != "1.1" and http_version != "1.0":
        if http_version[:2] in ("0.", "1."):  # HTTP/0.9 or a 1.x we do not know: not a valid request
            raise MalformedRequest(f"HTTP/{http_version} is not a valid request version")
        raise VersionNotSupported(f"HTTP/{http_version} is not supported")
    if method not in KNOWN_METHODS:
        raise MalformedRequest(f"unknown method {method!r}")
    if (not target or target[0] != 0x2F) and target != b"*" and b"://" not in target and method != "CONNECT":
        raise MalformedRequest("request target is not in origin, absolute or asterisk form")
    if limits.request_line and len(target) > limits.request_line:
        raise TargetTooLong(f"request target longer than {limits.request_line} bytes")
    if not target.isascii():
        raise MalformedRequest("request target is not ASCII")
