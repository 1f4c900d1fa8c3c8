"""The proxy trust decision and header reading (pure: no sockets)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from asgi_worker.http import proxy
from asgi_worker.http.proxy import ProxyTrust, apply_proxy_headers, parse_forwarded


@pytest.mark.parametrize(
    ("allow", "host", "trusted"),
    [
        ("127.0.0.1,::1", "127.0.0.1", True),
        ("127.0.0.1,::1", "::1", True),
        ("127.0.0.1,::1", "10.0.0.1", False),
        ("10.0.0.0/8", "10.200.3.4", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("fd00::/8", "fd12::1", True),
        ("fd00::/8", "fe80::1", False),
        ("*", "203.0.113.9", True),
        ("/run/app.sock", "/run/app.sock", True),
        ("/run/app.sock", "/run/other.sock", False),
        (["192.0.2.1", " 192.0.2.2 "], "192.0.2.2", True),
        ("127.0.0.1", None, False),
        ("127.0.0.1", "not-an-ip", False),
    ],
)
def test_trust(allow, host, trusted):
    assert ProxyTrust(allow).trusts(host) is trusted


def apply(allow, headers, client=("127.0.0.1", 5000), scheme="http"):
    return apply_proxy_headers(ProxyTrust(allow), headers, client, scheme)


def test_right_most_untrusted_hop_is_the_client():
    headers = [(b"x-forwarded-for", b"203.0.113.7, 198.51.100.2, 10.0.0.5")]
    assert apply("127.0.0.1,10.0.0.0/8", headers)[0] == ("198.51.100.2", 0)
    assert apply("*", headers)[0] == ("203.0.113.7", 0)  # all trusted: the left-most


def test_repeated_header_lines_are_one_list():
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.5")]
    assert apply("10.0.0.0/8", headers)[0] == ("203.0.113.7", 0)


def test_ipv6_hop():
    assert apply("127.0.0.1", [(b"x-forwarded-for", b"2001:db8::1")])[0] == ("2001:db8::1", 0)


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [(b"https", "https"), (b"HTTPS ", "https"), (b"wss", "wss"), (b"ftp", "http"), (b"javascript", "http")],
)
def test_forwarded_proto_only_known_schemes(proto, scheme):
    assert apply("127.0.0.1", [(b"x-forwarded-proto", proto)])[1] == scheme


def test_no_headers_changes_nothing():
    assert apply("127.0.0.1", [(b"host", b"x")]) == (("127.0.0.1", 5000), "http")


@pytest.mark.parametrize(
    ("hop", "client"),
    [
        (b"2001:db8::1", ("2001:db8::1", 0)),
        (b"[2001:db8::1]", ("2001:db8::1", 0)),
        (b"[2001:db8::1]:8080", ("2001:db8::1", 8080)),
        (b"203.0.113.7:4711", ("203.0.113.7", 4711)),
        (b"[2001:db8::1", ("[2001:db8::1", 0)),  # unreadable: passed on as it came, as before
        (b"unknown", None),  # the proxy does not know: no client rather than a made-up one
        (b"Unknown", None),
        (b"203.0.113.7, unknown", None),
    ],
)
def test_forwarded_for_address_forms(hop, client):
    assert apply("127.0.0.1", [(b"x-forwarded-for", hop)])[0] == client


def test_trusted_ipv6_hops_are_skipped():
    headers = [(b"x-forwarded-for", b"2001:db8::1, [fd00::5], fd00::6")]
    assert apply("127.0.0.1,fd00::/8", headers)[0] == ("2001:db8::1", 0)
    assert apply("127.0.0.1,fd00::6", headers)[0] == ("fd00::5", 0)


# RFC 7239 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "elements"),
    [
        (b'for="_gazonk"', [{"for": "_gazonk"}]),  # the RFC's own examples (section 4 and 7.4)
        (b'For="[2001:db8:cafe::17]:4711"', [{"for": "[2001:db8:cafe::17]:4711"}]),
        (
            b"for=192.0.2.60;proto=http;by=203.0.113.43",
            [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}],
        ),
        (b"for=192.0.2.43, for=198.51.100.17", [{"for": "192.0.2.43"}, {"for": "198.51.100.17"}]),
        (b"FOR=a;Proto=HTTPS;HOST=example.com", [{"for": "a", "proto": "HTTPS", "host": "example.com"}]),
        (b'for="a\\"b\\\\c"', [{"for": 'a"b\\c'}]),  # quoted-pairs
        (b'for="x, y;z=1"', [{"for": "x, y;z=1"}]),  # separators inside quotes are text
        (b"for=[2001:db8::1]:80;proto=https", [{"for": "[2001:db8::1]:80", "proto": "https"}]),  # unquoted
        (b" for=a ; proto=http ,for=b\t", [{"for": "a", "proto": "http"}, {"for": "b"}]),
        (b"for=a;;, ,;for=b;", [{"for": "a"}, {"for": "b"}]),  # empty pairs and elements
        (b"ext=1;for=a", [{"ext": "1", "for": "a"}]),  # extension parameters are kept, not used
        (b"", []),
        (b" , ", []),
    ],
)
def test_parse_forwarded(value, elements):
    assert parse_forwarded(value) == elements


@pytest.mark.parametrize(
    "value",
    [
        b"for",
        b"for=",
        b"=a",
        b"for =a",
        b"for= a",
        b"for=a b",
        b'for="a',
        b'for="a\\"',  # the closing quote is escaped
        b'for="a"b',
        b"for=a;for=b",  # a parameter twice in one element
        b'for="a\x01"',
        b"for=a\x00",
        b"f(r=a",
        b"for=a;proto",
        b"for=a,proto",
        b"for=\xe9",
    ],
)
def test_parse_forwarded_rejects_bad_syntax(value):
    assert parse_forwarded(value) is None


TRUST = "127.0.0.1,10.0.0.0/8"


@pytest.mark.parametrize(
    ("value", "client", "scheme"),
    [
        (b"for=203.0.113.7", ("203.0.113.7", 0), "http"),
        (b'for="203.0.113.7:4711";proto=https', ("203.0.113.7", 4711), "https"),
        (b'for="[2001:db8:cafe::17]:4711";proto=wss', ("2001:db8:cafe::17", 4711), "wss"),
        (b'for="[2001:DB8:CAFE::17]"', ("2001:db8:cafe::17", 0), "http"),  # normalised
        (b'for="2001:db8::1"', ("2001:db8::1", 0), "http"),  # bare IPv6, tolerated
        (b"For=203.0.113.7;PROTO=HTTPS", ("203.0.113.7", 0), "https"),
        (b'for="203.0.113.7:_port"', ("203.0.113.7", 0), "http"),  # obfuscated port
        # right to left, skipping trusted proxies; the chosen element's proto counts
        (
            b"for=198.51.100.1, for=203.0.113.7;proto=https, for=10.0.0.5;proto=http",
            ("203.0.113.7", 0),
            "https",
        ),
        (b"for=203.0.113.7, for=198.51.100.1", ("198.51.100.1", 0), "http"),
        (b"for=10.0.0.9;proto=https, for=10.0.0.5", ("10.0.0.9", 0), "https"),  # all trusted: left-most
        # hidden or unreadable clients are None, not the proxy's address
        (b"for=_hidden;proto=https", None, "https"),
        (b"for=unknown", None, "http"),
        (b"for=UNKNOWN, for=10.0.0.5", None, "http"),
        (b"proto=https", None, "https"),  # no "for": the proxy did not say
        (b"for=example.com", None, "http"),
        (b'for="203.0.113.7:99999"', None, "http"),
        (b'for="[2001:db8::1]x"', None, "http"),
        # only the four schemes
        (b"for=203.0.113.7;proto=ftp", ("203.0.113.7", 0), "http"),
        (b'for=203.0.113.7;proto="javascript"', ("203.0.113.7", 0), "http"),
    ],
)
def test_forwarded_decision(value, client, scheme):
    assert apply(TRUST, [(b"forwarded", value)]) == (client, scheme)


def test_obfuscated_proxy_names_can_be_trusted():
    headers = [(b"forwarded", b"for=203.0.113.7;proto=https, for=_edge1")]
    assert apply("127.0.0.1,_edge1", headers) == (("203.0.113.7", 0), "https")
    assert apply("127.0.0.1", headers) == (None, "http")


def test_forwarded_header_lines_are_one_list():
    headers = [
        (b"forwarded", b"for=203.0.113.7;proto=https"),
        (b"host", b"x"),
        (b"forwarded", b"for=10.0.0.5"),
    ]
    assert apply(TRUST, headers) == (("203.0.113.7", 0), "https")
    # a line that is bad on its own spoils the whole list
    headers.append((b"forwarded", b'for="10.0.0.6'))
    assert apply(TRUST, headers) == (("127.0.0.1", 5000), "http")


@pytest.mark.parametrize(
    ("headers", "client", "scheme"),
    [
        # a valid Forwarded decides both; X-Forwarded-* are not consulted at all
        (
            [
                (b"x-forwarded-for", b"198.51.100.9"),
                (b"x-forwarded-proto", b"http"),
                (b"forwarded", b"for=203.0.113.7;proto=https"),
            ],
            ("203.0.113.7", 0),
            "https",
        ),
        ([(b"forwarded", b"for=203.0.113.7"), (b"x-forwarded-proto", b"https")], ("203.0.113.7", 0), "http"),
        ([(b"forwarded", b"proto=https"), (b"x-forwarded-for", b"198.51.100.9")], None, "https"),
        # malformed Forwarded: no header is believed (the peer stays); empty: X-Forwarded-* decide
        (
            [
                (b"forwarded", b'for="203.0.113.7'),
                (b"x-forwarded-for", b"198.51.100.9"),
                (b"x-forwarded-proto", b"https"),
            ],
            ("127.0.0.1", 5000),
            "http",
        ),
        ([(b"forwarded", b""), (b"x-forwarded-for", b"198.51.100.9")], ("198.51.100.9", 0), "http"),
        ([(b"forwarded", b"for 203.0.113.7")], ("127.0.0.1", 5000), "http"),
    ],
)
def test_forwarded_precedence(headers, client, scheme):
    assert apply(TRUST, headers) == (client, scheme)


def test_forwarded_is_parsed_only_when_present(monkeypatch):
    def fail(value):
        raise AssertionError("parsed a Forwarded header that was not sent")

    monkeypatch.setattr(proxy, "parse_forwarded", fail)
    headers = [(b"host", b"x"), (b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")]
    assert apply(TRUST, headers) == (("203.0.113.7", 0), "https")


SEEDS = [
    b'for=198.51.100.1, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.5',
    b'For="_gazonk";by=_proxy;host="example.com:8080"',
    b"for=203.0.113.7;proto=http;by=203.0.113.43, for=unknown",
    b'for="203.0.113.7:4711";proto=wss;ext="a\\"b"',
]
NOISE = b'",;=[]:\\_ \t\x00\x7f\xe9abc019'


def mutate(rng, value):
    data = bytearray(value)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(4)
        at = rng.randrange(len(data) + 1)
        if action == 0 and data:  # flip a byte
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif action == 1:  # insert a separator or oddity
            data[at:at] = bytes([rng.choice(NOISE)])
        elif action == 2:  # truncate or cut out a slice
            del data[at : at + rng.randint(1, 8)]
        else:  # duplicate a slice
            data[at:at] = data[at : at + rng.randint(1, 12)]
    return bytes(data)


def test_mutated_forwarded_never_raises():
    rng = random.Random(7239)
    peer = ("127.0.0.1", 5000)
    for _ in range(4000):
        value = mutate(rng, rng.choice(SEEDS))
        elements = parse_forwarded(value)
        assert elements is None or all(isinstance(element, dict) and element for element in elements)
        for allow in (TRUST, "*"):
            client, scheme = apply(allow, [(b"forwarded", value)], client=peer)
            assert scheme in {"http", "https", "ws", "wss"}, value
            if client is not None and client != peer:  # any other client is a real address and port
                assert str(ipaddress.ip_address(client[0])) == client[0], value
                assert isinstance(client[1], int), value
                assert 0 <= client[1] <= 65535, value
            client, _ = apply(allow, [(b"x-forwarded-for", value)], client=peer)
            if client is None:  # only for a proxy that said it does not know
                assert b"unknown" in [hop.strip().lower() for hop in value.split(b",")], value
                continue
            assert isinstance(client[0], str), value
            assert 0 <= client[1] <= 65535, value


def test_secure_scheme_headers_from_gunicorn():
    trust = ProxyTrust(
        "127.0.0.1", {"X-FORWARDED-SSL": "on", "X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https"}
    )
    client = ("127.0.0.1", 5000)
    assert apply_proxy_headers(trust, [(b"x-forwarded-ssl", b"on")], client, "http") == (client, "https")
    assert apply_proxy_headers(trust, [(b"x-forwarded-ssl", b"off")], client, "http") == (client, "http")
    assert apply_proxy_headers(trust, [(b"x-forwarded-protocol", b"SSL")], client, "http") == (
        client,
        "https",
    )
    assert apply_proxy_headers(trust, [(b"x-forwarded-proto", b"https")], client, "http") == (client, "https")
    plain = ProxyTrust("127.0.0.1")
    assert apply_proxy_headers(plain, [(b"x-forwarded-ssl", b"on")], client, "http") == (client, "http")
