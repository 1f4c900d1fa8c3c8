"""Proxy headers over real sockets: the loopback client is (or is not) a trusted proxy."""

from __future__ import annotations

import json

import httpx

from asgi_worker import Config
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
