"""The request-head grammar, checked on raw bytes as they arrive (RFC 9112 2-5): one reading for both parsers.

llhttp and h11 each accept something the other refuses, and both accept a few things RFC 9112 does
not. So neither library decides alone: a head that arrives in more than one read is held here until
its blank line, and every line is checked as it completes; only a whole, checked head is handed to
the library. A head that arrives in one read skips this (the hot path) and goes to llhttp directly;
when llhttp refuses it, ``classify`` reads it here to find the same answer this scanner would have
given. ``build_head`` (headers.py) then applies the rules that need the whole head.

What this checks, and the answer, in the order the bytes arrive (lines in order; in a line, the
first fault decides):
- empty lines before the request line: CRLF pairs are skipped (RFC 9112 2.2); a bare CR or LF is 400;
- the request line is exactly method SP target SP "HTTP/" DIGIT "." DIGIT CRLF (RFC 9112 3). While
  it arrives: a method that is not (a prefix of) one we know is 400, a target past
  ``limits.request_line`` 414 (when its byte limit+1 comes before any bad byte), more than
  " HTTP/x.y" CR after the target 400. When it ends: the rest of the grammar (400), then
  ``headers.check_request_line``: method, target length (414), target form for the method (400;
  no fragment, RFC 9112 3.2), version (505 for a well-formed one other than 1.0 and 1.1);
- each field line is token ":" OWS value OWS CRLF (RFC 9112 5): no whitespace before the colon, no
  obs-fold, a value of VCHAR, obs-text, SP and HTAB only; else 400, when the line ends. More fields
  than ``limits.fields``: 431 at the first one too many;
- a control byte or a bare CR is 400 where it comes, in a finished line or not, so binary garbage
  is refused on its first read; a bare LF ends a line that is then refused (400);
- the head, from its first byte through its blank line, fits ``limits.head``, else 431 as soon as
  it is passed (``limits.py``): so a grammar fault in a line that is still unfinished when the
  budget runs out is answered 431, like a line that never ends.
Each byte is looked at a bounded number of times, so a head sent a byte at a time costs what it
costs at once.
"""

from __future__ import annotations

import re

from asgi_worker.errors import HeadersTooLarge, MalformedRequest, RequestError, TargetTooLong
from asgi_worker.http.headers import KNOWN_METHODS, build_head, check_request_line, head_too_large
from asgi_worker.http.limits import RequestLimits

__all__ = ["FIELD_LINE", "HeadScanner", "classify", "first_fault"]

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_VALUE_CHAR = rb"[\x21-\x7e\x80-\xff]"
# RFC 9112 3: method SP request-target SP HTTP-version CRLF. The target is any printable ASCII byte
# but "#" (a fragment is never sent); the URI rules that depend on the method are build_head's.
_REQUEST_LINE = re.compile(rb"(%s+) ([\x21\x22\x24-\x7e]+) HTTP/([0-9])\.([0-9])\r\n" % _TCHAR)
_METHODS = frozenset(method.encode() for method in KNOWN_METHODS)
_METHOD_PREFIXES = frozenset(method[:size] for method in _METHODS for size in range(1, len(method) + 1))
_LONGEST_METHOD = max(len(method) for method in _METHODS)
_AFTER_TARGET = len(b" HTTP/1.1\r")  # what may follow a target before its line ends
_TARGET_RUN = re.compile(rb"[\x21\x22\x24-\x7e]*")
# RFC 9112 5 (and 7.1.2 for trailers): field-name ":" OWS field-value OWS CRLF.
FIELD_LINE = re.compile(
    rb"(%s+):[ \t]*((?:%s+(?:[ \t]+%s+)*)?)[ \t]*\r\n" % (_TCHAR, _VALUE_CHAR, _VALUE_CHAR)
)
# Bytes no head may hold anywhere (CR, LF and HTAB are line structure and whitespace).
_CONTROLS = bytes(byte for byte in range(0x20) if byte not in (0x09, 0x0A, 0x0D)) + b"\x7f"


class HeadScanner:
    """Reads one request head from raw bytes; create one per head.

    After ``feed`` has returned an end, ``head`` holds the head's bytes (request line through blank
    line), ``request_line`` the method, target and version, and ``fields`` the ``(lowercased name,
    value)`` pairs in order.
    """

    __slots__ = (
        "_buf",
        "_checked",
        "_limits",
        "_line",
        "_pending_cr",
        "_searched",
        "_space",
        "_target_end",
        "fields",
        "head",
        "request_line",
    )

    def __init__(self, limits: RequestLimits) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._line = 0  # where the current, unfinished line starts in _buf
        self._checked = 0  # bytes of _buf already checked for controls and bare CRs
        self._searched = 0  # bytes of _buf already searched for a line end
        self._space = -1  # where the SP after the method is, once it has come
        self._target_end = -1  # how far the target's bytes run so far (-1: not begun)
        self._pending_cr = False  # a CR before the request line, waiting for its LF
        self.request_line: tuple[str, bytes, str] | None = None
        self.fields: list[tuple[bytes, bytes]] = []
        self.head = b""

    @property
    def started(self) -> bool:
        """True once a byte of the head itself (not of an empty line before it) has arrived."""
        return bool(self._buf)

    def feed(self, data: bytes, pos: int = 0) -> int:
        """Take head bytes from ``data[pos:]``; return where the head ends in ``data``, or -1.

        Raises the ``RequestError`` that answers the first byte no valid head could hold.
        """
        size = len(data)
        buf = self._buf
        if not buf:
            pos = self._skip_empty_lines(data, pos)
            if pos == size:
                return -1
        limit = self._limits.head
        room = limit - len(buf) if limit else size - pos
        before = len(buf)
        buf += memoryview(data)[pos : pos + room + 1]  # one byte past the budget shows it is passed
        end = self._scan(min(len(buf), limit) if limit else len(buf))
        if end >= 0:
            self.head = bytes(buf[:end])
            return pos + end - before
        if limit and len(buf) > limit:
            raise head_too_large(limit)
        return -1

    def _skip_empty_lines(self, data: bytes, pos: int) -> int:
        size = len(data)
        while pos < size:
            byte = data[pos]
            if self._pending_cr:
                if byte != 0x0A:
                    raise MalformedRequest("bare CR before the request line")
                self._pending_cr = False
            elif byte == 0x0D:
                self._pending_cr = True
            elif byte == 0x0A:
                raise MalformedRequest("bare LF before the request line")
            else:
                break
            pos += 1
        return pos

    def _scan(self, stop: int) -> int:
        """Check the lines of ``_buf[:stop]`` as they complete; return the end of the blank line, or -1."""
        buf = self._buf
        line = self._line
        # Each byte is searched once: a long line sent a byte at a time costs no more than at once.
        while (newline := buf.find(b"\n", max(line, self._searched), stop)) >= 0:
            end = newline + 1
            if self.request_line is None:
                self._request_line(line, end)
            elif end - line == 2 and buf[line] == 0x0D:
                return end
            else:
                self._field_line(line, end)
            line = end
        self._line = line
        self._searched = stop
        if self.request_line is None:
            self._check_request_line_start(line, stop, complete=False)
            return -1
        # The unfinished field line: controls are refused at once, so binary garbage is not held.
        # (from one byte back: a CR that ended the last read is bare if this one does not begin with LF)
        checked = max(self._checked - 1, line)
        if self._first_bad(checked, stop) >= 0:
            raise MalformedRequest("control character or bare CR in request head")
        self._checked = stop
        return -1

    def _first_bad(self, start: int, stop: int) -> int:
        return first_fault(self._buf, start, stop)

    def _request_line(self, start: int, end: int) -> None:
        match = _REQUEST_LINE.fullmatch(self._buf, start, end)
        if match is None:
            self._check_request_line_start(start, end, complete=True)
        assert match is not None
        target = bytes(match[2])
        method = match[1].decode("ascii")
        version = f"{match[3].decode()}.{match[4].decode()}"
        # The rules on the line as a whole (version, method, target form), decided as soon as it ends.
        check_request_line(method, target, version, self._limits)
        self.request_line = (method, target, version)

    def _check_request_line_start(self, start: int, stop: int, complete: bool) -> None:
        """Refuse a request line, whole but malformed (``complete``) or still arriving, at its first fault.

        Faults in arrival order: a method that is no known method (or prefix of one, while it
        arrives), a target past the limit (414 once its byte limit+1 has come, unless a bad byte
        came first), more than " HTTP/x.y" CR after the target, a control byte or bare CR; a whole
        line that is malformed anyway is 400. Only the bytes new since the last read are looked at,
        so a line sent a byte at a time costs what it costs at once.
        """
        buf = self._buf
        checked = start if complete else max(self._checked - 1, start)
        bad = self._first_bad(checked, stop)
        self._checked = stop
        space = self._space
        if space < 0:
            window = min(stop, start + _LONGEST_METHOD + 1)
            found = buf.find(b" ", start, window)
            method = bytes(buf[start : found if found >= 0 else window])
            if found >= 0 and method in _METHODS:
                self._space = space = found
            elif found >= 0 or window == start + _LONGEST_METHOD + 1 or method not in _METHOD_PREFIXES:
                raise MalformedRequest(f"unknown or malformed method {method[:16]!r}")
        if space >= 0:
            run = _TARGET_RUN.match(buf, max(self._target_end, space + 1), stop)
            assert run is not None  # the pattern matches the empty string
            self._target_end = target_end = run.end()
            limit = self._limits.request_line
            if limit and target_end - space - 1 > limit:  # a bad byte would have ended the run
                raise TargetTooLong(f"request target longer than {limit} bytes")
            if target_end < stop and stop - target_end > _AFTER_TARGET:
                raise MalformedRequest("request line goes on after its version")
        if complete:
            raise MalformedRequest("request line is not method SP target SP HTTP-version CRLF")
        if bad >= 0:
            raise MalformedRequest("control character or bare CR in request line")

    def _field_line(self, start: int, end: int) -> None:
        match = FIELD_LINE.fullmatch(self._buf, start, end)
        if match is None:
            raise MalformedRequest("malformed header field line")
        fields = self.fields
        limit = self._limits.fields
        if limit and len(fields) == limit:  # at once: a head of many short fields holds them all
            raise HeadersTooLarge(f"more than {limit} header fields")
        fields.append((bytes(match[1]).lower(), bytes(match[2])))


def first_fault(data: bytes | bytearray, start: int, stop: int) -> int:
    """Where the first control byte, or CR not followed by LF, is in ``data[start:stop]``; -1 if none.

    A CR that is the last byte cannot be judged yet: the next read decides.
    """
    bad = -1
    if len(data[start:stop].translate(None, _CONTROLS)) != stop - start:
        bad = next(i for i in range(start, stop) if data[i] in _CONTROLS)
    cr = data.find(b"\r", start, stop - 1)
    while cr >= 0 and data[cr + 1] == 0x0A:  # a line end
        cr = data.find(b"\r", cr + 1, stop - 1)
    if cr >= 0 and (bad < 0 or cr < bad):
        bad = cr
    return bad


def classify(head: bytes, limits: RequestLimits, refusal: str) -> RequestError:
    """The answer to a complete ``head`` that a parser library refused with ``refusal``.

    The scanner's own error when the head breaks the grammar; else ``build_head``'s error for it;
    else (the library is stricter than our grammar) a 400 naming the library's reason.
    """
    scanner = HeadScanner(limits)
    try:
        scanner.feed(head)
        if scanner.request_line is not None:
            method, target, version = scanner.request_line
            build_head(method, target, version, scanner.fields, limits)
    except RequestError as error:
        return error
    return MalformedRequest(f"malformed request: {refusal}")
