"""The proxy trust decision and header reading (pure: no sockets)."""

from __future__ import annotations

import pytest

from asgi_worker.http.proxy import ProxyTrust, apply_proxy_headers


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
