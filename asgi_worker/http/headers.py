"""Request-head rules that need the whole head, shared by both parsers: the same bytes, the same answer.

Each adapter turns its library's output into a method, target, version and header list and calls
``build_head``; the byte-level grammar is ``head_scan.py``'s. Every framing decision is made here, once
(the RFC section each rests on in brackets):

- Content-Length: 1*DIGIT, once; with Transfer-Encoding too: 400 (RFC 9112 6.3: a disagreement
  between hops is how requests get smuggled). Larger than ``limits.body``: 413, before the app runs.
- Transfer-Encoding: HTTP/1.1 only, else 400 (9112 6.1 MUST treat the message as faulty). Its fields
  form one list of codings; ``chunked`` must be last and only once, else 400 (9112 6.3); another
  coding before it is 501 (9112 6.1). An empty list element (",chunked") is 400: stricter than
  RFC 9110 5.6.1, which lets a recipient skip it, because llhttp refuses it and a proxy that reads
  it differently is a smuggling route.
- Host: HTTP/1.1 needs exactly one, no version may send two, and its value is uri-host [":" port]
  (9112 3.2, RFC 3986 3.2.2); else 400.
- Request line: HTTP/1.0 and 1.1 are served, other versions 505. Methods: the set llhttp knows, any
  other 400 (RFC 9110 9.1 prefers 501, but llhttp cannot tell an unknown method from garbage, and one
  answer for the same bytes matters more). The target's form must fit the method (9112 3.2): origin
  form ("/...") or absolute form ("scheme://...") for every method but CONNECT, "*" only for OPTIONS,
  authority form ("host:port") only and always for CONNECT; no fragment. Else 400.
- Keep-alive: the client's wish is read here and decided by ``keepalive.request_keep_alive``.
"""

from __future__ import annotations

import re

from asgi_worker.errors import (
    BodyTooLarge,
    HeadersTooLarge,
    MalformedRequest,
    TargetTooLong,
    TransferCodingNotImplemented,
    VersionNotSupported,
)
from asgi_worker.http.events import BODY_CHUNKED, RequestHead
from asgi_worker.http.keepalive import request_keep_alive
from asgi_worker.http.limits import RequestLimits

__all__ = [
    "KNOWN_METHODS",
    "METHOD_NAMES",
    "TOKEN_CHARS",
    "build_head",
    "check_host",
    "check_request_line",
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

# Methods that take an origin-form target ("/..."): all but CONNECT (RFC 9112 3.2).
_ORIGIN_FORM_METHODS = KNOWN_METHODS - {"CONNECT"}

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


# Content-Length digits: 19 always fit in 64 bits (llhttp refuses an overflow, h11 more than 20
# digits, and int() more than 4300). Stricter than 1*DIGIT only for a value padded with zeros.
_MAX_LENGTH_DIGITS = 19

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
    limits: RequestLimits,
) -> RequestHead:
    """Validate a parsed head and settle its framing. ``headers`` must have lowercased names.

    Raises a ``RequestError`` subclass whose ``status`` is the answer to send. The head's size in
    bytes is not checked here: only the adapters see the raw bytes it is measured on (``limits.py``),
    and they refuse a head past the budget before it is complete, so before this is called.
    """
    # The common request line passes one cheap test; anything else gets the full check.
    if not (
        (http_version == "1.1" or http_version == "1.0")
        and target[0] == 0x2F
        and method in _ORIGIN_FORM_METHODS
        and 0x23 not in target  # "#"; an int test is a memchr, ten times cheaper than b"#" in ...
        and len(target) <= limits.request_line  # 0, no limit: the full check handles it
    ):
        check_request_line(method, target, http_version, limits)
    if limits.fields and len(headers) > limits.fields:
        raise HeadersTooLarge(f"more than {limits.fields} header fields")
    keep_alive = False  # Connection: keep-alive
    close = False  # Connection: close
    expect_continue = False
    upgrade_requested = False
    upgrade: bytes | None = None
    content_lengths = 0
    content_length = 0
    codings: list[bytes] | None = None
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
            if not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                raise MalformedRequest("Content-Length is not a number of at most 19 digits")
            content_length = int(value)
        elif kind == _TRANSFER_ENCODING:
            if codings is None:
                codings = [value]
            else:
                codings.append(value)
        elif kind == _HOST:
            hosts += 1
            if value not in _GOOD_HOSTS:
                check_host(value)
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
    chunked = False
    if codings:
        if content_lengths:
            raise MalformedRequest("both Content-Length and Transfer-Encoding")
        chunked = _chunked(codings, http_version)
    if hosts > 1 or (hosts == 0 and http_version == "1.1"):
        raise MalformedRequest("HTTP/1.1 needs exactly one Host header")
    if content_length and limits.body and content_length > limits.body:
        raise BodyTooLarge(f"Content-Length {content_length} is over the {limits.body}-byte limit")
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
        upgrade == b"websocket",  # a handshake; ws/handshake.py refuses a bad one (not GET, a body)
        BODY_CHUNKED if chunked else content_length,
    )


def check_request_line(method: str, target: bytes, http_version: str, limits: RequestLimits) -> None:
    """Raise the ``RequestError`` for a request line we must refuse; return for a good one.

    Checked in the order the parts arrive (method, target, version), so the answer is the same
    whether the line came whole or ``head_scan`` saw its target pass the limit before the rest.
    """
    if method not in KNOWN_METHODS:
        raise MalformedRequest(f"unknown method {method!r}")
    limit = limits.request_line
    if limit and len(target) > limit and not 0 <= target.find(b"#") < limit:  # a "#" first: 400
        raise TargetTooLong(f"request target longer than {limit} bytes")
    _check_target_form(method, target)
    if http_version != "1.1" and http_version != "1.0":
        raise VersionNotSupported(f"HTTP/{http_version} is not supported")


def _check_target_form(method: str, target: bytes) -> None:
    if method == "CONNECT":
        if _AUTHORITY_FORM.fullmatch(target) is None:
            raise MalformedRequest("CONNECT needs a host:port target")
    elif target[0] == 0x2F:
        if 0x23 in target:  # "#": llhttp takes a fragment; a request has none (RFC 9112 3.2)
            raise MalformedRequest("fragment in request target")
    elif target == b"*":
        if method != "OPTIONS":
            raise MalformedRequest("asterisk target on a method other than OPTIONS")
    elif _ABSOLUTE_FORM.fullmatch(target) is None:
        raise MalformedRequest("request target is not in origin, absolute or asterisk form")


# RFC 3986 3.2.2 uri-host [":" port]: an IP literal, or a reg-name (which also covers IPv4 addresses).
_HOST_PATTERN = (
    rb"(?:\[[0-9A-Fa-f:.]+\]"  # IPv6 (and an IPv4 tail)
    rb"|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"  # IPvFuture
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"  # reg-name
)
_HOST_VALUE = re.compile(_HOST_PATTERN + rb"(?::[0-9]*)?")
_AUTHORITY_FORM = re.compile(_HOST_PATTERN + rb":[0-9]+")
# Absolute form as llhttp reads it: a scheme of letters only, "://", an authority ([userinfo "@"]
# host [":" port]) and a path and query. Stricter than RFC 3986's scheme (which allows digits, "+",
# "-", "."): llhttp refuses those, and a request to an HTTP server names http or https (9112 3.2.2).
_ABSOLUTE_FORM = re.compile(
    rb"[A-Za-z]+://(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*@)?"
    + _HOST_PATTERN
    + rb"(?::[0-9]*)?(?:[/?][\x21\x22\x24-\x7e]*)?"
)
# Host values already found valid: a connection repeats one, so the pattern runs once per value.
_GOOD_HOSTS: set[bytes] = set()
_GOOD_HOSTS_MAX = 1024
_GOOD_HOST_SIZE = 255  # a DNS name's limit: so the cache holds at most 1024 x 255 bytes


def check_host(value: bytes) -> None:
    if _HOST_VALUE.fullmatch(value) is None:
        raise MalformedRequest('Host is not uri-host [ ":" port ]')
    if len(_GOOD_HOSTS) < _GOOD_HOSTS_MAX and len(value) <= _GOOD_HOST_SIZE:
        _GOOD_HOSTS.add(value)


def _chunked(values: list[bytes], http_version: str) -> bool:
    """True for a Transfer-Encoding that ends in chunked; raise for any we refuse (module docstring)."""
    if http_version == "1.0":
        raise MalformedRequest("Transfer-Encoding on an HTTP/1.0 request")
    if len(values) == 1 and values[0].lower() == b"chunked":  # the only one real clients send
        return True
    codings = [coding.strip(b" \t").lower() for coding in b",".join(values).split(b",")]
    if not all(codings):
        raise MalformedRequest("empty element in Transfer-Encoding")
    if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise MalformedRequest("Transfer-Encoding does not end with one chunked")
    for coding in codings[:-1]:
        name = coding.partition(b";")[0].rstrip(b" \t")
        if not is_token(name):
            raise MalformedRequest("Transfer-Encoding is not a list of codings")
    raise TransferCodingNotImplemented("only Transfer-Encoding: chunked is supported")
