"""Where a chunked request body ends, found without parsing its data (RFC 9112 7.1).

The httptools adapter needs the exact end of a chunked body, so that the next request's head is
measured from its first byte (``limits.py``). llhttp reports no offsets, so this scanner follows the
framing itself: it reads each chunk-size line, skips that many data bytes without looking at them,
checks the CRLF after them, and after the last chunk finds the blank line that ends the trailer
section. Its cost is one step per chunk and per read, never per byte of data: a body full of blank
lines costs no more than any other (cutting at every blank line and asking llhttp whether the body
ended there let a 64 KiB read become 32,768 parser calls).

It is as strict as the grammar and no stricter: chunk-size is 1*HEXDIG (at most 16 digits), BWS is
allowed only before a ``;`` extension (whose syntax llhttp checks), every line ends with CRLF, and the
data must be followed by CRLF. What it cannot follow is a ``MalformedRequest``; llhttp, fed the same
bytes first, usually answers such input itself (its error wins). Trailers count against the head
budget: past it, 431, so a trailer section cannot grow without bound.
"""

from __future__ import annotations

from asgi_worker.errors import HeadersTooLarge, MalformedRequest

__all__ = ["ChunkedFraming"]

# A chunk-size line with extensions longer than this is refused. llhttp and h11 bound a line by the
# head size; extensions carry nothing we use, and 4 KiB is more than any real client sends.
MAX_CHUNK_LINE = 4096
_MAX_SIZE_DIGITS = 16  # 2**64 - 1: anything longer is an overflow, not a size
_HEX = b"0123456789abcdefABCDEF"

_SIZE_LINE, _DATA, _DATA_END, _TRAILERS, _DONE = range(5)


class ChunkedFraming:
    """Follows one chunked body. Create it when the body begins; feed it every byte of the body."""

    __slots__ = ("_held", "_left", "_phase", "_trailer_budget", "_trailer_bytes", "stopped_at")

    def __init__(self, trailer_budget: int) -> None:
        self._phase = _SIZE_LINE
        self._left = 0  # data bytes of the current chunk still to come
        self._held = b""  # a partial size line, a partial CRLF, or the last bytes of the trailers
        self._trailer_budget = trailer_budget  # 0: no limit
        self._trailer_bytes = 0
        self.stopped_at = 0  # after an error: where in the data the step that failed began

    @property
    def done(self) -> bool:
        """True once the body's last byte has been scanned."""
        return self._phase == _DONE

    def scan(self, data: bytes, pos: int) -> int:
        """Scan ``data`` from ``pos``; return where the body ends in it, or ``len(data)`` if it goes on.

        Raises ``MalformedRequest`` (400) for framing it cannot follow, ``HeadersTooLarge`` (431) for
        trailers past the budget.
        """
        size = len(data)
        phase = self._phase
        try:
            while pos < size and phase != _DONE:
                if phase == _DATA:
                    step = min(self._left, size - pos)
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
        except (MalformedRequest, HeadersTooLarge):
            self.stopped_at = pos
            raise
        self._phase = phase
        return pos

    def _size_line(self, data: bytes, pos: int) -> tuple[int, int]:
        end = data.find(b"\n", pos)
        if end < 0:
            self._held += data[pos:]
            if len(self._held) > MAX_CHUNK_LINE:
                raise MalformedRequest(f"chunk-size line longer than {MAX_CHUNK_LINE} bytes")
            return len(data), _SIZE_LINE
        line = self._held + data[pos : end + 1]
        self._held = b""
        if len(line) > MAX_CHUNK_LINE:
            raise MalformedRequest(f"chunk-size line longer than {MAX_CHUNK_LINE} bytes")
        length = chunk_size(line)
        if length:
            self._left = length
            return end + 1, _DATA
        if data[end + 1 : end + 3] == b"\r\n":  # no trailers, the common case: the body ends here
            return end + 3, _DONE
        self._held = b"\r\n"  # the last chunk's line end: a CRLF right after it ends the body
        return end + 1, _TRAILERS

    def _trailers(self, data: bytes, pos: int) -> tuple[int, int]:
        held = self._held
        window = held + data[pos:]
        found = window.find(b"\r\n\r\n")
        end = len(data) if found < 0 else pos + found + 4 - len(held)
        self._trailer_bytes += end - pos
        if self._trailer_budget and self._trailer_bytes > self._trailer_budget:
            raise HeadersTooLarge(f"trailer section larger than {self._trailer_budget} bytes")
        if found < 0:
            self._held = window[-3:]
            return end, _TRAILERS
        self._held = b""
        return end, _DONE


def chunk_size(line: bytes) -> int:
    """The size a chunk-size line (with its CRLF) announces. Raises ``MalformedRequest``."""
    if line[-2:] != b"\r\n" or b"\r" in line[:-2]:
        raise MalformedRequest("chunk-size line does not end with CRLF")
    digits, extension, _ = line[:-2].partition(b";")
    if extension:
        digits = digits.rstrip(b" \t")  # BWS before the extension
    if not digits or len(digits) > _MAX_SIZE_DIGITS or digits.strip(_HEX):
        raise MalformedRequest(f"invalid chunk size {digits[:20]!r}")
    return int(digits, 16)
