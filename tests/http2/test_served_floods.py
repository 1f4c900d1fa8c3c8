"""Every HTTP/2 flood of issue 17 over a real socket: refused with its code in bounded time, while a
well-behaved client on another connection keeps being served."""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from asgi_worker.http2.events import ErrorCode
from asgi_worker.http2.session import REFUSALS
from tests.conftest import RunningServer
from tests.core.test_control_single import Scrape, control, control_address, settles
from tests.http2.peer import PREFACE, H2Peer
from tests.http2.served import LOOPS, MIB, app, h2_server, peer
from tests.timing import TICK, TIMEOUT

CALM = ErrorCode.ENHANCE_YOUR_CALM


class GoodClient:
    """A thread that keeps sending requests on its own connection and checks every answer."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with peer(self.server) as client:
            while not self._stop.is_set():
                response = client.response(client.request(b"/good"))
                if response.status != 200 or not response.ended:
                    self.failures.append(client.summary())
                    return
                self.answered += 1
                time.sleep(TICK / 10)

    @contextlib.contextmanager
    def running(self) -> Iterator[GoodClient]:
        """Serve it before the block, during it, and after it."""
        self._thread.start()
        assert wait_for(lambda: self.answered > 0 or self.failures), "the good client was never answered"
        yield self
        before = self.answered
        assert wait_for(lambda: self.answered > before or self.failures), "the good client stalled"
        self._stop.set()
        self._thread.join(TIMEOUT)
        assert not self.failures, self.failures


def wait_for(condition: Callable[[], object], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(TICK / 20)
    return True


def refused(server: RunningServer, frames: Callable[[H2Peer], list[Frame]], code: int) -> float:
    """Send the flood in one write; the seconds until the server's GOAWAY with ``code`` and close."""
    with peer(server) as attacker, GoodClient(server).running():
        start = time.monotonic()
        attacker.send_frames(frames(attacker))
        closed = attacker.read_until_closed()
        elapsed = time.monotonic() - start
        assert closed, f"the server kept the connection: {attacker.summary()}"
        assert attacker.goaway_code() == code, attacker.summary()
    return elapsed


def request_headers(
    client: H2Peer, stream_id: int, path: bytes = b"/", end_stream: bool = True
) -> list[Frame]:
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", path)]
    return client.header_frames(stream_id, fields, end_stream)


def rapid_reset(client: H2Peer) -> list[Frame]:
    frames: list[Frame] = []
    for index in range(1000):
        stream_id = 2 * index + 1
        frames += request_headers(client, stream_id, b"/echo")
        frames.append(RstStreamFrame(stream_id, ErrorCode.CANCEL))
    return frames


def settings_flood(client: H2Peer) -> list[Frame]:
    return [SettingsFrame(0) for _ in range(1000)]


def ping_flood(client: H2Peer) -> list[Frame]:
    return [PingFrame(0, b"%08d" % i) for i in range(1000)]


def continuation_flood(client: H2Peer) -> list[Frame]:
    """A header block that never ends (no END_HEADERS), in small frames (CVE-2024-27316 and kin)."""
    first = request_headers(client, 1)[0]
    first.flags.discard("END_HEADERS")
    return [first] + [ContinuationFrame(1, b"\x40\x01x\x01y") for _ in range(1000)]


def hpack_bomb(client: H2Peer) -> list[Frame]:
    """A few KiB of HPACK that decode to 4 MB: one 4000-byte field indexed once, referenced 1000 times."""
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
    block = client.encoder.encode(fields + [(b"x-bomb", b"b" * 4000)] * 1000)
    assert len(block) < 8000
    return [HeadersFrame(1, block, flags={"END_HEADERS", "END_STREAM"})]


def empty_data_flood(client: H2Peer) -> list[Frame]:
    return request_headers(client, 1, b"/echo", end_stream=False) + [DataFrame(1, b"") for _ in range(1000)]


FLOODS = {
    "rapid_reset": (rapid_reset, CALM),
    "settings": (settings_flood, CALM),
    "ping": (ping_flood, CALM),
    "continuation": (continuation_flood, CALM),
    "hpack_bomb": (hpack_bomb, CALM),
    "empty_data": (empty_data_flood, CALM),
}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("flood", sorted(FLOODS))
def test_a_flood_is_refused_while_others_are_served(flood, loop):
    frames, code = FLOODS[flood]
    with h2_server(app, loop) as server:
        elapsed = refused(server, frames, code)
    assert elapsed < TIMEOUT / 2, elapsed


@pytest.mark.parametrize("loop", LOOPS)
def test_a_peer_that_never_opens_its_window_has_the_stream_reset(loop):
    timeout = 5 * TICK
    with (
        h2_server(app, loop, timeout_request_body=timeout) as server,
        peer(server, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}) as stingy,
        GoodClient(server).running(),
    ):
        start = time.monotonic()
        stream = stingy.request(b"/big?%d" % MIB)
        response = stingy.response(stream, TIMEOUT * 2)
        elapsed = time.monotonic() - start
    assert response.status == 200 and not response.body
    assert response.reset == ErrorCode.CANCEL
    assert timeout <= elapsed < timeout + TIMEOUT, elapsed


@pytest.mark.parametrize("loop", LOOPS)
def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(loop):
    timeout = 5 * TICK
    with (
        h2_server(app, loop, timeout_keep_alive=timeout) as server,
        peer(server) as idle,
        GoodClient(server).running(),
    ):
        start = time.monotonic()
        assert idle.response(idle.request(b"/first")).status == 200
        assert idle.read_until_closed(timeout + TIMEOUT)
        elapsed = time.monotonic() - start
    assert idle.goaway_code() == ErrorCode.NO_ERROR
    assert idle.goaway is not None and idle.goaway.last_stream_id == 1
    assert timeout <= elapsed < timeout + TIMEOUT, elapsed


REFUSALS_TOTAL = "asgi_server_http2_refusals_total"


def test_refusals_are_counted_by_kind_in_the_scrape():
    """A stream past the concurrent limit and a PING flood: each counted once, under its kind, by the
    time the client sees the refusal; the scrape passes promtool with the family filled."""
    assert {"ping_flood", "too_many_streams"} <= set(REFUSALS)
    with h2_server(app, control_bind="127.0.0.1:0", http2_max_concurrent_streams=1) as server:
        address = control_address(server)
        assert Scrape(address).value(REFUSALS_TOTAL) == 0
        with peer(server) as client:
            held = client.request(b"/sleep?0.5")
            over = client.request(b"/")
            assert client.read(lambda: client.streams[over].done), client.summary()
            assert client.streams[over].reset == ErrorCode.REFUSED_STREAM, client.summary()
            assert Scrape(address).value(REFUSALS_TOTAL, kind="too_many_streams") == 1
            assert client.response(held).status == 200
        with peer(server) as attacker:
            attacker.send_frames(ping_flood(attacker))
            assert attacker.read_until_closed(), attacker.summary()
            assert attacker.goaway_code() == CALM, attacker.summary()
        assert settles(address, "asgi_server_open_connections", 0) == 0  # both closed on our side too
        body = control(address, "/metrics")[2]
        scrape = Scrape(address)
    assert b'asgi_server_http2_refusals_total{kind="ping_flood"} 1.0' in body
    assert b'asgi_server_http2_refusals_total{kind="too_many_streams"} 1.0' in body
    counted = {s.labels["kind"]: s.value for s in scrape.samples if s.name == REFUSALS_TOTAL}
    assert counted == {"ping_flood": 1, "too_many_streams": 1}  # nothing more at the connections' close
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=body, capture_output=True, timeout=TIMEOUT
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


# The payload size each fixed-size frame type must have (RFC 9113 6.3, 6.4, 6.7, 6.9).
FIXED_SIZES = {2: 5, 3: 4, 6: 8, 8: 4}
# A request header block (HPACK: GET, http, /, then a literal :authority "a").
HEADER_BLOCK = bytes.fromhex("828684") + b"\x41\x01a"


def random_frames(rng: random.Random) -> bytes:
    """Bytes after the preface: noise, or frames of any type, flags and stream, most of them the
    right size for their type so that they get past the frame checks into the session."""
    if rng.random() < 0.2:
        return rng.randbytes(rng.randint(1, 200))
    out = bytearray()
    if rng.random() < 0.5:  # a request on stream 1 first: frames on stream 1 are then in order
        out += len(HEADER_BLOCK).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01" + HEADER_BLOCK
    for _ in range(rng.randint(1, 12)):
        kind = rng.choice([0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, rng.randint(10, 255)])
        size = FIXED_SIZES.get(kind, rng.choice([0, 6, 12, rng.randint(0, 64)]))
        if rng.random() < 0.1:
            size = rng.randint(0, 64)
        payload = HEADER_BLOCK if kind in (1, 9) and rng.random() < 0.6 else rng.randbytes(size)
        stream_id = rng.choice([0, 1, 1, 3, 5, 2, rng.randint(0, 2**31 - 1)])
        flags = rng.choice([0, 1, 4, 5, rng.randint(0, 255)])
        out += len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload
    return bytes(out)


def test_a_wire_fuzz_never_hangs_the_server_nor_logs_an_error(caplog):
    """300 seeded random byte sequences after a valid preface and SETTINGS, each on its own
    connection half-closed after it: the server closes each within the time limit, logs no ERROR,
    and keeps answering a good client."""
    rng = random.Random(1717)
    with (
        caplog.at_level(logging.DEBUG, logger="asgi_worker"),
        h2_server(app, timeout_keep_alive=TIMEOUT) as server,
        GoodClient(server).running(),
    ):
        for case in range(300):
            data = random_frames(rng)
            with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
                sock.sendall(PREFACE + SettingsFrame(0).serialize() + data)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + TIMEOUT
                received = b""
                try:
                    while chunk := sock.recv(65536):
                        received += chunk
                        assert time.monotonic() < deadline, f"case {case}: still open, {data.hex()}"
                except ConnectionResetError:
                    pass
                except TimeoutError:
                    pytest.fail(f"case {case}: the server neither answered nor closed: {data.hex()}")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
