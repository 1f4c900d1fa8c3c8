"""The PROXY protocol header parser (pure: bytes in, a header, None or MalformedRequest out)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from asgi_worker.errors import MalformedRequest
from asgi_worker.http.proxy_protocol import (
    MAX_V1_LENGTH,
    MAX_V2_TLV_BYTES,
    V2_SIGNATURE,
    ProxyHeader,
    parse_proxy_header,
)

HTTP = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


def v2(ver_cmd: int, family: int, block: bytes, declared: int | None = None) -> bytes:
    size = len(block) if declared is None else declared
    return V2_SIGNATURE + bytes([ver_cmd, family]) + size.to_bytes(2, "big") + block


IPV4_BLOCK = bytes.fromhex("c0000201 c6336407 d431 01bb")  # 192.0.2.1:54321 -> 198.51.100.7:443
IPV6_BLOCK = bytes.fromhex(
    "20010db8000000000000000000000001 20010db8000000000000000000000002 04d2 1f90"
)  # [2001:db8::1]:1234 -> [2001:db8::2]:8080
UNIX_BLOCK = b"/run/client.sock".ljust(108, b"\0") + b"/run/app.sock".ljust(108, b"\0")
TLVS = (
    tlv(0x02, b"example.com")  # AUTHORITY (SNI)
    + tlv(0x01, b"h2")  # ALPN
    + tlv(0x04, b"")  # NOOP, empty
    + tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3"))  # SSL with a version sub-TLV
    + tlv(0xEA, b"\x01vpce-0123456789abcdef0")  # AWS VPC endpoint id
)

V4_SOURCE, V4_DEST = ("192.0.2.1", 54321), ("198.51.100.7", 443)
V6_SOURCE, V6_DEST = ("2001:db8::1", 1234), ("2001:db8::2", 8080)
FULL_V6 = ":".join(["ffff"] * 8)

# (wire bytes, source, destination) for PROXY headers; LOCAL ones are checked on their own.
V1_VALID = [
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", ("192.168.0.1", 56324), ("192.168.0.11", 443)),
    (b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", ("0.0.0.0", 0), ("255.255.255.255", 65535)),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 8080\r\n", V6_SOURCE, V6_DEST),
    (b"PROXY TCP6 2001:DB8:0:0::1 2001:db8::2 1234 8080\r\n", V6_SOURCE, V6_DEST),  # canonical text back
    # IPv4-mapped, as HAProxy writes such peers (its text form back depends on the Python version).
    (
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
        (str(ipaddress.ip_address("::ffff:192.0.2.1")), 1),
        ("::1", 2),
    ),
    (f"PROXY TCP6 {FULL_V6} {FULL_V6} 65535 65535\r\n".encode(), (FULL_V6, 65535), (FULL_V6, 65535)),
    (b"PROXY UNKNOWN\r\n", None, None),
    (f"PROXY UNKNOWN {FULL_V6} {FULL_V6} 65535 65535\r\n".encode(), None, None),  # 107 bytes, the longest
    (b"PROXY UNKNOWN whatever the sender liked\r\n", None, None),
]
V2_VALID = [
    (v2(0x21, 0x11, IPV4_BLOCK), V4_SOURCE, V4_DEST),
    (v2(0x21, 0x21, IPV6_BLOCK), V6_SOURCE, V6_DEST),
    (v2(0x21, 0x11, IPV4_BLOCK + TLVS), V4_SOURCE, V4_DEST),
    (v2(0x21, 0x21, IPV6_BLOCK + TLVS), V6_SOURCE, V6_DEST),
    (v2(0x21, 0x11, IPV4_BLOCK + tlv(0x04, b"\0" * (MAX_V2_TLV_BYTES - 3))), V4_SOURCE, V4_DEST),
    (v2(0x21, 0x00, b""), None, None),
    (v2(0x21, 0x00, b"addresses we cannot read, ignored"), None, None),
    (v2(0x21, 0x31, UNIX_BLOCK), None, None),
    (v2(0x21, 0x31, UNIX_BLOCK + TLVS), None, None),
]
V2_LOCAL = [
    v2(0x20, 0x00, b""),  # what HAProxy sends for its health checks
    v2(0x20, 0x11, IPV4_BLOCK + TLVS),  # the spec: a receiver must skip what the length says
    v2(0x20, 0x12, IPV4_BLOCK),  # family ignored with LOCAL, even a datagram one
    v2(0x20, 0x00, b"\xff\xff\xff"),  # not TLVs: the block is skipped unread
]
ALL_VALID = [wire for wire, _, _ in V1_VALID + V2_VALID] + V2_LOCAL
FUZZ_SEEDS = [wire for wire in ALL_VALID if len(wire) < 1024]  # every prefix is tried: keep them short


def modes_for(wire: bytes) -> list[str]:
    return ["v2", "auto"] if wire.startswith(V2_SIGNATURE) else ["v1", "auto"]


def refused(data: bytes, accept: str) -> str:
    with pytest.raises(MalformedRequest) as caught:
        parse_proxy_header(data, accept)
    assert caught.value.status == 400
    return caught.value.detail


@pytest.mark.parametrize("accept", ["v1", "auto"])
@pytest.mark.parametrize(("wire", "source", "destination"), V1_VALID)
def test_v1_headers(wire, source, destination, accept):
    assert parse_proxy_header(wire, accept) == ProxyHeader(1, "PROXY", source, destination, len(wire))


@pytest.mark.parametrize("accept", ["v2", "auto"])
@pytest.mark.parametrize(("wire", "source", "destination"), V2_VALID)
def test_v2_proxy_headers(wire, source, destination, accept):
    assert parse_proxy_header(wire, accept) == ProxyHeader(2, "PROXY", source, destination, len(wire))


@pytest.mark.parametrize("accept", ["v2", "auto"])
@pytest.mark.parametrize("wire", V2_LOCAL)
def test_v2_local_headers_give_no_address(wire, accept):
    assert parse_proxy_header(wire, accept) == ProxyHeader(2, "LOCAL", None, None, len(wire))


def test_v2_bytes_as_haproxy_writes_them():
    wire = bytes.fromhex("0d0a0d0a000d0a515549540a 21 11 000c c0000201 c6336407 d431 01bb")
    assert parse_proxy_header(wire, "v2") == ProxyHeader(2, "PROXY", V4_SOURCE, V4_DEST, 28)
    local = bytes.fromhex("0d0a0d0a000d0a515549540a 20 00 0000")
    assert parse_proxy_header(local, "v2") == ProxyHeader(2, "LOCAL", None, None, 16)


@pytest.mark.parametrize("wire", ALL_VALID)
def test_length_says_where_http_starts(wire):
    for accept in modes_for(wire):
        header = parse_proxy_header(wire + HTTP, accept)
        assert header == parse_proxy_header(wire, accept)
        assert (wire + HTTP)[header.length :] == HTTP


@pytest.mark.parametrize("wire", ALL_VALID)
def test_one_byte_at_a_time(wire):
    for accept in modes_for(wire):
        whole = parse_proxy_header(wire, accept)
        for size in range(len(wire)):
            assert parse_proxy_header(wire[:size], accept) is None, size
        assert parse_proxy_header(wire, accept) == whole
        assert parse_proxy_header(bytearray(wire + HTTP), accept) == whole


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",  # plain HTTP: the proxy is missing or not configured to send a header
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"\r\n\r\nGET",  # neither signature past its fourth byte
        b"PROXY GET",
        b"proxy TCP4",
        b"PROXY  TCP4",
        b"PROXY TCP5",
        b"PROXY TCP4 1.2.3.a",  # TCP4 holds no hex
        b"PROXY TCP6 fe80::1%eth0",  # no scope ids
        b"PROXY TCP4 1.2.3.4\t",
        b"PROXY TCP4 1.2.3.4\n",  # bare LF
        b"PROXY TCP4 1.2.3.4\rx",  # bare CR
        b"PROXY UNKNOWN\x00",
        b"PROXY UNKNOWN\r\r",
        b"PROXY UNKNOWNX",
        b"PROXY UNKNOWN caf\xc3\xa9",
        V2_SIGNATURE[:5] + b"X",
        V2_SIGNATURE + b"\x11",  # version 1 in the binary form
        V2_SIGNATURE + b"\x31",
        V2_SIGNATURE + b"\x22",  # command 2
        V2_SIGNATURE + b"\x2f",
        V2_SIGNATURE + b"\x21\x12",  # UDP over IPv4
        V2_SIGNATURE + b"\x21\x22",  # UDP over IPv6
        V2_SIGNATURE + b"\x21\x32",  # UNIX datagram
        V2_SIGNATURE + b"\x21\x13",
        V2_SIGNATURE + b"\x21\x41",
        V2_SIGNATURE + b"\x21\x01",
        V2_SIGNATURE + b"\x20\x10",  # undefined even with LOCAL
        V2_SIGNATURE + b"\x21\x11" + (12 + MAX_V2_TLV_BYTES + 1).to_bytes(2, "big"),
        V2_SIGNATURE + b"\x20\x00" + (MAX_V2_TLV_BYTES + 1).to_bytes(2, "big"),
        V2_SIGNATURE + b"\x21\x31\xff\xff",
    ],
)
def test_refused_before_the_header_is_complete(data):
    for accept in ("v1", "v2", "auto"):
        refused(data, accept)


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.0.2.1  198.51.100.7 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2 \r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 1  2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2 3\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7\r\n",
        b"PROXY TCP4\r\n",
        b"PROXY TCP6 \r\n",
        b"PROXY \r\n",
        b"PROXY TCP4 256.0.2.1 198.51.100.7 1 2\r\n",
        b"PROXY TCP4 192.0.2 198.51.100.7 1 2\r\n",
        b"PROXY TCP4 192.0.2.1.5 198.51.100.7 1 2\r\n",
        b"PROXY TCP4 192.0.02.1 198.51.100.7 1 2\r\n",  # leading zero: octal?
        b"PROXY TCP4 192.0.2.1 ... 1 2\r\n",
        b"PROXY TCP4 ::1 198.51.100.7 1 2\r\n",  # family mismatch
        b"PROXY TCP4 192.0.2.1 ::1 1 2\r\n",
        b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
        b"PROXY TCP6 ::1 192.0.2.1 1 2\r\n",
        b"PROXY TCP6 2001:db8:::1 ::1 1 2\r\n",
        b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
        b"PROXY TCP6 12345::1 ::1 1 2\r\n",
        b"PROXY TCP6 ::g ::1 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 65536 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 1 99999\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 123456 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 080 2\r\n",  # leading zero
        b"PROXY TCP4 192.0.2.1 198.51.100.7 00 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 +80 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 -1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 1_0 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 0x50 2\r\n",
        b"PROXY tcp4 192.0.2.1 198.51.100.7 1 2\r\n",
        b"PROXY unknown\r\n",
        b"PROXY UNKNOWN\n\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\n",
    ],
)
def test_malformed_v1_lines(line):
    for accept in ("v1", "auto"):
        refused(line + HTTP, accept)


def test_v1_line_without_crlf_is_refused_at_107_bytes():
    line = b"PROXY UNKNOWN " + b"a" * 200
    assert parse_proxy_header(line[: MAX_V1_LENGTH - 1], "v1") is None
    assert "107" in refused(line[:MAX_V1_LENGTH], "v1")
    # The CRLF must end within the 107 bytes: a line of 108 with it is too long.
    assert parse_proxy_header(line[: MAX_V1_LENGTH - 2] + b"\r\n", "v1").length == MAX_V1_LENGTH
    refused(line[: MAX_V1_LENGTH - 1] + b"\r\n", "v1")


@pytest.mark.parametrize(
    "wire",
    [
        v2(0x21, 0x11, IPV4_BLOCK[:11]),  # address block longer than the declared length
        v2(0x21, 0x11, b""),
        v2(0x21, 0x21, IPV6_BLOCK[:35]),
        v2(0x21, 0x21, IPV4_BLOCK),  # an IPv4 block under the IPv6 family
        v2(0x21, 0x31, UNIX_BLOCK[:200]),
        v2(0x21, 0x11, IPV4_BLOCK + b"\x02"),  # TLV head cut off
        v2(0x21, 0x11, IPV4_BLOCK + b"\x02\x00"),
        v2(0x21, 0x11, IPV4_BLOCK + tlv(0x02, b"example.com")[:-1]),  # TLV value runs past the end
        v2(0x21, 0x21, IPV6_BLOCK + TLVS + b"\x04\x00\x01"),
        v2(0x21, 0x31, UNIX_BLOCK + b"\x04\xff\xff"),
    ],
)
def test_malformed_v2_bodies(wire):
    for accept in ("v2", "auto"):
        assert parse_proxy_header(wire[:-1], accept) is None
        refused(wire + HTTP, accept)


def test_v2_length_cap_is_decided_from_the_fixed_bytes():
    at_cap = v2(0x21, 0x11, IPV4_BLOCK + tlv(0x04, b"\0" * (MAX_V2_TLV_BYTES - 3)))
    assert parse_proxy_header(at_cap[:16], "v2") is None
    assert parse_proxy_header(at_cap, "v2").length == len(at_cap)
    over = v2(0x21, 0x11, IPV4_BLOCK + tlv(0x04, b"\0" * (MAX_V2_TLV_BYTES - 2)))
    refused(over[:16], "v2")


@pytest.mark.parametrize("position", range(len(V2_SIGNATURE)))
def test_each_v2_signature_byte_is_checked_as_it_arrives(position):
    wrong = bytearray(V2_SIGNATURE[: position + 1])
    wrong[position] ^= 0x40
    assert parse_proxy_header(V2_SIGNATURE[:position], "v2") is None
    refused(bytes(wrong), "v2")


def test_each_mode_refuses_the_other_version():
    refused(b"P", "v2")
    refused(b"\r", "v1")
    assert parse_proxy_header(b"P", "v1") is None
    assert parse_proxy_header(b"\r", "v2") is None


def test_nothing_yet_and_unknown_modes():
    for accept in ("v1", "v2", "auto"):
        assert parse_proxy_header(b"", accept) is None
    with pytest.raises(ValueError):
        parse_proxy_header(b"PROXY UNKNOWN\r\n", "on")


# Bytes the mutations favour: the ones the grammar turns on.
INTERESTING = b"\r\n \x00\xff0123456789.:PROXYTCPUNKNOWN\x11\x21\x20\x31\x12"


def mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(5)
        position = rng.randrange(len(data) + 1)
        byte = rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randrange(256)
        if action == 0 and position < len(data):
            data[position] = byte
        elif action == 1:
            data.insert(position, byte)
        elif action == 2 and position < len(data):
            del data[position]
        elif action == 3:
            del data[position:]
        else:
            data[position:position] = HTTP[: rng.randrange(len(HTTP))]
    return bytes(data)


def outcome(data: bytes, accept: str) -> ProxyHeader | str | None:
    try:
        header = parse_proxy_header(data, accept)
    except MalformedRequest as exc:
        assert exc.status == 400
        return "refused"
    assert header is None or isinstance(header, ProxyHeader)
    return header


def test_fuzz_mutated_headers_give_only_none_a_header_or_a_refusal():
    # Along every prefix of a mutated input: None, then either a refusal that stays one, or a
    # header that later bytes never change and that fits in the bytes read.
    rng = random.Random(20240611)
    counts = {"none": 0, "header": 0, "refused": 0}
    for _ in range(3000):
        wire = mutate(rng, rng.choice(FUZZ_SEEDS))
        accept = rng.choice(("v1", "v2", "auto"))
        final = None
        for size in range(len(wire) + 1):
            result = outcome(wire[:size], accept)
            if final is not None:
                assert result == final, (wire, accept, size)
            elif result is not None:
                final = result
                if isinstance(result, ProxyHeader):
                    assert result.length == size
        counts["none" if final is None else "refused" if final == "refused" else "header"] += 1
    assert min(counts.values()) > 100, counts
