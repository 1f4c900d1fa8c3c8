"""TLS over real sockets on every backend: https scheme, the TLS extension, client certificates,
encrypted keys, a context factory, and handshakes that stall or fail."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from asgi_worker import Config
from asgi_worker.errors import ConfigError
from tests.timing import TICK, TIMEOUT


async def echo_tls(scope, receive, send):
    """Answers with the scope's scheme and its TLS extension as JSON."""
    if scope["type"] != "http":
        return
    body = json.dumps({"scheme": scope["scheme"], "tls": scope.get("extensions", {}).get("tls")}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Server certificate and key (separate files), the CA, and a client certificate in one PEM."""
    folder = tmp_path_factory.mktemp("tls")
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    paths = {
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "ca": folder / "ca.pem",
        "client": folder / "client.pem",
    }
    paths["cert"].write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    paths["key"].write_bytes(server.private_key_pem.bytes())
    paths["ca"].write_bytes(ca.cert_pem.bytes())
    client = ca.issue_cert("client@example.test", common_name="alice, the client")
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return {name: str(path) for name, path in paths.items()}


def client_context(cert_files: dict[str, str], with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cert_files["ca"])
    if with_cert:
        context.load_cert_chain(cert_files["client"])
    return context


def test_https_scheme_and_tls_extension(serve, cert_files):
    with serve(echo_tls, ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"]) as srv:
        assert srv.url.startswith("https://")
        with httpx.Client(verify=client_context(cert_files), timeout=TIMEOUT) as client:
            first = client.get(srv.url + "/").json()
            second = client.get(srv.url + "/").json()  # same connection: same facts
    assert first == second
    assert first["scheme"] == "https"
    tls = first["tls"]
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert ssl.PEM_cert_to_DER_cert(tls["server_cert"]) == ssl.PEM_cert_to_DER_cert(
        Path(cert_files["cert"]).read_text()
    )
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int) and 0 < tls["cipher_suite"] <= 0xFFFF


def test_cipher_suite_is_the_iana_number(serve, cert_files):
    """TLS 1.2 with a chosen cipher (the default --ssl-ciphers TLSv1 allows the SHA-1 suites there):
    ECDHE-ECDSA-AES128-SHA is 0xC009, ECDHE-RSA-AES128-SHA 0xC013 (RFC 8422)."""
    context = client_context(cert_files)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0")
    with (
        serve(echo_tls, ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"]) as srv,
        httpx.Client(verify=context, timeout=TIMEOUT) as client,
    ):
        tls = client.get(srv.url + "/").json()["tls"]
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] in (0xC009, 0xC013)


def test_client_certificate_required(serve, cert_files):
    settings = {
        "ssl_certfile": cert_files["cert"],
        "ssl_keyfile": cert_files["key"],
        "ssl_ca_certs": cert_files["ca"],
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    with serve(echo_tls, **settings) as srv:
        with httpx.Client(verify=client_context(cert_files, with_cert=True), timeout=TIMEOUT) as client:
            tls = client.get(srv.url + "/").json()["tls"]
        assert len(tls["client_cert_chain"]) == 1
        assert tls["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
        assert tls["client_cert_name"].startswith("CN=alice\\, the client")
        # Without a certificate the handshake itself fails; the server stays healthy.
        without = httpx.Client(verify=client_context(cert_files), timeout=TIMEOUT)
        with without, pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            without.get(srv.url + "/")
        with httpx.Client(verify=client_context(cert_files, with_cert=True), timeout=TIMEOUT) as client:
            assert client.get(srv.url + "/").status_code == 200


def test_stalled_handshake_is_cut_off(serve, cert_files):
    """A client that connects and never says hello, or stops mid-hello, is closed after the timeout."""
    timeout = 5 * TICK
    with serve(
        echo_tls,
        ssl_certfile=cert_files["cert"],
        ssl_keyfile=cert_files["key"],
        timeout_tls_handshake=timeout,
    ) as srv:
        for first_bytes in (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
            with srv.connect() as sock:
                sock.sendall(first_bytes)
                started = time.monotonic()
                sock.settimeout(TIMEOUT)
                try:
                    assert sock.recv(1024) == b""
                except ConnectionResetError:
                    pass
                waited = time.monotonic() - started
            assert timeout * 0.5 <= waited < TIMEOUT
        with httpx.Client(verify=client_context(cert_files), timeout=TIMEOUT) as client:
            assert client.get(srv.url + "/").status_code == 200


def test_plain_http_to_a_tls_port_does_not_hurt(serve, cert_files):
    with serve(echo_tls, ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"]) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(TIMEOUT)
            try:
                answer = sock.recv(1024)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/")  # a TLS alert or a close, never a plain answer
        with httpx.Client(verify=client_context(cert_files), timeout=TIMEOUT) as client:
            assert client.get(srv.url + "/").status_code == 200


def test_encrypted_key_with_password(serve, ca, cert_files, tmp_path):
    issued = ca.issue_cert("127.0.0.1")
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    key_path, cert_path = tmp_path / "enc.key", tmp_path / "cert.pem"
    key_path.write_bytes(encrypted)
    cert_path.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    with (
        serve(
            echo_tls, ssl_certfile=str(cert_path), ssl_keyfile=str(key_path), ssl_keyfile_password="s3cret"
        ) as srv,
        httpx.Client(verify=client_context(cert_files), timeout=TIMEOUT) as client,
    ):
        assert client.get(srv.url + "/").json()["scheme"] == "https"
    wrong = Config(
        echo_tls, ssl_certfile=str(cert_path), ssl_keyfile=str(key_path), ssl_keyfile_password="nope"
    )
    with pytest.raises(ConfigError, match="could not load TLS certificate and key"):
        wrong.load()


def test_ssl_context_factory(serve, cert_files):
    def make_context() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_files["cert"], cert_files["key"])
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    with (
        serve(echo_tls, ssl_context_factory=make_context) as srv,
        httpx.Client(verify=client_context(cert_files), timeout=TIMEOUT) as client,
    ):
        tls = client.get(srv.url + "/").json()["tls"]
    assert tls["tls_version"] == 0x0304
    assert tls["server_cert"] is None  # the factory's certificate is not ours to read


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"ssl_certfile": "/nonexistent/cert.pem"},
            "could not load TLS certificate and key (/nonexistent/cert.pem)",
        ),
        (
            {"ssl_certfile": "CERT", "ssl_keyfile": "/nonexistent.key"},
            "could not load TLS certificate and key",
        ),
        ({"ssl_certfile": "CERT", "ssl_keyfile": "CA"}, "could not load TLS certificate and key"),
        ({"ssl_certfile": "CERT", "ssl_keyfile": "KEY", "ssl_ca_certs": "/nonexistent"}, "could not load CA"),
        ({"ssl_certfile": "CERT", "ssl_keyfile": "KEY", "ssl_ciphers": "NOT-A-CIPHER"}, "selects no cipher"),
        ({"ssl_context_factory": lambda: 42}, "not an ssl.SSLContext"),
    ],
)
def test_bad_tls_settings_fail_at_load(cert_files, settings, message):
    names = {"CERT": cert_files["cert"], "KEY": cert_files["key"], "CA": cert_files["ca"]}
    settings = {k: names.get(v, v) if isinstance(v, str) else v for k, v in settings.items()}
    config = Config(echo_tls, log_config=None, **settings)
    with pytest.raises(ConfigError) as info:
        config.load()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_key_without_certificate_is_refused():
    with pytest.raises(ConfigError, match="ssl_keyfile needs ssl_certfile"):
        Config(echo_tls, ssl_keyfile="key.pem")
