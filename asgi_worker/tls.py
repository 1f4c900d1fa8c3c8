"""TLS: the server's ``SSLContext`` from the settings, and the ASGI TLS extension per connection.

Rules:
- Every way a certificate, key, password or CA file can be wrong becomes one ``ConfigError`` line
  naming the file, raised by ``Config.load()`` before any socket is bound (exit 1, as for any bad
  setting), never a traceback at the first connection.
- ``ssl_context_factory`` (a callable returning an ``SSLContext``) replaces every ``ssl_*`` file
  setting, for contexts the flags cannot describe (SNI callbacks, ALPN, key logging).
- The extension (``scope["extensions"]["tls"]``, ASGI TLS extension 0.2) is built once per
  connection, when the handshake is done: the peer does not change between its requests. The
  server certificate is read once per server; cipher names map to their IANA numbers through the
  context's own cipher table (the low 16 bits of OpenSSL's id).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgi_worker.errors import ConfigError

__all__ = ["TlsFacts", "TlsSettings", "create_ssl_context"]


@dataclass(frozen=True)
class TlsSettings:
    """What a server context is made from: uvicorn's ``--ssl-*`` settings, or a factory instead."""

    certfile: str | os.PathLike[str] | None = None
    keyfile: str | os.PathLike[str] | None = None
    password: str | None = None
    version: int = ssl.PROTOCOL_TLS_SERVER
    cert_reqs: int = ssl.CERT_NONE
    ca_certs: str | None = None
    ciphers: str | None = "TLSv1"
    context_factory: Callable[[], ssl.SSLContext] | None = None


_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

# RFC 4514 short names for the attribute types Python's getpeercert() spells out.
_RDN_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def create_ssl_context(settings: TlsSettings) -> ssl.SSLContext:
    """The server-side context ``settings`` describe. Raises ``ConfigError`` with one readable line."""
    if settings.context_factory is not None:
        context = settings.context_factory()
        if not isinstance(context, ssl.SSLContext):
            raise ConfigError(f"ssl_context_factory returned {type(context).__name__}, not an ssl.SSLContext")
        return context
    try:
        context = ssl.SSLContext(settings.version)
    except ValueError as exc:
        raise ConfigError(f"ssl_version {settings.version} is not a protocol this Python knows") from exc
    certfile, keyfile = settings.certfile, settings.keyfile
    try:
        context.load_cert_chain(certfile, keyfile, settings.password)  # type: ignore[arg-type]
    except (OSError, ssl.SSLError) as exc:
        files = f"{certfile}" + (f" / {keyfile}" if keyfile else "")
        raise ConfigError(f"could not load TLS certificate and key ({files}): {_reason(exc)}") from exc
    context.verify_mode = ssl.VerifyMode(settings.cert_reqs)
    if settings.ca_certs:
        try:
            context.load_verify_locations(settings.ca_certs)
        except (OSError, ssl.SSLError) as exc:
            why = _reason(exc)
            raise ConfigError(f"could not load CA certificates {settings.ca_certs}: {why}") from exc
    if settings.ciphers:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"ssl_ciphers {settings.ciphers!r} selects no cipher") from exc
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


class TlsFacts:
    """What a server knows about its TLS once: its own certificate and the cipher numbering."""

    def __init__(self, context: ssl.SSLContext, certfile: Any = None) -> None:
        self.server_cert = _first_pem_certificate(certfile)
        self._cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}

    def extension(self, ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any]:
        """The ``tls`` extension dict for one connection whose handshake is complete."""
        chain: list[str] = []
        name = None
        version = cipher = None
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                chain.append(ssl.DER_cert_to_PEM_cert(der))
                name = rfc4514_name(ssl_object.getpeercert() or {})
            version = _TLS_VERSIONS.get(ssl_object.version() or "")
            described = ssl_object.cipher()
            if described is not None:
                cipher = self._cipher_ids.get(described[0])
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": None,  # a certificate that fails verification fails the handshake
            "tls_version": version,
            "cipher_suite": cipher,
        }


def rfc4514_name(peercert: dict[str, Any]) -> str | None:
    """The subject of a ``getpeercert()`` dict as an RFC 4514 string (most specific RDN first)."""
    subject = peercert.get("subject")
    if not subject:
        return None
    return ",".join(
        "+".join(f"{_RDN_NAMES.get(key, key)}={_escape_rdn(value)}" for key, value in rdn)
        for rdn in reversed(subject)
    )


def _escape_rdn(value: str) -> str:
    escaped = "".join("\\" + ch if ch in ',+"\\<>;=' else ch for ch in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _first_pem_certificate(certfile: Any) -> str | None:
    if not certfile:
        return None
    try:
        with open(certfile, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, begin)
    if begin == -1 or end == -1:
        return None
    return text[begin : end + len(end_marker)] + "\n"
