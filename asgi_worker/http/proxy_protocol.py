"""The PROXY protocol header (HAProxy's proxy-protocol.txt, v1 and v2) at the start of a connection.

A proxy in TCP mode (HAProxy, an AWS NLB, stunnel) cannot add ``Forwarded`` to HTTP it does not
read, so it sends one header before the connection's first byte saying whom it relays. When the
setting is on, every connection must start with one: the spec (section 5) forbids guessing whether a
header is there, since a client could then send its own and pick the address we see. So anything
that is not a header, an HTTP request included, is ``MalformedRequest`` and the connection is closed.

``parse_proxy_header(data, accept)`` reads the bytes received so far and returns None while the
header is unfinished, a ``ProxyHeader`` once it is whole (``length`` says where HTTP starts), or
raises at the first byte that cannot belong to a valid header, so a sender that speaks the wrong
thing learns it at once (spec 2.1: "abort the connection as soon as possible").

What we accept, and why:
- ``accept`` is gunicorn's setting: "v1", "v2", or "auto" (either; the first byte decides, "P" for
  v1 and CR for v2, as the two signatures share no first byte).
- v1 is one US-ASCII line of at most 107 bytes with its CRLF; with no CRLF in the first 107 bytes we
  refuse without waiting for more. "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport
  CRLF, one space each. Addresses are checked as the stated family (an IPv6 address after TCP4 is
  refused) and returned in canonical text; IPv6 scope ids ("%eth0") are refused, IPv4-mapped
  IPv6 ("::ffff:192.0.2.1", what HAProxy writes for such peers) is accepted. Ports are decimal
  0-65535 without sign and without leading zeros ("0" itself aside): the spec forbids leading zeros
  so nobody reads "080" as octal, and a port with two spellings could slip past a log filter.
- v1 "UNKNOWN" may stop there or go on with anything printable before the CRLF, which the spec
  says to ignore; it gives no addresses (the caller keeps the socket's own).
- A bare CR or LF, or any control byte, in a v1 line is refused where it arrives (the spec
  forbids ending the line with anything but CRLF).
- v2 is the 12-byte signature, a version nibble of 2, a command of LOCAL (0) or PROXY (1), a
  family/transport byte the spec defines, and a 16-bit length of what follows the 16 fixed bytes.
  These are checked byte by byte as they arrive; the length as soon as its two bytes do.
- v2 PROXY over TCP/IPv4 (0x11) or TCP/IPv6 (0x21) gives the addresses; their block must fit in
  the length. UNSPEC (0x00) and UNIX stream (0x31) give none (the spec says to ignore UNSPEC
  addresses; a UNIX path is no client address). Datagram transports (UDP 0x12/0x22, UNIX datagram
  0x32) are refused with PROXY: a datagram cannot have been relayed onto this stream, so such a
  header comes from a misconfigured sender. With LOCAL (a proxy's own health check) the spec says
  the family and the whole block are ignored: we skip them, only holding the length to the cap.
- What follows the addresses are TLVs (SNI, ALPN, a unique id, TLS details, a VPC endpoint id). We
  skip them but check that each one's length fits in the header, so a header that lies about its
  own layout is refused. We do not check a CRC32C TLV: the spec asks that only of receivers that
  support the checksum. After UNSPEC addresses the layout is unknown, so that block is skipped
  unread.
- The TLVs may take at most ``MAX_V2_TLV_BYTES``: see its comment.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from asgi_worker.errors import MalformedRequest

__all__ = [
    "ACCEPT_VALUES",
    "MAX_V1_LENGTH",
    "MAX_V2_TLV_BYTES",
    "V2_SIGNATURE",
    "ProxyHeader",
    "parse_proxy_header",
]

ACCEPT_VALUES = ("v1", "v2", "auto")

# Spec 2.1: the longest v1 line, "PROXY UNKNOWN" with two full IPv6 addresses and ports, CRLF included.
MAX_V1_LENGTH = 107

# Bytes of TLVs a v2 header may carry after its addresses. The v2 length field allows 65535, but what
# senders put there is short: SNI, ALPN, a unique id (at most 128 bytes), TLS version and cipher
# names, an AWS VPC endpoint id. The largest registered TLV is the optional client certificate
# (PP2_SUBTYPE_SSL_CLIENT_CERT, DER), usually 1-2 KiB; 8 KiB holds it with room to spare and keeps
# a broken sender from making each connection hold 64 KiB before its first request.
MAX_V2_TLV_BYTES = 8192

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16  # signature, version/command, family/transport, length

_V1_TCP = re.compile(
    rb"PROXY (TCP4|TCP6) ([0-9A-Fa-f:.]+) ([0-9A-Fa-f:.]+) (0|[1-9][0-9]{0,4}) (0|[1-9][0-9]{0,4})\r\n"
)
_V1_UNKNOWN = re.compile(rb"PROXY UNKNOWN(?: [\x20-\x7e]*)?\r\n")
# How each kind of v1 line may begin, and the bytes it may hold after that before its CRLF (a
# trailing CR is its first half, still to be completed).
_V1_STARTS = {
    b"PROXY TCP4 ": re.compile(rb"[0-9. ]*\r?"),
    b"PROXY TCP6 ": re.compile(rb"[0-9A-Fa-f:. ]*\r?"),
    b"PROXY UNKNOWN ": re.compile(rb"[\x20-\x7e]*\r?"),
    b"PROXY UNKNOWN\r\n": re.compile(rb""),
}

_LOCAL, _PROXY = 0x0, 0x1
# Family/transport byte -> size of its address block (spec 2.2, "the following protocol bytes").
_ADDRESS_SIZE = {0x00: 0, 0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36, 0x31: 216, 0x32: 216}
_DATAGRAM = frozenset({0x12, 0x22, 0x32})
_TLV_HEAD = 3  # type, 16-bit length


@dataclass(frozen=True)
class ProxyHeader:
    """One parsed header. ``source``/``destination`` are ``(host, port)``, or None when the header
    gives no address (v1 UNKNOWN, v2 LOCAL, UNSPEC, UNIX): the caller then keeps the socket's own.
    ``length`` is how many bytes the header took: the request starts right after them."""

    version: int
    command: str
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int


def parse_proxy_header(data: bytes, accept: str) -> ProxyHeader | None:
    """Read the header at the start of ``data``: None while more bytes are needed, else the header.

    Raises ``MalformedRequest`` as soon as ``data`` cannot begin a valid header. Bytes after the
    header are not looked at.
    """
    if accept not in ACCEPT_VALUES:
        raise ValueError(f"accept must be one of {ACCEPT_VALUES}, not {accept!r}")
    if not data:
        return None
    if accept == "auto":
        if data[0] == V2_SIGNATURE[0]:
            return _read_v2(data)
        if data[0] == ord("P"):
            return _read_v1(data)
        raise MalformedRequest("PROXY protocol: connection does not start with a v1 or v2 header")
    return _read_v1(data) if accept == "v1" else _read_v2(data)


def _read_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, MAX_V1_LENGTH)
    if end < 0:
        _check_v1_start(data)
        return None
    line = bytes(data[: end + 2])
    if _V1_UNKNOWN.fullmatch(line):
        return ProxyHeader(1, "PROXY", None, None, len(line))
    match = _V1_TCP.fullmatch(line)
    if match is None:
        raise MalformedRequest("PROXY protocol: malformed v1 line")
    family, source, destination, source_port, destination_port = match.groups()
    return ProxyHeader(
        1,
        "PROXY",
        (_v1_address(family, source), _v1_port(source_port)),
        (_v1_address(family, destination), _v1_port(destination_port)),
        len(line),
    )


def _check_v1_start(data: bytes) -> None:
    """Refuse an unfinished v1 line that can no longer become a valid one."""
    if len(data) >= MAX_V1_LENGTH:
        raise MalformedRequest(f"PROXY protocol: no CRLF in the first {MAX_V1_LENGTH} bytes of a v1 line")
    for start, rest in _V1_STARTS.items():
        if data[: len(start)] == start[: len(data)]:
            if len(data) <= len(start) or rest.fullmatch(data, len(start)):
                return
            break
    raise MalformedRequest("PROXY protocol: not a v1 line")


def _v1_address(family: bytes, text: bytes) -> str:
    kind = ipaddress.IPv4Address if family == b"TCP4" else ipaddress.IPv6Address
    try:
        return str(kind(text.decode("ascii")))
    except ValueError:
        raise MalformedRequest(f"PROXY protocol: v1 {family.decode()} line with a bad address") from None


def _v1_port(text: bytes) -> int:
    port = int(text)
    if port > 65535:
        raise MalformedRequest("PROXY protocol: v1 port out of range")
    return port


def _read_v2(data: bytes) -> ProxyHeader | None:
    if data[: len(V2_SIGNATURE)] != V2_SIGNATURE[: len(data)]:
        raise MalformedRequest("PROXY protocol: not a v2 signature")
    if len(data) > 12 and data[12] >> 4 != 2:
        raise MalformedRequest("PROXY protocol: v2 header with a version other than 2")
    if len(data) > 12 and data[12] & 0x0F not in (_LOCAL, _PROXY):
        raise MalformedRequest("PROXY protocol: v2 command is neither LOCAL nor PROXY")
    if len(data) > 13:
        _check_v2_family(data[12] & 0x0F, data[13])
    if len(data) < _V2_FIXED:
        return None
    command, family = data[12] & 0x0F, data[13]
    declared = int.from_bytes(data[14:16], "big")
    if declared > _ADDRESS_SIZE[family] + MAX_V2_TLV_BYTES:
        raise MalformedRequest(f"PROXY protocol: v2 header declares {declared} bytes, past our limit")
    total = _V2_FIXED + declared
    if len(data) < total:
        return None
    if command == _LOCAL:
        return ProxyHeader(2, "LOCAL", None, None, total)
    block = bytes(data[_V2_FIXED:total])
    if len(block) < _ADDRESS_SIZE[family]:
        raise MalformedRequest("PROXY protocol: v2 address block does not fit in the declared length")
    if family != 0x00:
        _check_tlvs(block, _ADDRESS_SIZE[family])
    source, destination = _v2_addresses(family, block)
    return ProxyHeader(2, "PROXY", source, destination, total)


def _check_v2_family(command: int, family: int) -> None:
    if family not in _ADDRESS_SIZE:
        raise MalformedRequest(f"PROXY protocol: v2 address family/transport 0x{family:02x} is undefined")
    if command == _PROXY and family in _DATAGRAM:
        raise MalformedRequest("PROXY protocol: v2 header relays a datagram transport; we serve streams")


def _check_tlvs(block: bytes, offset: int) -> None:
    """Walk the TLVs after the addresses: each must fit, the last must end where the header does."""
    while offset < len(block):
        if offset + _TLV_HEAD > len(block):
            raise MalformedRequest("PROXY protocol: v2 TLV cut off by the header's end")
        offset += _TLV_HEAD + int.from_bytes(block[offset + 1 : offset + 3], "big")
    if offset > len(block):
        raise MalformedRequest("PROXY protocol: v2 TLV runs past the header's end")


def _v2_addresses(family: int, block: bytes) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    if family == 0x11:
        kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address] = ipaddress.IPv4Address
        size = 4
    elif family == 0x21:
        kind, size = ipaddress.IPv6Address, 16
    else:
        return None, None
    ports = block[2 * size : 2 * size + 4]
    return (
        (str(kind(block[:size])), int.from_bytes(ports[:2], "big")),
        (str(kind(block[size : 2 * size])), int.from_bytes(ports[2:], "big")),
    )
