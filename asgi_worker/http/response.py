"""Sans-I/O response encoding: status line, header validation, message framing.

Framing rules (RFC 9112 6, 9110 6.4.1):
- No body is ever written for HEAD, 1xx, 204 and 304; HEAD still gets the framing headers a GET would.
- An app-supplied Content-Length is honoured and enforced: sending more is an app error, sending less
  closes the connection (the client sees a truncated message, never a desynchronised stream).
- Without one, a response whose first body message is also its last gets ``content-length`` (so a
  small response is one write: head and body together). A streamed one gets
  ``transfer-encoding: chunked`` on HTTP/1.1, and is delimited by closing on HTTP/1.0.
- An app's ``server`` or ``date`` header replaces the default one instead of duplicating it.
Header names must be tokens and values free of CR, LF and NUL; anything else is refused before a
byte is written (``AppProtocolError``), so an app can never split a response.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.headers import is_safe_value, is_token
from asgi_worker.http.keepalive import head_keep_alive

__all__ = [
    "CHUNKED",
    "CLOSE_DELIMITED",
    "CONTENT_LENGTH",
    "NO_BODY",
    "ResponsePlan",
    "check_length",
    "encode_chunk",
    "encode_error_response",
    "plan_response",
    "status_line",
]

CHUNKED_END = b"0\r\n\r\n"
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Framing of the body that follows the head.
CONTENT_LENGTH, CHUNKED, CLOSE_DELIMITED, NO_BODY = range(4)

# Pre-encoded status lines for every status the stdlib knows; others are built on demand.
_STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus
}

# Pre-encoded content-length lines for the small bodies most responses have.
_CACHED_LENGTHS = 4096
_CONTENT_LENGTH_LINES = [b"content-length: %d\r\n" % n for n in range(_CACHED_LENGTHS)]

# Length of each header name that changes our framing; checking len() first keeps lower() off the hot path.
_SPECIAL_LENGTHS = frozenset((4, 6, 10, 14, 17))


def status_line(status: int) -> bytes:
    """The ``HTTP/1.1 <status> <reason>\\r\\n`` line; cached for known statuses."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def reason_phrase(status: int) -> str:
    """The reason phrase for ``status`` ("" when unknown)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class ResponsePlan:
    """What ``plan_response`` decided: the encoded head and how the body is framed."""

    __slots__ = ("content_length", "framing", "head", "keep_alive")

    def __init__(self, head: bytes, framing: int, content_length: int, keep_alive: bool) -> None:
        self.head = head
        self.framing = framing
        self.content_length = content_length  # expected body bytes when framing is CONTENT_LENGTH
        self.keep_alive = keep_alive


# What a response header means for framing, by pair: a content length is the length itself (0 or
# more); every other kind is negative.
_PLAIN, _SERVER, _DATE, _CONNECTION, _CONNECTION_CLOSE, _CHUNKED, _OTHER_CODING = range(-1, -8, -1)
# Pairs already checked (valid, and their kind). Apps send the same header objects on every
# response (a content type, their own constants), so each pair is validated once per process instead
# of on every response; past _KINDS_MAX pairs (an app with per-response values) the rest are checked
# every time, as before.
_KINDS: dict[tuple[bytes, bytes], int] = {}
_KINDS_MAX = 4096


def _classify(name: bytes, value: bytes) -> int:
    """The kind of one response header (see ``_KINDS``). Raises ``AppProtocolError`` for an invalid one."""
    if not (is_token(name) and is_safe_value(value)):
        raise AppProtocolError(f"invalid response header {name!r}: {value!r}")
    kind = _PLAIN
    if len(name) in _SPECIAL_LENGTHS:
        lname = name.lower()
        if lname == b"content-length":
            if not value.strip().isdigit():
                raise AppProtocolError(f"invalid content-length {value!r}")
            kind = int(value)
        elif lname == b"transfer-encoding":
            kind = _CHUNKED if value.strip().lower().endswith(b"chunked") else _OTHER_CODING
        elif lname == b"connection":
            kind = _CONNECTION_CLOSE if b"close" in value.lower() else _CONNECTION
        elif lname == b"server":
            kind = _SERVER
        elif lname == b"date":
            kind = _DATE
    if type(name) is bytes and type(value) is bytes and len(_KINDS) < _KINDS_MAX:
        _KINDS[name, value] = kind
    return kind


def plan_response(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    defaults: DefaultHeaderBlock,
    body_length: int | None,
    head_only: bool,
    http10: bool,
    request_keeps: bool,
    draining: bool = False,
    body_complete: bool = True,
) -> ResponsePlan:
    """Validate the app's head and encode it with framing headers added.

    ``body_length`` is the size of the whole body when the first body message is also the last, else
    None. ``head_only`` is True for HEAD requests. ``request_keeps``, ``draining`` and
    ``body_complete`` are the connection's facts for ``keepalive.head_keep_alive``; the plan's
    ``keep_alive`` is what the head announces. Raises ``AppProtocolError`` for an invalid status or header.

    An app answers most requests the same way: the plan for the same status, header list and body
    length under the same ``defaults`` is the last one again (``LastHead``), unless the request was
    out of the ordinary (HEAD, HTTP/1.0, no keep-alive, draining, its body unread). While the app's
    answers vary, the memo rests (``PATIENCE_LIMIT``): a miss then costs a count.
    """
    last = defaults.last
    if (  # the likeliest difference first: a miss should cost little
        last is not None
        and type(headers) is list
        and headers == last.headers
        and status == last.status
        and body_length == last.body_length
        and type(status) is int
        and not (head_only or http10 or draining)
        and request_keeps
        and body_complete
    ):
        if last.misses:
            last.misses = 0
        if not last.reused:  # halved, not reset: a chance hit among varied answers changes little
            last.reused = True
            defaults.patience = max(defaults.patience // 2, PATIENCE_MIN)
        return last.plan
    line = _STATUS_LINES.get(status)  # a known status: valid (a str or float key finds nothing)
    if line is None or type(status) is not int:
        if type(status) is not int or not 100 <= status <= 999:
            raise AppProtocolError(f"invalid HTTP status {status!r}")
        line = status_line(status)
    parts = [line, b""]  # slot 1: the default block, chosen after the app's headers
    content_length = -1
    has_server = has_date = chunked = app_close = False
    for name, value in headers:
        try:
            kind = _KINDS[name, value]
        except (KeyError, TypeError):  # not seen yet, or not hashable (a bytearray): check it now
            kind = _classify(name, value)
        if kind == _PLAIN:
            parts += (name, b": ", value, b"\r\n")
            continue
        if kind >= 0:
            content_length = kind
        elif kind == _CONNECTION_CLOSE:
            app_close = True
            continue  # our own connection header below is the one that counts
        elif kind == _CONNECTION:
            continue
        elif kind == _CHUNKED:
            chunked = True
        elif kind == _OTHER_CODING:
            chunked = False
            app_close = True  # a coding we do not frame ourselves: delimited by closing
        elif kind == _SERVER:
            has_server = True
        else:
            has_date = True
        parts += (name, b": ", value, b"\r\n")
    parts[1] = defaults.block if not (has_server or has_date) else defaults.without(has_server, has_date)
    if status < 200 or status == 204 or status == 304:
        framing = NO_BODY
    elif content_length >= 0:  # the app's own Content-Length (``_frame_body``'s first rule, inline)
        framing = CONTENT_LENGTH
    else:
        framing, content_length = _frame_body(parts, content_length, chunked, body_length, http10)
    keep_alive = head_keep_alive(
        request_keeps, draining, body_complete, app_close, framing == CLOSE_DELIMITED
    )
    if not keep_alive:
        parts.append(b"connection: close\r\n\r\n")
    elif http10:
        parts.append(b"connection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n")
    plan = ResponsePlan(b"".join(parts), NO_BODY if head_only else framing, content_length, keep_alive)
    if last is not None:
        last.misses += 1
        if last.misses >= PATIENCE_MIN:  # the app answers otherwise now: drop it
            defaults.last = None
            if not last.reused:  # nor did it ever repeat this one: rest, longer each time
                defaults.resting = defaults.patience
                defaults.patience = min(2 * defaults.patience, PATIENCE_LIMIT)
    elif defaults.resting:  # no memo and no comparing for a while: all a miss costs is this count
        defaults.resting -= 1
    elif type(headers) is list and not (head_only or http10 or draining) and request_keeps and body_complete:
        defaults.last = LastHead.of(status, headers, body_length, plan)
    return plan


def _frame_body(
    parts: list[bytes],
    content_length: int,
    chunked: bool,
    body_length: int | None,
    http10: bool,
) -> tuple[int, int]:
    """``(framing, content length)`` for a response that may have a body; appends the framing
    header we add, if any, to ``parts``."""
    if content_length >= 0:
        return CONTENT_LENGTH, content_length
    if chunked:
        if http10:
            raise AppProtocolError("transfer-encoding: chunked in a response to HTTP/1.0")
        return CHUNKED, content_length
    if body_length is not None:
        parts.append(
            _CONTENT_LENGTH_LINES[body_length]
            if body_length < _CACHED_LENGTHS
            else b"content-length: %d\r\n" % body_length
        )
        return CONTENT_LENGTH, body_length
    if http10:
        return CLOSE_DELIMITED, content_length
    parts.append(b"transfer-encoding: chunked\r\n")
    return CHUNKED, content_length


def check_length(plan: ResponsePlan, sent: int, more: bool) -> None:
    """Refuse a body that breaks the app's own Content-Length: ``sent`` bytes in all so far, with
    ``more`` to come or not. Called before the bytes are written (``AppProtocolError``)."""
    if sent > plan.content_length:
        raise AppProtocolError("response body longer than its Content-Length")
    if not more and sent < plan.content_length:
        raise AppProtocolError("response body shorter than its Content-Length")


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body. ``data`` must not be empty (an empty chunk ends the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_error_response(status: int, defaults: DefaultHeaderBlock, message: str = "") -> bytes:
    """A complete plain-text response that closes the connection, for errors the app never saw."""
    body = (message or reason_phrase(status)).encode()
    return b"".join(
        (
            status_line(status),
            defaults.block,
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(body),
            body,
        )
    )


# A ``LastHead`` is dropped after PATIENCE_MIN misses in a row. If it was never reused, the next one
# is made only after ``patience`` more responses, and patience doubles up to PATIENCE_LIMIT; the
# first reuse of one halves it. So an app whose every response differs makes one memo (and two
# comparisons) in about 259 responses, and one that repeats itself gets a memo back within a few.
PATIENCE_MIN = 2
PATIENCE_LIMIT = 256


class LastHead:
    """The last plan ``plan_response`` made for an ordinary request: reused while an app answers alike.

    Its headers are a copy the app cannot change, kept only when every pair is a tuple of two
    ``bytes``: then a later list equal to it is the same headers, and encodes to the same head.
    """

    __slots__ = ("body_length", "headers", "misses", "plan", "reused", "status")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], body_length: int | None, plan: ResponsePlan
    ):
        self.status = status
        self.headers = headers
        self.body_length = body_length
        self.plan = plan
        self.misses = 0  # responses planned afresh in a row
        self.reused = False

    @classmethod
    def of(
        cls, status: int, headers: list[tuple[bytes, bytes]], body_length: int | None, plan: ResponsePlan
    ) -> LastHead | None:
        """The memo of this plan, or None when its headers could change under us (not tuples of bytes)."""
        for pair in headers:
            if (
                type(pair) is not tuple
                or len(pair) != 2
                or type(pair[0]) is not bytes
                or type(pair[1]) is not bytes
            ):
                return None
        return cls(status, headers.copy(), body_length, plan)


class DefaultHeaderBlock:
    """The pre-encoded default header lines (``server``, ``date``, ``--header`` ones).

    ``block`` is what almost every response uses; it is rebuilt by ``refresh`` when the date
    changes (once a second), never per request.
    """

    __slots__ = (
        "_date",
        "_date_value",
        "_extra",
        "_extra_pairs",
        "_server",
        "_server_value",
        "block",
        "last",
        "patience",
        "resting",
    )

    def __init__(self, server: bytes | None, extra: list[tuple[bytes, bytes]]) -> None:
        self._server = b"server: %b\r\n" % server if server else b""
        self._server_value = server
        self._extra = b"".join(b"%b: %b\r\n" % pair for pair in extra)
        self._extra_pairs = [(name.lower(), value) for name, value in extra]
        self._date = b""
        self._date_value: bytes | None = None
        self.block = self._server + self._extra
        self.last: LastHead | None = None  # the last plan made with this block (plan_response)
        self.patience = PATIENCE_MIN  # responses to rest after a memo that was never reused
        self.resting = 0  # responses left before the next memo is made

    def refresh(self, date: bytes | None) -> None:
        """Set the current date (an IMF-fixdate), or None to send no date header."""
        self._date = b"date: %b\r\n" % date if date else b""
        self._date_value = date
        self.block = self._server + self._date + self._extra
        self.last = None  # its head holds the old date

    def pairs(self, server: bool, date: bool) -> list[tuple[bytes, bytes]]:
        """The same defaults as ``(name, value)`` pairs (HTTP/2), minus those the app supplies itself."""
        pairs = []
        if self._server_value and not server:
            pairs.append((b"server", self._server_value))
        if self._date_value and not date:
            pairs.append((b"date", self._date_value))
        pairs += self._extra_pairs
        return pairs

    def without(self, server: bool, date: bool) -> bytes:
        """The block minus the lines the app supplies itself."""
        return (b"" if server else self._server) + (b"" if date else self._date) + self._extra
