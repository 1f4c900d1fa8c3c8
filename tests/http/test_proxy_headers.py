"""Proxy headers over real sockets: the loopback client is (or is not) a trusted proxy."""

from __future__ import annotations

import json

import httpx
import pytest

from asgi_worker import Config
from tests.conftest import read_response
from tests.timing import TIMEOUT

FORWARDED = {"x-forwarded-for": "203.0.113.7, 10.0.0.5", "x-forwarded-proto": "https"}


async def whoami(scope, receive, send):
    body = json.dumps({"client": scope["client"][0], "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def ask(srv):
    return httpx.get(srv.url + "/", headers=FORWARDED, timeout=TIMEOUT).json()


def test_trusted_loopback_proxy_by_default(serve):
    with serve(whoami) as srv:
        assert ask(srv) == {"client": "10.0.0.5", "scheme": "https"}


def test_trusted_chain(serve):
    with serve(whoami, forwarded_allow_ips="127.0.0.1,10.0.0.0/8") as srv:
        assert ask(srv) == {"client": "203.0.113.7", "scheme": "https"}


def test_untrusted_peer_is_ignored(serve):
    with serve(whoami, forwarded_allow_ips="192.0.2.1") as srv:
        assert ask(srv) == {"client": "127.0.0.1", "scheme": "http"}


def test_switched_off(serve):
    with serve(whoami, proxy_headers=False) as srv:
        assert ask(srv) == {"client": "127.0.0.1", "scheme": "http"}


def test_forwarded_allow_ips_from_environment(monkeypatch):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.1.0.0/16")
    assert Config(whoami).forwarded_allow_ips == "10.1.0.0/16"
    assert Config(whoami, forwarded_allow_ips="*").forwarded_allow_ips == "*"
    monkeypatch.delenv("FORWARDED_ALLOW_IPS")
    assert Config(whoami).forwarded_allow_ips == "127.0.0.1,::1"


# The trust matrix: header forms x trusted / untrusted peer x IPv4 / IPv6, over raw sockets so the
# exact (and malformed) header bytes reach the server. 10.0.0.0/8 plays the trusted proxy chain.

PEER = "peer"  # the loopback client's own address (its port is the kernel's choice)

MATRIX = {
    "xff-single": ([b"X-Forwarded-For: 203.0.113.7"], ["203.0.113.7", 0], "http"),
    "xff-chain": ([b"X-Forwarded-For: 198.51.100.1, 203.0.113.7, 10.0.0.5"], ["203.0.113.7", 0], "http"),
    "xff-lines": (
        [b"X-Forwarded-For: 203.0.113.7", b"X-Forwarded-For: 10.0.0.5"],
        ["203.0.113.7", 0],
        "http",
    ),
    "xfp": ([b"X-Forwarded-Proto: https"], PEER, "https"),
    "xff-xfp": ([b"X-Forwarded-For: 203.0.113.7", b"X-Forwarded-Proto: https"], ["203.0.113.7", 0], "https"),
    "xff-ipv6": ([b"X-Forwarded-For: 2001:db8::1, 10.0.0.5"], ["2001:db8::1", 0], "http"),
    "xff-ipv6-brackets": ([b"X-Forwarded-For: [2001:db8::1]:8080"], ["2001:db8::1", 8080], "http"),
    "fwd-single": ([b"Forwarded: for=203.0.113.7"], ["203.0.113.7", 0], "http"),
    "fwd-proto": ([b"Forwarded: for=203.0.113.7;proto=https"], ["203.0.113.7", 0], "https"),
    "fwd-port": ([b'Forwarded: for="203.0.113.7:4711"'], ["203.0.113.7", 4711], "http"),
    "fwd-ipv6": (
        [b'Forwarded: for="[2001:db8:cafe::17]:4711";proto=https'],
        ["2001:db8:cafe::17", 4711],
        "https",
    ),
    "fwd-chain": (
        [b"Forwarded: for=198.51.100.1, for=203.0.113.7;proto=https, for=10.0.0.5;proto=http"],
        ["203.0.113.7", 0],
        "https",
    ),
    "fwd-lines": (
        [b"Forwarded: for=203.0.113.7;proto=https", b"Forwarded: for=10.0.0.5"],
        ["203.0.113.7", 0],
        "https",
    ),
    "fwd-mixed-case": ([b"FORWARDED: For=203.0.113.7;PROTO=HTTPS"], ["203.0.113.7", 0], "https"),
    "fwd-obfuscated": ([b"Forwarded: for=_hidden;proto=https"], None, "https"),
    "fwd-unknown": ([b"Forwarded: for=unknown, for=10.0.0.5"], None, "http"),
    "fwd-wins": (
        [
            b"X-Forwarded-For: 198.51.100.9",
            b"X-Forwarded-Proto: http",
            b"Forwarded: for=203.0.113.7;proto=https",
        ],
        ["203.0.113.7", 0],
        "https",
    ),
    "fwd-wins-no-proto": (
        [b"Forwarded: for=203.0.113.7", b"X-Forwarded-Proto: https"],
        ["203.0.113.7", 0],
        "http",
    ),
    "fwd-malformed-believes-nothing": (
        [b'Forwarded: for="203.0.113.7', b"X-Forwarded-For: 198.51.100.9", b"X-Forwarded-Proto: https"],
        PEER,
        "http",
    ),
    "fwd-malformed-alone": ([b"Forwarded: for 203.0.113.7;proto=https"], PEER, "http"),
}


async def echo(scope, receive, send):
    body = json.dumps({"client": scope["client"], "scheme": scope["scheme"]}).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def ask_raw(srv, lines):
    """``{"client": ..., "scheme": ...}`` as the app saw a request carrying these header lines."""
    head = b"GET / HTTP/1.1\r\nHost: example\r\n" + b"".join(line + b"\r\n" for line in lines)
    with srv.connect() as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n")
        response = read_response(sock)
    status, _, body = response.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200 "), response
    return json.loads(body)


def run_matrix(srv, peer_host, trusted, cases=MATRIX):
    """Every case's answer, with the peer's own address reported as ``PEER``."""
    seen, wanted = {}, {}
    for name, (lines, client, scheme) in cases.items():
        got = ask_raw(srv, lines)
        if got["client"] is not None and got["client"][0] == peer_host:
            got["client"] = PEER
        seen[name] = got
        wanted[name] = {"client": client, "scheme": scheme} if trusted else {"client": PEER, "scheme": "http"}
    assert seen == wanted


@pytest.mark.parametrize(
    ("host", "allow", "trusted"),
    [
        pytest.param("127.0.0.1", "127.0.0.1,10.0.0.0/8", True, id="ipv4-trusted"),
        pytest.param("127.0.0.1", "10.0.0.1", False, id="ipv4-untrusted"),
        pytest.param("::1", "::1,10.0.0.0/8", True, id="ipv6-trusted"),
        pytest.param("::1", "10.0.0.1,::2", False, id="ipv6-untrusted"),
        pytest.param("127.0.0.1", "127.0.0.0/8, 10.0.0.0/8", True, id="ipv4-cidr"),
        pytest.param("::1", "::/96,10.0.0.0/8", True, id="ipv6-cidr"),
    ],
)
def test_trust_matrix(serve, host, allow, trusted):
    with serve(echo, host=host, forwarded_allow_ips=allow) as srv:
        run_matrix(srv, host, trusted)


def test_cidr_trusts_only_its_network(serve):
    cases = {
        "xff-chain": ([b"X-Forwarded-For: 203.0.113.7, 10.0.0.5"], ["10.0.0.5", 0], "http"),
        "fwd-chain": ([b"Forwarded: for=203.0.113.7, for=10.0.0.5;proto=https"], ["10.0.0.5", 0], "https"),
    }
    with serve(echo, forwarded_allow_ips="127.0.0.0/8") as srv:
        run_matrix(srv, "127.0.0.1", True, cases)


def test_everyone_trusted_takes_the_left_most_hop(serve):
    cases = {
        "xff-chain": ([b"X-Forwarded-For: 198.51.100.1, 203.0.113.7, 10.0.0.5"], ["198.51.100.1", 0], "http"),
        "fwd-chain": (
            [b"Forwarded: for=198.51.100.1;proto=https, for=203.0.113.7, for=10.0.0.5"],
            ["198.51.100.1", 0],
            "https",
        ),
        "fwd-unknown": ([b"Forwarded: for=unknown, for=203.0.113.7"], None, "http"),
    }
    with serve(echo, forwarded_allow_ips="*") as srv:
        run_matrix(srv, "127.0.0.1", True, cases)
