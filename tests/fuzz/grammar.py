"""Requests built from pieces that sit on the edges of the strict reading (issue 12 rules).

Random bytes rarely get past a request line, and corpus mutants mostly break the first line they
touch. These requests are well formed except in a few slots: each slot (method, target, version,
Host, Content-Length, Transfer-Encoding, chunk sizes, line ends, ...) takes its normal value most of
the time and otherwise one of the forms parsers are known to read differently (``int()``-ish
numbers, empty list elements, bare CR, obs-fold, overflowing chunk sizes, limit +- 1). A request
then has one or two oddities, so the first one decides and the answer says something about it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from asgi_worker.http.limits import RequestLimits

# Small limits put 414/431/413 within reach of short inputs (the defaults need 8-64 KiB).
SMALL_LIMITS = RequestLimits(request_line=32, fields=6, field_size=48, head=256, body=24)

# How often a slot keeps its normal value (the first in its list).
NORMAL = 0.93

METHODS = (
    b"GET",
    b"POST",
    b"PUT",
    b"HEAD",
    b"OPTIONS",
    b"CONNECT",
    b"DELETE",
    b"PATCH",
    b"M-SEARCH",
    b"QUERY",
    b"PRI",
    b"get",
    b"Get",
    b"FOO",
    b"GETT",
    b"G\x00T",
    b"GET\x7f",
    b"",
)
TARGETS = (
    b"/",
    b"/a?b=c&d",
    b"/p%20q",
    b"*",
    b"http://example.com/p",
    b"HTTP://example.com",
    b"https://e:443/",
    b"a+b.c-d:x",
    b"1a://x",
    b"example.com:443",
    b"example.com",
    b"[::1]:80",
    b"/#frag",
    b"/a#",
    b'/{}|\\^`"<>',
    b"/%zz%",
    b"//x",
    b"?q",
    b"/\x7f",
    b"/\xff",
    b"/\x00",
    b"/\t",
    b"",
)
VERSIONS = (
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/3.0",
    b"HTTP/0.9",
    b"HTTP/1.2",
    b"HTTP/9.9",
    b"HTTP/1.10",
    b"HTTP/11",
    b"HTTP/1",
    b"HTTP/1.a",
    b"http/1.1",
    b"HTTP /1.1",
    b"HTTP/1.1 ",
    b"HTTP/1.1\t",
    b"",
)
SPACES = (b" ", b"  ", b"\t", b"", b" \t")
LINE_ENDS = (b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\x00")
LEADING = (b"", b"\r\n", b"\r\n\r\n", b"\n", b"\r", b" ", b"\x00")
HOSTS: tuple[tuple[bytes, ...], ...] = (
    (b"Host: example.com",),
    (),
    (b"Host:",),
    (b"Host: a:80",),
    (b"Host: a:",),
    (b"Host: [::1]:8080",),
    (b"Host: [::1",),
    (b"Host: 1.2.3.4",),
    (b"Host: a b",),
    (b"Host: a@b",),
    (b"Host: a:b",),
    (b"Host: a:80:90",),
    (b"Host: ex%41mple",),
    (b"Host: ex%4",),
    (b"Host: a/b",),
    (b"Host: a_b!$&'()*+,;=~",),
    (b"Host: \xff",),
    (b"HOST: x",),
    (b"Host: a", b"Host: a"),
    (b"Host: a", b"Host: b"),
    (b"Host: a, b",),
)
# Content-Length forms for a body of n bytes; "{n}" is replaced.
LENGTHS = (
    "{n}",
    "+{n}",
    "-{n}",
    "{n}_0",
    "0x{n}",
    " {n}",
    "{n} ",
    "\t{n}\t",
    "{n} {n}",
    "",
    "0{n}",
    "{n},{n}",
    "{n}, {n}",
    "{n}.0",
    "1e1",
    "99999999999999999999999",
    "\xd9\xa5",  # ARABIC-INDIC DIGIT FIVE in UTF-8: int() would take its str
    "{n}\x00",
)
TRANSFER_CODINGS: tuple[tuple[bytes, ...], ...] = (
    (b"chunked",),
    (b",chunked",),
    (b"chunked,",),
    (b"chunked, ",),
    (b", chunked",),
    (b"gzip, chunked",),
    (b"gzip,chunked",),
    (b"chunked, gzip",),
    (b"chunked\t",),
    (b"chunked ",),
    (b"CHUNKED",),
    (b"Chunked",),
    (b"chunked, chunked",),
    (b"identity",),
    (b"gzip",),
    (b"x-custom, chunked",),
    (b"chunked;q=1",),
    (b'"chunked"',),
    (b"chunked\x0b",),
    (b"",),
    (b"gzip", b"chunked"),
    (b"chunked", b"chunked"),
    (b"chunked", b""),
    (b"", b"chunked"),
)
# Chunk-size lines for a chunk of k bytes; "{k}" is k in hex.
CHUNK_SIZES = (
    "{k}",
    "0{k}",
    "000000000000000{k}",
    "0000000000000000{k}",
    "+{k}",
    "-{k}",
    "0x{k}",
    " {k}",
    "{k} ",
    "{k}\t",
    "{k}x",
    "{k};",
    "{k};a",
    "{k};a=b",
    "{k} ;a=b",
    "{k}; a = b",
    "{k}\t;\ta\t=\tb",
    '{k};a="q s"',
    '{k};a="\\""',
    '{k};a="open',
    "{k};a=b;c",
    "{k};=b",
    "{k};a b",
    "{k};a=\x01",
    "ffffffffffffffffff",
    "10000000000000000",
    "",
    "{k}\x00",
)
CHUNK_ENDS = (b"\r\n", b"\n", b"", b"x\r\n", b"\r", b"\r\n\r\n")
LAST_CHUNKS = (b"0", b"00", b"000", b"0;ext=1", b"0 ", b"0x0", b"")
TRAILERS: tuple[tuple[bytes, ...], ...] = (
    (),
    (b"X-Trailer: y",),
    (b"Content-Length: 5",),
    (b"Transfer-Encoding: chunked",),
    (b"Host: other",),
    (b" folded",),
    (b"X: a", b" folded"),
    (b"X : y",),
    (b"X:\x00y",),
    (b"no-colon",),
    (b":",),
)
EXTRA_HEADERS = (
    b"X-A: b",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: upgrade",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"X-Empty:",
    b"X-Tab:\tv\t",
    b"X-Obs: \x80\xff",
    b"X-Ctl: a\x01b",
    b"X-Del: a\x7fb",
    b"X-Nul: a\x00b",
    b"X-Cr: a\rb",
    b"X A: b",
    b"X-A : b",
    b"X-A\t: b",
    b"no colon",
    b": empty-name",
    b" folded",
    b"\tfolded",
    b"X-\xff: b",
    b"X-(: b",
)
PIPELINED = (
    b"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"\r\nGET /next HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /next HTTP/1.1\r\nHost: exa",
    b"XYZ\r\n\r\n",
    b"\x00",
    b"GET /next HTTP/1.0\r\n\r\n",
)
BARE = (b"\r", b"\n", b"\x00")

T = TypeVar("T")


@dataclass
class _Builder:
    """One request under construction: the rng, the limits, and the notes on every odd slot."""

    rng: random.Random
    limits: RequestLimits
    notes: list[str] = field(default_factory=list)

    def pick(self, slot: str, options: Sequence[T]) -> T:
        """The normal (first) option mostly, else any other one, noted under ``slot``."""
        if self.rng.random() < NORMAL:
            return options[0]
        choice = self.rng.choice(options[1:])
        self.notes.append(f"{slot}={choice!r}")
        return choice

    def eol(self) -> bytes:
        if self.rng.random() < 0.99:
            return LINE_ENDS[0]
        end = self.rng.choice(LINE_ENDS[1:])
        self.notes.append(f"eol={end!r}")
        return end

    def target(self, method: bytes) -> bytes:
        if self.rng.random() < 0.08 and self.limits.request_line:
            size = self.limits.request_line + self.rng.choice((-1, 0, 1))
            self.notes.append(f"target of {size} bytes")
            return b"/" + b"a" * (size - 1)
        if method == b"CONNECT" and self.rng.random() < 0.7:
            return b"example.com:443"
        if method == b"OPTIONS" and self.rng.random() < 0.3:
            return b"*"
        return self.pick("target", TARGETS)

    def request_line(self) -> bytes:
        method = self.pick("method", METHODS)
        target = self.target(method)
        version = self.pick("version", VERSIONS)
        line = method + self.pick("sp1", SPACES) + target
        return line + self.pick("sp2", SPACES) + version if version else line

    def framing(self, headers: list[bytes]) -> str:
        """Add the framing fields; return how the body is framed: "none", "length" or "chunked"."""
        kind = self.rng.choices(("none", "length", "chunked", "both"), (3, 3, 3, 1))[0]
        if kind in ("length", "both"):
            headers.append(b"Content-Length: " + self.pick("cl", LENGTHS).encode("latin-1"))
            if self.rng.random() < 0.05:
                headers.append(b"Content-Length: {n}")
                self.notes.append("two Content-Length")
        if kind in ("chunked", "both"):
            headers.extend(b"Transfer-Encoding: " + value for value in self.pick("te", TRANSFER_CODINGS))
        if kind == "both":
            self.notes.append("CL and TE")
            return self.rng.choice(("length", "chunked"))
        return kind

    def chunked_body(self) -> bytes:
        parts = []
        for _ in range(self.rng.randint(0, 3)):
            size = self.rng.randint(1, 20)
            line = self.pick("chunk-size", CHUNK_SIZES).replace("{k}", f"{size:x}").encode("latin-1")
            data = bytes(
                self.rng.choice(b"abcxyz") for _ in range(size + self.pick("chunk-delta", (0, -1, 1)))
            )
            parts.append(line + self.eol() + data + self.pick("chunk-end", CHUNK_ENDS))
        parts.append(self.pick("last-chunk", LAST_CHUNKS) + self.eol())
        for trailer in self.pick("trailers", TRAILERS):
            parts.append(trailer + self.eol())
        parts.append(self.eol())
        return b"".join(parts)

    def head_padding(self, head: bytes) -> bytes:
        """A field that makes the head exactly the budget +- 1 bytes long (or nothing)."""
        if not self.limits.head or self.rng.random() > 0.1:
            return b""
        wanted = self.limits.head + self.rng.choice((-1, 0, 1))
        room = wanted - len(head) - len(b"X-Pad: \r\n")
        if room < 0:
            return b""
        self.notes.append(f"head of {wanted} bytes")
        return b"X-Pad: " + b"p" * room + b"\r\n"

    def fields(self) -> list[bytes]:
        headers = list(self.pick("host", HOSTS))
        for _ in range(self.rng.choice((0, 0, 1, 1, 2, 3))):
            extra = self.rng.choice(EXTRA_HEADERS[: 7 if self.rng.random() < NORMAL else None])
            headers.append(extra)
            if extra not in EXTRA_HEADERS[:7]:
                self.notes.append(f"field {extra!r}")
        if self.rng.random() < 0.05 and self.limits.fields:
            count = self.limits.fields - len(headers) + self.rng.choice((0, 1, 2))
            headers.extend(b"X-F%d: v" % i for i in range(count))
            self.notes.append(f"{count} filler fields")
        if self.rng.random() < 0.05 and self.limits.field_size:
            size = self.limits.field_size + self.rng.choice((-1, 0, 1))
            headers.append(b"X-Big: " + b"v" * max(size - len(b"X-Big: "), 0))
            self.notes.append(f"field of {size} bytes")
        return headers

    def request(self, depth: int = 0) -> bytes:
        headers = self.fields()
        framing = self.framing(headers)
        self.rng.shuffle(headers)
        if framing == "length":
            size = self.rng.randint(0, 30)
            headers = [h.replace(b"{n}", str(size).encode()) for h in headers]
            body = bytes(
                self.rng.choice(b"0123456789") for _ in range(size + self.pick("cl-delta", (0, -1, 1)))
            )
        else:
            headers = [h.replace(b"{n}", b"5") for h in headers]
            body = self.chunked_body() if framing == "chunked" else b""
        head = self.pick("leading", LEADING) + self.request_line() + self.eol()
        head += b"".join(h + self.eol() for h in headers)
        head += self.head_padding(head) + self.eol()
        data = head + body
        if depth == 0 and self.rng.random() < 0.25:
            if self.rng.random() < 0.5:
                self.notes.append("pipelined request")
                data += self.request(depth + 1)
            else:
                data += self.pick("pipelined", PIPELINED)
        return data


def grammar_request(rng: random.Random) -> tuple[bytes, RequestLimits, str]:
    """One request with a few odd slots, its limits (default or small) and notes on what is odd."""
    limits = SMALL_LIMITS if rng.random() < 0.25 else RequestLimits()
    builder = _Builder(rng, limits)
    data = builder.request()
    if rng.random() < 0.12 and data:
        at = rng.randrange(len(data) + 1)
        extra = rng.choice(BARE)
        data = data[:at] + extra + data[at:]
        builder.notes.append(f"insert {extra!r} at {at}")
    return data, limits, "grammar: " + (", ".join(builder.notes) or "plain")
