"""Build the ASGI HTTP scope from a parsed head and the facts of its connection.

One dict literal per request, nothing parsed twice: the origin-form target (nearly every request)
is split on ``?`` rather than handed to a URL parser, and percent-decoding runs only when there is a
``%``. ``root_path`` is prefixed to ``path`` and ``raw_path``, as uvicorn does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from asgi_worker.http.events import RequestHead
from asgi_worker.http.proxy import ProxyTrust, apply_proxy_headers

__all__ = ["ASGI_VERSION", "ConnectionFacts", "build_http_scope", "build_websocket_scope", "split_target"]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


class ConnectionFacts:
    """What a scope needs from its connection; computed once when the connection is made."""

    __slots__ = ("client", "extensions", "proxy", "root_path", "root_path_bytes", "scheme", "server", "state")

    def __init__(
        self,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        scheme: str,
        root_path: str,
        state: dict[str, Any],
        proxy: ProxyTrust | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.server = server
        self.scheme = scheme
        self.root_path = root_path
        self.root_path_bytes = root_path.encode()
        self.state = state
        self.proxy = proxy  # set only when the peer is a trusted proxy
        self.extensions = extensions  # per-connection scope extensions (TLS), or None

    def with_extension(self, name: str) -> ConnectionFacts:
        """The same facts for a connection whose scopes also offer the extension ``name`` (HTTP/2:
        ``http.response.trailers``)."""
        facts = ConnectionFacts(
            self.client, self.server, self.scheme, self.root_path, self.state, self.proxy, self.extensions
        )
        facts.extensions = {**(self.extensions or {}), name: {}}
        return facts


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request target into ``(raw_path, query_string)``.

    Origin-form ``/p?q`` is the common case; absolute-form ``http://host/p?q`` loses its scheme and
    authority; ``*`` (OPTIONS) stays as is.
    """
    if target[:1] != b"/" and target != b"*":
        scheme_end = target.find(b"://")
        if scheme_end != -1:
            target = _strip_authority(target[scheme_end + 3 :])
    raw_path, _, query = target.partition(b"?")
    fragment = query.find(b"#") if query else raw_path.find(b"#")
    if fragment != -1:  # never sent by a conforming client; drop it rather than pass it to the app
        if query:
            query = query[:fragment]
        else:
            raw_path = raw_path[:fragment]
    return raw_path, query


def _strip_authority(rest: bytes) -> bytes:
    """``host:port/p?q`` -> ``/p?q``; ``host?q`` -> ``/?q``."""
    for index, byte in enumerate(rest):
        if byte == 0x2F or byte == 0x3F:  # "/" or "?"
            return rest[index:] if byte == 0x2F else b"/" + rest[index:]
    return b"/"


def build_http_scope(head: RequestHead, facts: ConnectionFacts) -> dict[str, Any]:
    """The ``http`` scope for one request. ``state`` is a shallow copy of the lifespan state."""
    target = head.target
    if target[:1] == b"/" and target.find(b"#") < 0:  # origin-form: nearly every request (find: 2x ``in``)
        raw_path, _, query = target.partition(b"?")
    else:
        raw_path, query = split_target(target)
    path = raw_path.decode("ascii")
    if "%" in path:
        path = unquote(path)
    root_path = facts.root_path
    if root_path:
        path = root_path + path
        raw_path = facts.root_path_bytes + raw_path
    state = facts.state
    client, scheme = facts.client, facts.scheme
    if facts.proxy is not None:
        client, scheme = apply_proxy_headers(facts.proxy, head.headers, client, scheme)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},  # fresh: middleware may write to it
        "http_version": head.http_version,
        "server": facts.server,
        "client": client,
        "scheme": scheme,
        "method": head.method,
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": head.headers,
        "state": state.copy() if state else {},
    }
    extensions = facts.extensions
    if extensions is not None:  # TLS, HTTP/2: a fresh outer dict, since middleware may add to it
        scope["extensions"] = extensions.copy()
    return scope


_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def build_websocket_scope(
    head: RequestHead, facts: ConnectionFacts, subprotocols: list[str]
) -> dict[str, Any]:
    """The ``websocket`` scope: the HTTP scope's facts (proxy, root_path, state, TLS) with its
    scheme as ``ws``/``wss``, the offered ``subprotocols``, and the denial-response extension."""
    scope = build_http_scope(head, facts)
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = _WS_SCHEMES.get(scope["scheme"], "ws")
    scope["subprotocols"] = subprotocols
    extensions = scope.get("extensions") or {}
    extensions["websocket.http.response"] = {}
    scope["extensions"] = extensions
    return scope
