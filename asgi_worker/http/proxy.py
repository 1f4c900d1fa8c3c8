"""Proxy headers: whom to believe about the real client, decided once per connection.

Rules (uvicorn's ``--proxy-headers`` / ``--forwarded-allow-ips``, plus RFC 7239 ``Forwarded``):
- Only a peer in the trusted set may rewrite ``client`` and ``scheme``. The set holds addresses,
  CIDR networks, ``*`` (everyone) and literals (a UNIX socket path, or an obfuscated ``_name``).
- ``Forwarded`` and ``X-Forwarded-For`` are read right to left: each trusted proxy appended the node
  it saw, so the client is the right-most hop that is not a trusted proxy (the left-most if all are).
- A well-formed, non-empty ``Forwarded`` wins over every ``X-Forwarded-*`` header: a proxy that
  writes only ``Forwarded`` passes a client's own ``X-Forwarded-For`` through, so mixing the two
  would let the client pick its address. The chosen element's ``for`` gives the client (port 0 when
  absent) and its ``proto`` the scheme; ``host`` and ``by`` are only syntax-checked.
- A chosen ``for`` that is ``unknown``, obfuscated, absent or not an address makes ``client`` None:
  the proxy does not know or will not tell, and the proxy's own address would make every hidden
  client look like one host to rate limits and allow-lists. An ``X-Forwarded-For`` hop of
  ``unknown`` (Squid's word for the same) does too; any other hop is passed on as uvicorn does.
- A malformed ``Forwarded`` (bad token, quoting or pair syntax, a repeated parameter) makes the
  request keep its peer's address and scheme: no header is believed, since falling back to
  ``X-Forwarded-*`` would let a client behind a Forwarded-only proxy choose. An empty one is
  ignored. Unquoted values may hold ``:``, ``[`` and ``]`` (proxies
  send ports and IPv6 that way). A proto sets the scheme only to ``http``, ``https``, ``ws``, ``wss``.
- gunicorn's ``secure_scheme_headers`` (given by its worker) add headers whose agreed value means
  https, such as ``X-Forwarded-Ssl: on``.
Trust depends on the peer only, so the connection asks once (``ProxyTrust`` caches per peer);
untrusted peers' requests never look at these headers, and ``Forwarded`` is parsed only when sent.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["ProxyTrust", "apply_proxy_headers", "parse_forwarded"]

_SCHEMES = {b"http": "http", b"https": "https", b"ws": "ws", b"wss": "wss"}
_SCHEME_NAMES = frozenset(_SCHEMES.values())

# RFC 7239 §4: forwarded-pair = token "=" value; value = token / quoted-string (RFC 9110 §5.6).
# Unquoted values also admit ":", "[" and "]" (see the header comment); "=" takes no spaces.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_LOOSE_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z:\[\]]+"
_QUOTED = r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"'
_PAIR = re.compile(rf"({_TOKEN})=(?:({_LOOSE_TOKEN})|{_QUOTED})")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# RFC 7239 §6.3 obfnode / §6.4 obfport.
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")

# Distinct peers remembered; past it the cache starts over (a server behind a proxy sees a handful).
_CACHE_LIMIT = 4096

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyTrust:
    """The trusted-proxy set parsed from ``--forwarded-allow-ips``."""

    def __init__(self, allow: str | list[str], secure_headers: dict[str, str] | None = None) -> None:
        entries = [e.strip() for e in (allow.split(",") if isinstance(allow, str) else allow) if e.strip()]
        # gunicorn's secure_scheme_headers: header -> the value that means "the client used https"
        # (e.g. X-Forwarded-Ssl: on). X-Forwarded-Proto is read with its own rule above.
        self.secure_headers = {
            name.lower().encode("latin-1"): value.lower().encode("latin-1")
            for name, value in (secure_headers or {}).items()
            if name.lower() != "x-forwarded-proto"
        }
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
    """``(client, scheme)`` as a trusted proxy reports them; unchanged where the headers say nothing.

    Call only for a peer that ``trust`` trusts. ``headers`` are ``(lowercased name, value)`` pairs.
    Never raises: unreadable headers leave ``client`` and ``scheme`` as they came (see the rules
    above for which header wins and when ``client`` becomes None).
    """
    forwarded: bytes | None = None
    forwarded_for: bytes | None = None
    forwarded_proto: str | None = None
    secure = trust.secure_headers
    for name, value in headers:
        if secure and name in secure:
            if value.strip().lower() == secure[name]:
                forwarded_proto = "https"
        elif name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
        elif name == b"x-forwarded-proto":
            forwarded_proto = _SCHEMES.get(value.strip().lower(), forwarded_proto)
        elif name == b"forwarded":
            forwarded = value if forwarded is None else forwarded + b"," + value
    if forwarded is not None:
        elements = parse_forwarded(forwarded)
        if elements is None:
            # Unreadable: believe no header at all. Falling back to X-Forwarded-* would let a
            # client behind a proxy that only appends to Forwarded choose its own address.
            return client, scheme
        if elements:
            return _from_forwarded(trust, elements, scheme)
    if forwarded_proto is not None:
        scheme = forwarded_proto
    if forwarded_for is not None:
        hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",") if hop.strip()]
        if hops:
            index = len(hops) - 1
            host, port = _hop_address(hops[index])
            while index > 0 and trust.trusts(host):
                index -= 1  # a proxy we trust added this hop: the client is further left
                host, port = _hop_address(hops[index])
            client = None if host.lower() == "unknown" else (host, port)
    return client, scheme


def parse_forwarded(value: bytes) -> list[dict[str, str]] | None:
    """The elements of a ``Forwarded`` field value, in order, or None when its syntax is bad.

    Each element maps lowercased parameter names to their unquoted values; empty elements are
    skipped, so ``b""`` gives ``[]``. A parameter repeated within one element is bad syntax
    (RFC 7239 §4). Several header lines should be joined with ``,`` first.
    """
    text = value.decode("latin-1")
    end = len(text)
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    pos = _skip_ows(text, 0)
    while pos < end:
        char = text[pos]
        if char == ",":
            if element:
                elements.append(element)
                element = {}
        elif char != ";":
            match = _PAIR.match(text, pos)
            if match is None:
                return None
            name, token, quoted = match.groups()
            name = name.lower()
            if name in element:
                return None
            if token is None:
                token = _QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted
            element[name] = token
            pos = _skip_ows(text, match.end())
            if pos < end and text[pos] not in ",;":
                return None
            continue
        pos = _skip_ows(text, pos + 1)
    if element:
        elements.append(element)
    return elements


def _skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _from_forwarded(
    trust: ProxyTrust, elements: list[dict[str, str]], scheme: str
) -> tuple[tuple[str, int] | None, str]:
    index = len(elements) - 1
    key, client = _for_node(elements[index].get("for"))
    while index > 0 and trust.trusts(key):
        index -= 1  # a proxy we trust added this element: the client is further left
        key, client = _for_node(elements[index].get("for"))
    proto = elements[index].get("proto")
    if proto is not None:
        proto = proto.lower()
        if proto in _SCHEME_NAMES:
            scheme = proto
    return client, scheme


def _for_node(node: str | None) -> tuple[str | None, tuple[str, int] | None]:
    """``(trust key, client)`` for a ``for`` value (RFC 7239 §6).

    An address gives ``(address, (address, port or 0))``; an obfuscated name gives ``(name, None)``,
    so it can be listed as a trusted proxy; ``unknown``, absent or unreadable give ``(None, None)``.
    """
    split = _split_port(node) if node else None
    if split is None:
        return None, None
    host, port = split
    if _OBFUSCATED.fullmatch(host):
        return host, None
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        return None, None  # "unknown", or not a node at all
    return address, (address, port)


def _hop_address(hop: str) -> tuple[str, int]:
    """An ``X-Forwarded-For`` hop as ``(host, port)``: tolerates ``[v6]``, ``[v6]:port``, ``v4:port``."""
    split = _split_port(hop)
    return split if split is not None else (hop, 0)


def _split_port(text: str) -> tuple[str, int] | None:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> ``(host, port or 0)``; None if unreadable.

    Text with two or more colons and no brackets is a bare IPv6 address, not ``host:port``.
    """
    if text[:1] == "[":
        close = text.find("]")
        if close == -1:
            return None
        host, rest = text[1:close], text[close + 1 :]
        if not rest:
            return host, 0
        if rest[:1] != ":":
            return None
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        return text, 0
    if port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535:
        return host, int(port)
    if _OBFUSCATED.fullmatch(port):
        return host, 0
    return None
