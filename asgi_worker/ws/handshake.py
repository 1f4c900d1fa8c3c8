"""The opening handshake, from the head the HTTP parser already produced (never re-serialised).

Rules:
- A request that asks for ``Upgrade: websocket`` with ``Connection: upgrade`` is a handshake,
  answered here (``RequestHead.websocket``); one without both is plain HTTP and goes to the app
  (RFC 9110 7.8: an Upgrade not named in Connection is ignored).
- What RFC 6455 4.2.1 asks of the request line, and ``Sec-WebSocket-Version``, are checked first,
  here, whichever websockets is installed: not a GET is 405 with ``Allow: GET``, HTTP/1.0 or a body
  is 400, and a ``Sec-WebSocket-Version`` other than exactly ``13`` (or none) is 426 naming ``13``
  (RFC 6455 4.4), before the key is looked at: another version's client may not send one.
- The rest is checked by the websockets library (``ServerProtocol.accept``) on a
  ``websockets.http11.Request`` built from our parsed head: same key, connection, upgrade,
  extension and subprotocol rules as every websockets server. With per-message-deflate off the
  library skips ``Sec-WebSocket-Extensions``; its syntax is still checked here (RFC 6455 4.2.1).
- A refused request gets its 4xx (the library's or ours), ``connection: close``, and one info
  line; the app is never called, as with uvicorn.
- The subprotocol is the app's choice, made later in ``websocket.accept``; the handshake keeps
  the library's response and adds ``Sec-WebSocket-Protocol`` and the app's headers when it comes.
- The 101 head and a refusal carry our default header block (``server``, ``date``, ``--header``),
  replacing the library's own Date, so a WebSocket answer looks like every other answer of this
  server (and ``--no-date-header`` holds for it too).
- Over HTTP/2 the handshake is an extended CONNECT (RFC 8441, ``StreamHandshake``): no key and no
  accept; the same version, subprotocol and extension rules, answered with a 200 or a refusal.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.headers import parse_extension, parse_subprotocol
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from asgi_worker.errors import AppProtocolError
from asgi_worker.http.events import BODY_CHUNKED, RequestHead
from asgi_worker.http.headers import is_safe_value, is_token
from asgi_worker.http.response import DefaultHeaderBlock

__all__ = ["WEBSOCKET_VERSION", "Handshake", "StreamHandshake", "protocol_logger"]

# The library logs "connection open" and the like at INFO for every connection; ours logs what
# operators need. Its warnings and errors still reach asgi_worker.error.
protocol_logger = logging.Logger("asgi_worker.ws.protocol", logging.WARNING)
protocol_logger.parent = logging.getLogger("asgi_worker.error")

# The one version RFC 6455 defines; a handshake asking for any other gets it named back in a 426
# (RFC 6455 4.2.2 item 4 and 4.4).
WEBSOCKET_VERSION = "13"

_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\n"


class Handshake:
    """One upgrade request checked by us, then by the library; ``response`` is its answer (101 or a
    refusal) and ``reason`` says why a refused one was refused (one log line, no traceback)."""

    __slots__ = ("extensions", "offered_subprotocols", "reason", "response")

    def __init__(self, head: RequestHead, deflate: bool) -> None:
        headers = Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers)
        self.extensions: list[Extension] = []
        self.offered_subprotocols: list[str] = []
        refused = _refuse_before_the_library(head, headers, deflate)
        if refused is not None:
            self.response, self.reason = refused
            return
        offered = self.offered_subprotocols

        def record_offer(_protocol: ServerProtocol, subprotocols: Any) -> None:
            offered.extend(subprotocols)
            return None

        protocol = ServerProtocol(
            extensions=enable_server_permessage_deflate(None) if deflate else None,
            select_subprotocol=record_offer,
            logger=protocol_logger,
        )
        self.response = protocol.accept(Request(head.target.decode("latin-1"), headers))
        self.extensions = protocol.extensions  # negotiated; the frame protocol takes them over
        refusal = protocol.handshake_exc
        self.reason = "" if refusal is None else str(refusal)

    @property
    def accepted(self) -> bool:
        """Whether the library would switch protocols for this request."""
        return self.response.status_code == 101

    def refusal(self, defaults: DefaultHeaderBlock) -> bytes:
        """The answer to a request we refuse, ready to write (the connection then closes).

        Its status, headers and body, with one ``Connection: close`` (the library may have set one
        already) and our default header block in place of its Date."""
        response = self.response
        lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n".encode("latin-1")]
        for name, value in response.headers.raw_items():
            if name.lower() not in ("date", "connection"):
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"connection: close\r\n")
        lines.append(defaults.block)
        lines.append(b"\r\n")
        lines.append(bytes(response.body or b""))
        return b"".join(lines)

    def switching_head(self, subprotocol: str | None, headers: Any, defaults: DefaultHeaderBlock) -> bytes:
        """The 101 head for ``websocket.accept``. Raises ``AppProtocolError`` for a bad app header."""
        lines = [_SWITCHING]
        for name, value in self.response.headers.raw_items():
            if name.lower() != "date":
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if subprotocol is not None:
            lines.append(b"sec-websocket-protocol: %b\r\n" % _header_value(subprotocol.encode("latin-1")))
        has_server = has_date = False
        for name, value in headers or ():
            if not is_token(name):
                raise AppProtocolError(f"invalid response header {name!r}: {value!r}")
            lowered = name.lower()
            has_server = has_server or lowered == b"server"
            has_date = has_date or lowered == b"date"
            lines.append(b"%b: %b\r\n" % (name, _header_value(value)))
        lines.append(
            defaults.block if not (has_server or has_date) else defaults.without(has_server, has_date)
        )
        lines.append(b"\r\n")
        return b"".join(lines)


class StreamHandshake:
    """An RFC 8441 extended CONNECT: a WebSocket opened on an HTTP/2 stream (RFC 8441 5).

    The request is ``CONNECT`` with ``:protocol: websocket`` (``:scheme``, ``:path`` and
    ``:authority`` are checked by ``http2/request.py``), ``sec-websocket-version: 13``, and a stream
    left open for the frames. Sec-WebSocket-Key/Accept, Connection and Upgrade are not used.
    Subprotocols and extensions are offered as over HTTP/1.1 and read by the websockets library
    (per-message-deflate is negotiated with ``--ws-per-message-deflate``, as there). A refusal is the
    HTTP/1.1 one with its status, except a bad version: 400, since 426 needs an ``Upgrade`` header,
    which HTTP/2 forbids (RFC 9110 15.5.22, RFC 9113 8.2.2); it names version 13 all the same.
    """

    __slots__ = ("extensions", "extensions_header", "offered_subprotocols", "reason", "response")

    def __init__(self, head: RequestHead, protocol: bytes, deflate: bool) -> None:
        headers = Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers)
        self.extensions: list[Extension] = []
        self.extensions_header: str | None = None
        self.offered_subprotocols: list[str] = []
        self.response: Response | None = None  # the refusal; None: accepted
        self.reason = ""
        refused = _refuse_stream(head, protocol, headers)
        if refused is None:
            try:
                self.offered_subprotocols = [
                    str(name) for value in headers.get_all("Sec-WebSocket-Protocol")
                    for name in parse_subprotocol(value)
                ]  # fmt: skip
                library = ServerProtocol(
                    extensions=enable_server_permessage_deflate(None) if deflate else None,
                    logger=protocol_logger,
                )
                self.extensions_header, self.extensions = library.process_extensions(headers)
            except InvalidHandshake as exc:
                refused = _refused(HTTPStatus.BAD_REQUEST, str(exc))
        if refused is not None:
            self.response, self.reason = refused

    @property
    def accepted(self) -> bool:
        return self.response is None

    def refusal(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """``(status, fields, body)`` of a refused request: the stream's response, then its end."""
        response = self.response
        assert response is not None
        fields = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.raw_items()
            if name.lower() not in ("date", "connection", "upgrade")
        ]
        return response.status_code, fields, bytes(response.body or b"")

    def accept_fields(self, subprotocol: str | None, headers: Any) -> list[tuple[bytes, bytes]]:
        """The 200's fields for ``websocket.accept`` (the stream's head adds the defaults).
        Raises ``AppProtocolError`` for a bad app header."""
        fields: list[tuple[bytes, bytes]] = []
        if self.extensions_header is not None:
            fields.append((b"sec-websocket-extensions", self.extensions_header.encode("latin-1")))
        if subprotocol is not None:
            fields.append((b"sec-websocket-protocol", _header_value(subprotocol.encode("latin-1"))))
        for name, value in headers or ():
            if not is_token(name):
                raise AppProtocolError(f"invalid response header {name!r}: {value!r}")
            fields.append((name, _header_value(value)))
        return fields


def _refuse_stream(head: RequestHead, protocol: bytes, headers: Headers) -> tuple[Response, str] | None:
    """Our answer and reason for an extended CONNECT RFC 8441 refuses; ``None`` to go on."""
    if protocol != b"websocket":
        reason = f"unsupported :protocol {protocol.decode('latin-1')!r}; expected websocket"
        return _refused(HTTPStatus.NOT_IMPLEMENTED, reason)
    if head.body_length != BODY_CHUNKED:  # END_STREAM at once, or a content-length
        return _refused(HTTPStatus.BAD_REQUEST, "a WebSocket stream stays open and has no content-length")
    # HTTP/2 has no Upgrade header, so no 426 (which must carry one): a 400 naming the version.
    return _refuse_version(headers, HTTPStatus.BAD_REQUEST)


def _refuse_version(
    headers: Headers, status: HTTPStatus, *extra: tuple[str, str]
) -> tuple[Response, str] | None:
    """``status`` with the version we speak unless the request asks for exactly that one (RFC 6455 4.4)."""
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions == [WEBSOCKET_VERSION]:
        return None
    got = ", ".join(versions) if versions else "none"
    reason = f"unsupported Sec-WebSocket-Version; expected {WEBSOCKET_VERSION}; got {got}"
    return _refused(status, reason, *extra, ("Sec-WebSocket-Version", WEBSOCKET_VERSION))


def _refuse_before_the_library(
    head: RequestHead, headers: Headers, deflate: bool
) -> tuple[Response, str] | None:
    """Our answer and reason for what RFC 6455 refuses before the library looks (older releases of
    it see neither the method nor the HTTP version; newer ones answer HTTP/1.0 with a 5xx, and a bad
    version with a 400 without the 426's header); ``None`` to let the library decide."""
    if head.method != "GET":
        return _refused(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"invalid HTTP method; expected GET; got {head.method}",
            ("Allow", "GET"),
        )
    if head.http_version != "1.1":
        return _refused(
            HTTPStatus.BAD_REQUEST, f"invalid HTTP version; expected HTTP/1.1; got HTTP/{head.http_version}"
        )
    if head.body_length:
        return _refused(HTTPStatus.BAD_REQUEST, "a handshake request has no body")
    refusal = _refuse_version(headers, HTTPStatus.UPGRADE_REQUIRED, ("Upgrade", "websocket"))
    if refusal is not None:
        return refusal
    if not deflate:  # the library parses the header only when it has extensions to offer
        try:
            for value in headers.get_all("Sec-WebSocket-Extensions"):
                parse_extension(value)
        except InvalidHandshake as exc:
            return _refused(HTTPStatus.BAD_REQUEST, str(exc))
    return None


def _refused(status: HTTPStatus, reason: str, *fields: tuple[str, str]) -> tuple[Response, str]:
    """A plain-text refusal worded like the library's own, with ``fields`` added to its head."""
    body = f"Failed to open a WebSocket connection: {reason}.\n".encode()
    headers = Headers(
        [("Content-Length", str(len(body))), ("Content-Type", "text/plain; charset=utf-8"), *fields]
    )
    return Response(status.value, status.phrase, headers, body), reason


def _header_value(value: bytes) -> bytes:
    if not is_safe_value(value):
        raise AppProtocolError(f"invalid response header value {value!r}")
    return value
