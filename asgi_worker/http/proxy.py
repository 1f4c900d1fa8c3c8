"""Proxy headers: whom to believe about the real client, decided once per connection.

Rules (uvicorn's ``--proxy-headers`` / ``--forwarded-allow-ips``):
- Only a peer in the trusted set may rewrite ``client`` and ``scheme``. The set holds addresses,
  CIDR networks, ``*`` (everyone) and literals (such as a UNIX socket path, matched as text).
- ``X-Forwarded-For`` is read right to left: each trusted proxy appended the address it saw, so the
  client is the right-most address that is not itself a trusted proxy.
- ``X-Forwarded-Proto`` sets the scheme only to ``http``, ``https``, ``ws`` or ``wss``.
The trust decision depends on the peer only, so the connection asks once (and ``ProxyTrust`` caches
per peer); requests from untrusted peers never look at these headers.
"""

from __future__ import annotations

import ipaddress

__all__ = ["ProxyTrust", "apply_proxy_headers"]

_SCHEMES = {b"http": "http", b"https": "https", b"ws": "ws", b"wss": "wss"}

# Distinct peers remembered; past it the cache starts over (a server behind a proxy sees a handful).
_CACHE_LIMIT = 4096

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyTrust:
    """The trusted-proxy set parsed from ``--forwarded-allow-ips``."""

    def __init__(self, allow: str | list[str]) -> None:
        entries = [e.strip() for e in (allow.split(",") if isinstance(allow, str) else allow) if e.strip()]
        self.everyone = "*" in entries
        self._addresses: set[Address] = set()
        self._networks: list[Network] = []
        self._literals: set[str] = set()
        for entry in entries:
            if entry == "*":
                continue
            try:
                if "/" in entry:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    self._addresses.add(ipaddress.ip_address(entry))
            except ValueError:
                self._literals.add(entry)
        self._cache: dict[str, bool] = {}

    def trusts(self, host: str | None) -> bool:
        """Whether a peer at ``host`` (an address, or a socket path) may speak for the client."""
        if self.everyone:
            return True
        if host is None:
            return False
        known = self._cache.get(host)
        if known is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            known = self._cache[host] = self._decide(host)
        return known

    def _decide(self, host: str) -> bool:
        if host in self._literals:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address in self._addresses or any(address in network for network in self._networks)


def apply_proxy_headers(
    trust: ProxyTrust,
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    scheme: str,
) -> tuple[tuple[str, int] | None, str]:
    """``(client, scheme)`` as a trusted proxy reports them; unchanged where the headers say nothing."""
    forwarded_for: bytes | None = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
        elif name == b"x-forwarded-proto":
            proto = _SCHEMES.get(value.strip().lower())
            if proto is not None:
                scheme = proto
    if forwarded_for is not None:
        hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",") if hop.strip()]
        if hops:
            index = len(hops) - 1
            while index > 0 and trust.trusts(hops[index]):
                index -= 1  # a proxy we trust added this hop: the client is further left
            client = (hops[index], 0)
    return client, scheme
