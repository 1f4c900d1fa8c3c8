"""The PROXY protocol (HAProxy's proxy-protocol.txt, v1 and v2) over real sockets and real processes.

Headers are written here byte by byte from the spec, not with the parser's own constants, and sent
ahead of HTTP (or TLS) on one connection: the header's source must become ``scope["client"]`` and
the access log's client, a trusted peer that sends anything else must be closed unanswered, an
untrusted peer must be served as a plain client, and the same must hold under ``asgi-supervise``,
under gunicorn, and behind a real HAProxy.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import ipaddress
import json
import logging
import os
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import read_exact, read_response, read_until, run_server
from tests.processes import Output, accepting, free_port, stop_tree
from tests.supervisor.harness import supervise
from tests.timing import TICK, TIMEOUT, wait_until

SEEN: list[dict[str, Any]] = []  # what the in-process app was called with (path, client), in order


async def whoami(scope, receive, send):
    """Answers the scope's client (and scheme, path, pid) as JSON; notes each call in ``SEEN``."""
    if scope["type"] != "http":
        return
    facts = {"client": scope["client"], "scheme": scope["scheme"], "path": scope["path"], "pid": os.getpid()}
    SEEN.append(facts)
    body = json.dumps(facts).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def write_app_module(folder: Path) -> None:
    """``ppapps:whoami`` for server processes: this module's app, without importing the tests."""
    (folder / "ppapps.py").write_text("import json\nimport os\n\nSEEN = []\n\n\n" + inspect.getsource(whoami))


# Headers, as the spec writes them

SIGNATURE = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"  # proxy-protocol.txt 2.2
LOCAL, PROXY = 0x0, 0x1
UNSPEC, TCP4, TCP6 = 0x00, 0x11, 0x21
PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_NOOP = 0x01, 0x02, 0x04


def v2(command: int, family: int, block: bytes) -> bytes:
    """A v2 header: signature, version 2 and the command, family/transport, length, the block."""
    return SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def v2_inet(source: str, destination: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    """A v2 PROXY header for TCP over IPv4 or IPv6 (the source's family), TLVs after the addresses."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = TCP4 if src.version == 4 else TCP6
    return v2(PROXY, family, src.packed + dst.packed + struct.pack("!HH", sport, dport) + tlvs)


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


PEER = "peer"  # the client socket's own address: the header gave none

V1_TCP4 = b"PROXY TCP4 203.0.113.7 192.0.2.10 4711 443\r\n"
V2_TCP4 = v2_inet("203.0.113.7", "192.0.2.10", 4711, 443)
HEADERS = {
    "v1-tcp4": ("v1", V1_TCP4, ["203.0.113.7", 4711]),
    "v1-tcp6": ("v1", b"PROXY TCP6 2001:DB8:0:0::7 2001:db8::10 65535 443\r\n", ["2001:db8::7", 65535]),
    "v1-tcp6-mapped": (  # Python's text for it: "::ffff:c000:201" before 3.13, as written after
        "v1",
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 0 80\r\n",
        [str(ipaddress.ip_address("::ffff:192.0.2.1")), 0],
    ),
    "v1-unknown": ("v1", b"PROXY UNKNOWN\r\n", PEER),
    "v1-unknown-longest": (  # spec 2.1: the worst case, 107 bytes; what follows UNKNOWN is ignored
        "v1",
        b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".replace(
            b"f...f", b"ffff:" * 5 + b"ffff"
        ),
        PEER,
    ),
    "v2-tcp4": ("v2", V2_TCP4, ["203.0.113.7", 4711]),
    "v2-tcp6": ("v2", v2_inet("2001:db8::7", "2001:db8::10", 1, 8443), ["2001:db8::7", 1]),
    "v2-tcp4-tlvs": (
        "v2",
        v2_inet(
            "198.51.100.20",
            "192.0.2.10",
            50000,
            443,
            tlv(PP2_TYPE_ALPN, b"http/1.1")
            + tlv(PP2_TYPE_AUTHORITY, b"example.test")
            + tlv(PP2_TYPE_NOOP, b""),
        ),
        ["198.51.100.20", 50000],
    ),
    "v2-local": ("v2", v2(LOCAL, UNSPEC, b""), PEER),
    "v2-local-with-block": (
        "v2",
        v2(LOCAL, TCP4, bytes(12) + b"ignored"),
        PEER,
    ),  # spec: LOCAL's block ignored
    "v2-unspec": ("v2", v2(PROXY, UNSPEC, b"whatever"), PEER),
}


def request(path: str = "/", close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: example.test\r\n" + extra + b"\r\n"


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, Any]]:
    """The next ``count`` responses (no more was asked for): each status and JSON body (or bytes)."""
    data = b""
    answers: list[tuple[int, Any]] = []
    while len(answers) < count:
        if b"\r\n\r\n" not in data:
            data += read_until(sock, b"\r\n\r\n")
        head, found, data = data.partition(b"\r\n\r\n")
        assert found, f"no response head, got {head!r}"
        length = re.search(rb"(?im)^content-length: *(\d+)\r?$", head)
        assert length is not None, head
        size = int(length.group(1))
        if len(data) < size:
            data += read_exact(sock, size - len(data))
        body, data = data[:size], data[size:]
        status = int(head.split(b" ", 2)[1])
        answers.append((status, json.loads(body) if status == 200 else body))
    return answers


def read_one(sock: socket.socket) -> tuple[int, Any]:
    """One response on a keep-alive connection: its status and its JSON body (or raw bytes)."""
    return read_responses(sock, 1)[0]


def expected_client(expected: Any, sock: socket.socket) -> list[Any]:
    return list(sock.getsockname()[:2]) if expected == PEER else expected


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_bytewise(sock: socket.socket, data: bytes) -> None:
    """One byte per segment (as far as a pause lets the kernel keep them apart)."""
    for byte in data:
        sock.sendall(bytes([byte]))
        time.sleep(TICK / 100)


def access_config(stream: io.StringIO) -> dict[str, Any]:
    """Our own access lines (the writer path) to ``stream``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"access": {"()": "asgi_worker.log.AccessFormatter"}},
        "handlers": {"access": {"class": "logging.StreamHandler", "stream": stream, "formatter": "access"}},
        "loggers": {"asgi_worker.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }


# 1. Every header form, in one send and byte by byte, on every backend; keep-alive; the access log


@pytest.mark.parametrize("delivery", ["one-send", "byte-by-byte"])
@pytest.mark.parametrize("case", list(HEADERS))
def test_the_header_source_is_the_client(serve, case, delivery):
    version, header, expected = HEADERS[case]
    setting = version if delivery == "one-send" else "auto"  # auto decides on the first byte alone
    stream = io.StringIO()
    with (
        serve(whoami, proxy_protocol=setting, log_config=access_config(stream)) as srv,
        connect(srv.port) as sock,
    ):
        client = expected_client(expected, sock)
        if delivery == "one-send":
            sock.sendall(header + request())
        else:
            send_bytewise(sock, header + request())
        assert read_one(sock) == (200, {"client": client, "scheme": "http", "path": "/", "pid": os.getpid()})
        sock.sendall(request("/again"))  # keep-alive: the connection keeps its client
        assert read_one(sock)[1]["client"] == client
    host, port = client
    lines = stream.getvalue().splitlines()
    assert [line.split(' - "')[0] for line in lines] == [f"INFO:     {host}:{port}"] * 2, lines
    assert [line.split(' - "')[1] for line in lines] == [
        'GET / HTTP/1.1" 200 OK',
        'GET /again HTTP/1.1" 200 OK',
    ]


def test_the_request_right_after_the_header_is_not_eaten(serve):
    """Pipelined requests in the header's segment are all served, in order, with the header's client."""
    with serve(whoami, proxy_protocol="v2") as srv, connect(srv.port) as sock:
        sock.sendall(V2_TCP4 + request("/1") + request("/2") + request("/3", close=True))
        answers = [body for _status, body in read_responses(sock, 3)]
        assert read_response(sock) == b""
    assert [(a["path"], a["client"]) for a in answers] == [
        (f"/{n}", ["203.0.113.7", 4711]) for n in (1, 2, 3)
    ]


def test_the_largest_header_we_take_and_one_byte_more(serve):
    """TLVs up to MAX_V2_TLV_BYTES (a client certificate fits) are skipped; one more byte is refused."""
    from asgi_worker.http.proxy_protocol import MAX_V2_TLV_BYTES

    largest = v2_inet("203.0.113.7", "192.0.2.10", 4711, 443, tlv(PP2_TYPE_NOOP, bytes(MAX_V2_TLV_BYTES - 3)))
    too_big = v2_inet("203.0.113.7", "192.0.2.10", 4711, 443, tlv(PP2_TYPE_NOOP, bytes(MAX_V2_TLV_BYTES - 2)))
    with serve(whoami, proxy_protocol="v2") as srv:
        for chunk in (len(largest), 1000):  # in one send, and in pieces no recv can take whole
            with connect(srv.port) as sock:
                data = largest + request(close=True)
                for start in range(0, len(data), chunk):
                    sock.sendall(data[start : start + chunk])
                    time.sleep(TICK / 50)
                assert read_one(sock)[1]["client"] == ["203.0.113.7", 4711]
        with connect(srv.port) as sock:
            sock.sendall(too_big + request(close=True))
            assert read_response(sock) == b""


def test_an_ipv6_listener(serve):
    """The default --proxy-allow-from trusts ::1: a header from an IPv6 loopback peer is read."""
    with serve(whoami, host="::1", proxy_protocol="auto") as srv:
        for header, expected in ((V1_TCP4, ["203.0.113.7", 4711]), (v2(LOCAL, UNSPEC, b""), PEER)):
            with connect(srv.port, "::1") as sock:
                sock.sendall(header + request(close=True))
                assert read_one(sock)[1]["client"] == expected_client(expected, sock)


@pytest.mark.parametrize("allow", ["default", "*", "the-path"])
def test_a_unix_socket_peer_is_trusted_only_when_listed(serve, tmp_path, allow):
    """A UNIX socket peer has no address: '*' or the socket's path in --proxy-allow-from makes it a
    proxy that must send a header; by default it is a plain client (a PROXY line from it: 400)."""
    path = str(tmp_path / "s.sock")
    allowed = {"default": None, "*": "*", "the-path": path}[allow]
    with serve(whoami, uds=path, proxy_protocol="auto", proxy_allow_ips=allowed):
        answers = []
        for data in (V2_TCP4 + request(close=True), request(close=True)):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(TIMEOUT)
                sock.connect(path)
                sock.sendall(data)
                answers.append(read_response(sock))
    proxied, plain = answers
    if allow == "default":
        assert proxied.startswith(b"HTTP/1.1 400 ") and plain.startswith(b"HTTP/1.1 200 "), answers
        assert json.loads(plain.partition(b"\r\n\r\n")[2])["client"] is None
    else:
        assert json.loads(proxied.partition(b"\r\n\r\n")[2])["client"] == ["203.0.113.7", 4711]
        assert plain == b""


def test_forwarded_headers_are_judged_by_the_headers_client(serve):
    """The L4 proxy's address (trusted for X-Forwarded-For by default) does not lend its trust to
    the clients it relays: their own X-Forwarded-For is believed only if they are trusted."""
    spoof = request().replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 192.0.2.66\r\n\r\n")
    with serve(whoami, proxy_protocol="v1", forwarded_allow_ips="127.0.0.1,10.0.0.0/8") as srv:
        with connect(srv.port) as sock:
            sock.sendall(V1_TCP4 + spoof)
            assert read_one(sock)[1]["client"] == ["203.0.113.7", 4711]
        with connect(srv.port) as sock:  # an L7 proxy the header names as the client: trusted
            sock.sendall(b"PROXY TCP4 10.1.2.3 192.0.2.10 5000 443\r\n" + spoof)
            assert read_one(sock)[1]["client"] == ["192.0.2.66", 0]


# 2. A trusted peer that does not send a valid header: closed unanswered, the others still served

REFUSED = {
    "plain-http": ("auto", request()),
    "tls-client-hello": ("auto", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)),
    "v1-leading-zero-port": ("v1", b"PROXY TCP4 203.0.113.7 192.0.2.10 04711 443\r\n" + request()),
    "v1-port-too-big": ("v1", b"PROXY TCP4 203.0.113.7 192.0.2.10 65536 443\r\n" + request()),
    "v1-ipv6-after-tcp4": ("v1", b"PROXY TCP4 2001:db8::7 192.0.2.10 4711 443\r\n" + request()),
    "v1-bad-ipv4": ("v1", b"PROXY TCP4 203.0.113.256 192.0.2.10 4711 443\r\n" + request()),
    "v1-unknown-family": ("v1", b"PROXY TCP5 203.0.113.7 192.0.2.10 4711 443\r\n" + request()),
    "v1-two-spaces": ("v1", b"PROXY TCP4  203.0.113.7 192.0.2.10 4711 443\r\n" + request()),
    "v1-bare-lf": ("v1", b"PROXY TCP4 203.0.113.7 192.0.2.10 4711 443\n" + request()),
    "v1-lowercase": ("v1", b"proxy TCP4 203.0.113.7 192.0.2.10 4711 443\r\n" + request()),
    "v1-scope-id": ("v1", b"PROXY TCP6 fe80::1%eth0 fe80::2 4711 443\r\n" + request()),
    "v1-too-long": ("v1", b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n" + request()),
    "v2-version-1": ("v2", SIGNATURE + b"\x11" + V2_TCP4[13:] + request()),
    "v2-command-2": ("v2", SIGNATURE + b"\x22" + V2_TCP4[13:] + request()),
    "v2-udp": ("v2", v2(PROXY, 0x12, V2_TCP4[16:]) + request()),
    "v2-undefined-family": ("v2", v2(PROXY, 0x41, V2_TCP4[16:]) + request()),
    "v2-block-too-short": ("v2", v2(PROXY, TCP6, V2_TCP4[16:]) + request()),
    "v2-tlv-past-the-end": ("v2", v2_inet("203.0.113.7", "192.0.2.10", 1, 2, b"\x01\x00\x09h2") + request()),
    "v2-length-past-limit": ("v2", SIGNATURE + b"\x21\x11\xff\xff" + bytes(64)),
    "v2-bad-signature": ("v2", SIGNATURE[:-1] + b"\x0b" + V2_TCP4[12:] + request()),
    "v2-with-v1-setting": ("v1", V2_TCP4 + request()),
    "v1-with-v2-setting": ("v2", V1_TCP4 + request()),
    "header-then-eof": ("auto", V1_TCP4[:20]),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_trusted_peer_without_a_valid_header_is_closed_unanswered(serve, caplog, case):
    setting, data = REFUSED[case]
    slow = TIMEOUT * 4  # far past the read below: these must be refused at once, not timed out
    with (
        caplog.at_level(logging.DEBUG, logger="asgi_worker.error"),
        serve(whoami, proxy_protocol=setting, timeout_request_header=slow) as srv,
    ):
        SEEN.clear()
        with connect(srv.port) as sock:
            sock.sendall(data)
            if case == "header-then-eof":
                sock.shutdown(socket.SHUT_WR)
            assert read_response(sock, TIMEOUT) == b""
        assert SEEN == []
        good = V1_TCP4 if setting != "v2" else V2_TCP4
        with connect(srv.port) as sock:
            sock.sendall(good + request(close=True))
            assert read_one(sock)[1]["client"] == ["203.0.113.7", 4711]
    refusals = [r for r in caplog.records if r.getMessage().startswith("PROXY header refused")]
    assert len(refusals) == 1 and refusals[0].levelno == logging.DEBUG, caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.parametrize(
    "data", [b"", V1_TCP4[:-1], V1_TCP4[:-2], V2_TCP4[:11], V2_TCP4[:15], V2_TCP4[:-1]], ids=repr
)
def test_a_header_that_never_completes_is_closed_after_the_head_timeout(serve, data):
    timeout = TICK * 3
    with serve(whoami, proxy_protocol="auto", timeout_request_header=timeout) as srv:
        with connect(srv.port) as sock:
            sock.sendall(data)
            started = time.monotonic()
            assert read_response(sock, TIMEOUT) == b""
            waited = time.monotonic() - started
        assert timeout * 0.8 <= waited < TIMEOUT, waited
        with connect(srv.port) as sock:
            sock.sendall(V1_TCP4 + request(close=True))
            assert read_one(sock)[0] == 200


def test_silent_connections_do_not_hold_up_the_others(serve):
    """Connections still owing their header wait apart: a proxied request goes past them at once."""
    with (
        serve(whoami, proxy_protocol="v1", timeout_request_header=TIMEOUT * 4) as srv,
        contextlib.ExitStack() as stack,
    ):
        silent = [stack.enter_context(connect(srv.port)) for _ in range(20)]
        silent[0].sendall(V1_TCP4[:10])
        with connect(srv.port) as sock:
            sock.sendall(V1_TCP4 + request(close=True))
            assert read_one(sock)[1]["client"] == ["203.0.113.7", 4711]


def still_open(sock: socket.socket, timeout: float) -> bool:
    """Whether the server left ``sock`` open (silent) for ``timeout``; it sends nothing either way."""
    sock.settimeout(timeout)
    try:
        assert sock.recv(65536) == b""
    except ConnectionResetError:
        return False
    except TimeoutError:
        return True
    return False


# An embedding program that stops its server and lives on: run apart, so that sockets the server
# lets go of unclosed are found (and warn) there, not in whichever test of ours runs next.
EMBEDDER = """
import gc, json, sys, warnings
from tests.conftest import run_server
from tests.http.test_proxy_protocol_wire import V1_TCP4, connect, still_open, whoami
loop, http, when, wait, header_timeout = *sys.argv[1:4], float(sys.argv[4]), float(sys.argv[5])
config = dict(loop=loop, http=http, proxy_protocol="v1", timeout_request_header=header_timeout)
left_open, errors = [], 0
with warnings.catch_warnings(record=True) as dropped:  # a socket collected unclosed warns
    warnings.simplefilter("always", ResourceWarning)
    for _round in range(4):  # the stop has to come right after the accept: a few tries
        with run_server(whoami, **config) as srv:
            sock = connect(srv.port)
            sock.sendall(V1_TCP4[:10])
            if when == "waiting":
                assert still_open(sock, wait / 2)  # admitted: the server waits for the rest
        errors += len(srv.loop_errors)
        del srv
        left_open.append(still_open(sock, wait))
        sock.close()
    gc.collect()
unclosed = [str(w.message) for w in dropped if issubclass(w.category, ResourceWarning)]
print(json.dumps({"left_open": left_open, "unclosed": unclosed, "loop_errors": errors}))
"""


@pytest.mark.parametrize("when", ["just-accepted", "waiting"])
def test_stopping_closes_connections_still_owing_their_header(backend, when):
    """Connections between accept and their header when the server stops are closed, not left open
    (their descriptors held) until the process exits: an embedding program outlives its server."""
    root = Path(__file__).parents[2]
    args = [*backend, when, str(TICK * 5), str(TIMEOUT * 4)]  # stopped: closed at once, no timeout
    proc = subprocess.run(
        [sys.executable, "-c", EMBEDDER, *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 8,
    )
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome == {"left_open": [False] * 4, "unclosed": [], "loop_errors": 0}, outcome


# 3. A peer outside --proxy-allow-from: a plain client; a PROXY header from it is a bad request


def test_an_untrusted_peer_is_served_plainly_and_its_header_not_believed(serve):
    with serve(whoami, proxy_protocol="auto", proxy_allow_ips="10.9.9.9") as srv:
        with connect(srv.port) as sock:
            sock.sendall(request())
            assert read_one(sock)[1]["client"] == list(sock.getsockname()[:2])
        SEEN.clear()
        for header in (V1_TCP4, V2_TCP4):
            with connect(srv.port) as sock:
                sock.sendall(header + request())
                answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 400 "), answer
            assert b"connection: close\r\n" in answer.lower()
        assert SEEN == []


# 4. TLS after the header: the header in clear, then the handshake on the same socket


@pytest.mark.parametrize("header", [V1_TCP4, V2_TCP4], ids=["v1", "v2"])
def test_tls_after_the_header(serve, tls_files, header):
    context = ssl.create_default_context(cafile=tls_files["ca"])
    with serve(
        whoami, proxy_protocol="auto", ssl_certfile=tls_files["cert"], ssl_keyfile=tls_files["key"]
    ) as srv:
        with connect(srv.port) as raw:
            raw.sendall(header)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(request())
                first = read_one(sock)[1]
                sock.sendall(request("/again"))
                second = read_one(sock)[1]
        assert (first["client"], first["scheme"]) == (["203.0.113.7", 4711], "https")
        assert second["client"] == first["client"]
        # TLS without the header from a trusted peer: closed
        with connect(srv.port) as raw, pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


# 5. asgi-supervise: every worker reads the header


def test_asgi_supervise_workers_read_the_header(tmp_path):
    write_app_module(tmp_path)
    args = ("ppapps:whoami", "--app-dir", str(tmp_path), "--proxy-protocol", "v1", "--workers", "2")
    with supervise(*args) as sup:
        for n in range(12):
            with connect(sup.port) as sock:
                sock.sendall(f"PROXY TCP4 198.51.100.{n} 192.0.2.10 {40000 + n} 80\r\n".encode())
                sock.sendall(request(close=True))
                status, answer = read_one(sock)
            assert (status, answer["client"]) == (200, [f"198.51.100.{n}", 40000 + n])
        with connect(sup.port) as sock:  # the setting is each worker's: plain HTTP is refused
            sock.sendall(request())
            assert read_response(sock) == b""


# 6. gunicorn: its own --proxy-protocol and --proxy-allow-from


def test_gunicorn_proxy_protocol_gives_the_client(tmp_path):
    pytest.importorskip("gunicorn")
    from tests.gunicorn.harness import gunicorn

    write_app_module(tmp_path)
    args = ("--proxy-protocol", "v2", "--proxy-allow-from", "127.0.0.1", "--pythonpath", str(tmp_path))
    with gunicorn(
        *args, "--access-logfile", "-", "--access-logformat", "%(h)s %(s)s", app="ppapps:whoami"
    ) as g:
        with connect(g.port) as sock:
            sock.sendall(v2_inet("2001:db8::7", "2001:db8::10", 4711, 443) + request(close=True))
            status, answer = read_one(sock)
        assert (status, answer["client"]) == (200, ["2001:db8::7", 4711])
        g.wait_for("2001:db8::7 200", "stdout")


# 7. HAProxy in front: what it sends, as it sends it

HAPROXY_CONFIG = """\
global
    maxconn 100
defaults
    mode tcp
    timeout connect {timeout}ms
    timeout client {timeout}ms
    timeout server {timeout}ms
frontend front
    bind 127.0.0.1:{front}
    default_backend app
backend app
{check}
    server app 127.0.0.1:{port} {send} {server_check}
"""


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.skip("haproxy is not installed (Debian package haproxy; .ci/run installs it when it can)")
    return found


@contextlib.contextmanager
def haproxy(tmp_path: Path, port: int, send: str, check: bool = False) -> Iterator[tuple[int, Output]]:
    """``haproxy -f CFG -db`` in front of ``port``; yields its frontend port and its output."""
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            timeout=int(TIMEOUT * 1000),
            front=front,
            port=port,
            send=send,
            check="    option httpchk\n    http-check send meth GET uri /health ver HTTP/1.1 hdr Host x"
            if check
            else "",
            server_check=f"check inter {int(TICK * 1000)}" if check else "",
        )
    )
    proc = subprocess.Popen(
        [haproxy_binary(), "-f", str(config), "-db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    output = Output(proc, "stdout", "stderr")
    try:
        assert wait_until(lambda: accepting(front) or proc.poll() is not None), "haproxy did not listen"
        assert proc.poll() is None, output.text("stderr")
        yield front, output
    finally:
        stop_tree(proc, output)


@pytest.mark.parametrize(("send", "setting"), [("send-proxy-v2", "v2"), ("send-proxy", "v1")])
def test_behind_haproxy_the_client_is_haproxys_client(tmp_path, send, setting):
    haproxy_binary()
    with run_server(whoami, proxy_protocol=setting) as srv, haproxy(tmp_path, srv.port, send) as (front, _):
        for path in ("/1", "/2"):
            with connect(front) as sock:
                sock.sendall(request(path, close=True))
                status, answer = read_one(sock)
                own = list(sock.getsockname()[:2])
            assert (status, answer["path"], answer["client"]) == (200, path, own)
    assert not srv.loop_errors


def test_haproxy_health_checks_with_send_proxy_v2(tmp_path):
    """HAProxy's checks send a v2 LOCAL header (no addresses): served with HAProxy's own address,
    so its server stays up; relayed clients still get theirs."""
    haproxy_binary()
    SEEN.clear()

    def checks() -> list[dict[str, Any]]:
        return [seen for seen in SEEN if seen["path"] == "/health"]

    with (
        run_server(whoami, proxy_protocol="v2") as srv,
        haproxy(tmp_path, srv.port, "send-proxy-v2", check=True) as (front, output),
    ):
        assert wait_until(lambda: len(checks()) >= 3), (SEEN, output.text("stderr"))
        with connect(front) as sock:
            sock.sendall(request(close=True))
            status, answer = read_one(sock)
            own = list(sock.getsockname()[:2])
        assert (status, answer["client"]) == (200, own)
        log = output.text("stderr") + output.text("stdout")
    assert not srv.loop_errors
    assert all(seen["client"][0] == "127.0.0.1" for seen in checks())
    assert own not in [seen["client"] for seen in checks()]
    assert "is DOWN" not in log, log


# 8. A seeded wire fuzz: mutated headers, each on its own connection

SEED = 20260611
FUZZ_CASES = 200
FUZZ_HEADER_TIMEOUT = TICK * 3


def mutate(rng: random.Random, header: bytes) -> bytes:
    """One to three edits of a valid header: flip, insert, delete, truncate, repeat, relength."""
    data = bytearray(header)
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["flip", "insert", "delete", "truncate", "repeat", "digit", "length"])
        at = rng.randrange(len(data)) if data else 0
        if kind == "flip" and data:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "insert":
            data.insert(at, rng.choice([0x20, 0x0D, 0x0A, 0x00, 0x3A, 0x2E, 0x30, 0x39, rng.randrange(256)]))
        elif kind == "delete" and data:
            del data[at]
        elif kind == "truncate":
            del data[at:]
        elif kind == "repeat" and data:
            data[at:at] = data[at : at + rng.randint(1, 8)]
        elif kind == "digit":
            digits = [i for i, byte in enumerate(data) if 0x30 <= byte <= 0x39]
            if digits:
                data[rng.choice(digits)] = rng.choice(b"0123456789")
        elif kind == "length" and len(data) >= 16 and data[:12] == SIGNATURE:
            data[14:16] = struct.pack("!H", rng.choice([0, 1, 11, 12, 13, 36, 37, rng.randrange(65536)]))
    return bytes(data)


def fuzz_inputs() -> list[tuple[bytes, bool]]:
    """(mutated header + request, whether to half-close after sending), reproducibly from SEED."""
    rng = random.Random(SEED)
    seeds = [header for _version, header, _expected in HEADERS.values()]
    return [
        (mutate(rng, rng.choice(seeds)) + request(close=True), rng.random() < 0.8) for _ in range(FUZZ_CASES)
    ]


def came_from(data: bytes, client: list[Any], own: list[Any]) -> bool:
    """Whether ``client`` is the peer itself or an address and port the sent bytes spell out."""
    if client == own:
        return True
    host, port = client
    address = ipaddress.ip_address(host)
    if str(address) != host or not 0 <= port <= 65535:
        return False
    if address.packed in data and struct.pack("!H", port) in data:
        return True
    words = re.split(rb"[ \r\n]", data)
    spelled = set()
    for word in words:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            spelled.add(ipaddress.ip_address(word.decode("ascii")))
    return address in spelled and str(port).encode() in words


def fuzz_one(port: int, data: bytes, half_close: bool) -> str | None:
    """None when the connection ended acceptably, else what went wrong."""
    with connect(port) as sock:
        own = list(sock.getsockname()[:2])
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # refused while we were still sending: a close
            return None
        answer = read_response(sock, FUZZ_HEADER_TIMEOUT + TIMEOUT)
    if answer == b"":
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status == 400:
        return None
    if status != 200:
        return f"status {status}"
    client = json.loads(body)["client"]
    return None if came_from(data, client, own) else f"client {client} not in what was sent"


def test_fuzzed_headers_get_a_200_a_400_or_a_close(serve):
    problems = []
    with serve(whoami, proxy_protocol="auto", timeout_request_header=FUZZ_HEADER_TIMEOUT) as srv:
        for number, (data, half_close) in enumerate(fuzz_inputs()):
            problem = fuzz_one(srv.port, data, half_close)
            if problem:
                problems.append(f"input {number} {data!r} half_close={half_close}: {problem}")
        with connect(srv.port) as sock:
            sock.sendall(V2_TCP4 + request(close=True))
            assert read_one(sock)[1]["client"] == ["203.0.113.7", 4711]
    assert not problems, "\n".join(problems[:10])


def test_the_fuzz_reaches_every_outcome():
    """The mutations are not all alike: some stay valid, some break the header (checked offline)."""
    from asgi_worker.errors import MalformedRequest
    from asgi_worker.http.proxy_protocol import parse_proxy_header

    outcomes = set()
    for data, _half_close in fuzz_inputs():
        try:
            outcomes.add("valid" if parse_proxy_header(data, "auto") else "unfinished")
        except MalformedRequest:
            outcomes.add("malformed")
    assert outcomes == {"valid", "unfinished", "malformed"}
