"""The chunked request body (RFC 9112 7.1), decoded here for both parsers: one reading of the framing.

Neither library frames a chunked body for us: llhttp refuses BWS before a chunk extension, which the
grammar allows, and h11 accepts a size with trailing space, any extension and no CRLF check at all.
So both adapters hand the body's bytes to ``ChunkedBody``, which follows the framing in one step per
chunk (never a search through the data), hands out the data as slices of what arrived, and knows
the exact end of the body, so the next request's head is measured from its first byte
(``limits.py``).

It is as strict as the grammar, no stricter:
- chunk-size is 1*HEXDIG, at most 16 digits (more would overflow 64 bits: 400, never a prefix read);
- chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ), name a token, value a token or a
  quoted-string; whitespace after the size with no extension after it is 400; the line is bounded;
- every line ends with CRLF (a bare LF or CR is 400) and chunk data must be followed by CRLF;
- the trailer section is field lines (``head_scan.FIELD_LINE``) up to an empty line, held to the head
  budget (431). Trailer fields are dropped: none of them ever changes framing or reaches the app.
Past ``body_limit`` de-chunked bytes: 413, raised at the size line that would cross it.
"""

from __future__ import annotations

import re

from asgi_worker.errors import BodyTooLarge, HeadersTooLarge, MalformedRequest
from asgi_worker.http.events import BodyChunk
from asgi_worker.http.head_scan import FIELD_LINE, first_fault

__all__ = ["MAX_CHUNK_LINE", "ChunkedBody", "chunk_size"]

# A chunk-size line with extensions longer than this is refused. llhttp and h11 bound a line by the
# head size; extensions carry nothing we use, and 4 KiB is more than any real client sends.
MAX_CHUNK_LINE = 4096
_MAX_SIZE_DIGITS = 16  # 2**64 - 1: anything longer is an overflow, not a size
_HEX = b"0123456789abcdefABCDEF"
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXTENSIONS = re.compile(rb"(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)+" % (_TOKEN, _TOKEN, _QUOTED))

_SIZE_LINE, _DATA, _DATA_END, _TRAILERS, _DONE = range(5)


class ChunkedBody:
    """Decodes one chunked body. Create it when the body begins; feed it every byte of the body."""

    __slots__ = (
        "_body_limit",
        "_held",
        "_left",
        "_phase",
        "_received",
        "_trailer_budget",
        "_trailer_bytes",
        "_trailer_line",
    )

    def __init__(self, trailer_budget: int, body_limit: int = 0) -> None:
        self._phase = _SIZE_LINE
        self._left = 0  # data bytes of the current chunk still to come
        self._held = b""  # a partial size line or a partial CRLF
        self._trailer_line = bytearray()  # a partial trailer line
        self._trailer_budget = trailer_budget  # 0: no limit
        self._trailer_bytes = 0
        self._body_limit = body_limit  # 0: no limit
        self._received = 0  # de-chunked bytes announced so far

    @property
    def done(self) -> bool:
        """True once the body's last byte has been read."""
        return self._phase == _DONE

    def read(self, data: bytes, pos: int, out: list[object]) -> int:
        """Decode ``data`` from ``pos``, appending a ``BodyChunk`` per run of data to ``out``.

        Returns where the body ends in ``data``, or ``len(data)`` if it goes on. Raises
        ``MalformedRequest`` (400), ``HeadersTooLarge`` (431, trailers) or ``BodyTooLarge`` (413); the
        data before the error is in ``out`` already.
        """
        size = len(data)
        phase = self._phase
        while pos < size and phase != _DONE:
            if phase == _DATA:
                step = min(self._left, size - pos)
                out.append(BodyChunk(data if step == size else data[pos : pos + step]))
                pos += step
                self._left -= step
                if not self._left:
                    phase = _DATA_END
            elif phase == _SIZE_LINE:
                pos, phase = self._size_line(data, pos)
            elif phase == _DATA_END:
                held = self._held + data[pos : pos + 2 - len(self._held)]
                pos += len(held) - len(self._held)
                if len(held) < 2:
                    self._held = held
                    continue
                if held != b"\r\n":
                    raise MalformedRequest("chunk data is not followed by CRLF")
                self._held = b""
                phase = _SIZE_LINE
            else:
                pos, phase = self._trailers(data, pos)
        self._phase = phase
        return pos

    def _size_line(self, data: bytes, pos: int) -> tuple[int, int]:
        end = data.find(b"\n", pos, pos + MAX_CHUNK_LINE + 1)
        if end < 0:
            self._held += data[pos:]
            if len(self._held) > MAX_CHUNK_LINE:
                raise MalformedRequest(f"chunk-size line longer than {MAX_CHUNK_LINE} bytes")
            if b"\r" in self._held[:-1]:
                raise MalformedRequest("bare CR in a chunk-size line")
            return len(data), _SIZE_LINE
        line = self._held + data[pos : end + 1] if self._held else data[pos : end + 1]
        self._held = b""
        if len(line) > MAX_CHUNK_LINE:
            raise MalformedRequest(f"chunk-size line longer than {MAX_CHUNK_LINE} bytes")
        length = chunk_size(line)
        if length:
            limit = self._body_limit
            self._received += length
            if limit and self._received > limit:
                raise BodyTooLarge(f"chunked body over the {limit}-byte limit")
            self._left = length
            return end + 1, _DATA
        return end + 1, _TRAILERS

    def _trailers(self, data: bytes, pos: int) -> tuple[int, int]:
        """One trailer line (or the empty line that ends the body), checked like a header field line.

        As in a head (``head_scan``): a control byte or bare CR is refused where it comes, the
        budget when it is passed, the field grammar when the line is whole.
        """
        end = data.find(b"\n", pos)
        stop = len(data) if end < 0 else end + 1
        budget = self._trailer_budget
        held = self._trailer_line
        used = self._trailer_bytes + len(held)
        within = min(stop, pos + budget - used) if budget else stop  # the new bytes within the budget
        # From the last held byte: a CR that ended the last read is bare unless this one starts with LF.
        window = held[-1:] + data[pos:within]
        if first_fault(window, 0, len(window) if end < 0 or within < stop else len(window) - 1) >= 0:
            raise MalformedRequest("control character or bare CR in the trailer section")
        if within < stop:
            raise HeadersTooLarge(f"trailer section larger than {budget} bytes")
        if end < 0:
            held += memoryview(data)[pos:]  # in place: an endless trailer line is never copied whole
            return len(data), _TRAILERS
        line = bytes(held) + data[pos:stop] if held else data[pos:stop]
        held.clear()
        self._trailer_bytes += len(line)
        if line == b"\r\n":
            return stop, _DONE
        if FIELD_LINE.fullmatch(line) is None:
            raise MalformedRequest("malformed trailer field line")
        return stop, _TRAILERS


def chunk_size(line: bytes) -> int:
    """The size a chunk-size line (with its CRLF) announces. Raises ``MalformedRequest``."""
    if line[-2:] != b"\r\n":
        raise MalformedRequest("chunk-size line does not end with CRLF")
    digits, semicolon, _ = line.partition(b";")
    if semicolon:
        if _EXTENSIONS.fullmatch(line, len(digits.rstrip(b" \t")), len(line) - 2) is None:
            raise MalformedRequest("malformed chunk extension")
        digits = digits.rstrip(b" \t")  # BWS before the extension
    else:
        digits = digits[:-2]
    if not digits or len(digits) > _MAX_SIZE_DIGITS or digits.strip(_HEX):
        raise MalformedRequest(f"invalid chunk size {digits[:20]!r}")
    return int(digits, 16)
