"""Large messages over real sockets on every backend: payloads read in place (``wire.py``) must
arrive whole and in order whatever the chunking, through TLS and deflate too, and a peer that
vanishes inside one loses nothing else."""

from __future__ import annotations

import os
import random
import ssl
import time

import pytest

from asgi_worker.ws.wire import EAGER_PAYLOAD, LARGE_PAYLOAD
from tests.timing import TICK, TIMEOUT
from tests.ws.apps import Recorder, client, echo_app
from tests.ws.frames import BINARY, CONT, TEXT, encode_frame, open_raw

BIG = 2 * EAGER_PAYLOAD + 12345  # regrown while it arrives


def address(srv):
    return ("127.0.0.1", srv.port)


def test_a_large_frame_trickling_in_odd_chunks_is_echoed_whole(serve):
    payload = os.urandom(BIG)
    data = encode_frame(BINARY, payload)
    rng = random.Random(7)
    with serve(echo_app(), ws_max_size=4 * BIG) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            at = 0
            while at < len(data):
                size = rng.choice([1, 13, 1400, 65536, 300_000])
                sock.sendall(data[at : at + size])
                at += size
                if rng.random() < 0.05:
                    time.sleep(TICK / 100)  # pacing under test: the server reads a partial payload
            assert reader.frame() == (True, BINARY, payload, False)


def test_large_frames_back_to_back_are_echoed_in_order(serve):
    payloads = [os.urandom(size) for size in (LARGE_PAYLOAD, 5, EAGER_PAYLOAD + 1, LARGE_PAYLOAD - 1, BIG)]
    with serve(echo_app(), ws_max_size=4 * BIG) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.sendall(b"".join(encode_frame(BINARY, payload) for payload in payloads))
            for payload in payloads:
                assert reader.frame() == (True, BINARY, payload, False)


def test_a_large_fragmented_text_message_is_reassembled(serve):
    text = "ünïcödé ✓ 🎉 " * (EAGER_PAYLOAD // 8)
    data = text.encode()
    thirds = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3], data[2 * len(data) // 3 :]]
    recorder = Recorder()
    with serve(echo_app(recorder), ws_max_size=4 * len(data)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            sock.sendall(
                encode_frame(TEXT, thirds[0], fin=False)
                + encode_frame(CONT, thirds[1], fin=False)
                + encode_frame(CONT, thirds[2])
            )
            assert reader.frame() == (True, TEXT, data, False)
    assert recorder.wait_len(1)[0] == {"type": "websocket.receive", "text": text}


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_large_messages_with_the_websockets_client(serve, compression):
    payload = os.urandom(BIG)  # incompressible: deflate frames stay large on the wire
    with (
        serve(echo_app(), ws_max_size=4 * BIG) as srv,
        client(srv, max_size=None, compression=compression) as ws,
    ):
        for _ in range(3):
            ws.send(payload)
            assert ws.recv(timeout=TIMEOUT) == payload


def test_large_messages_over_tls(serve, tls_files):
    context = ssl.create_default_context(cafile=tls_files["ca"])
    payload = os.urandom(BIG)
    tls = {"ssl_certfile": tls_files["cert"], "ssl_keyfile": tls_files["key"]}
    with (
        serve(echo_app(), ws_max_size=4 * BIG, **tls) as srv,
        client(srv, ssl=context, max_size=None, compression=None) as ws,
    ):
        for _ in range(3):
            ws.send(payload)
            assert ws.recv(timeout=TIMEOUT) == payload


def test_a_client_vanishing_inside_a_large_payload_loses_nothing_else(serve):
    recorder = Recorder()
    with serve(echo_app(recorder), ws_max_size=4 * BIG) as srv:
        sock, _, _ = open_raw(address(srv))
        frame = encode_frame(BINARY, os.urandom(BIG))
        sock.sendall(frame[: EAGER_PAYLOAD + 1000])
        sock.close()
        assert recorder.disconnect()["code"] in (1005, 1006)
        assert [item["type"] for item in recorder.items] == ["websocket.disconnect"]
        with client(srv, max_size=None) as ws:  # the server is fine
            ws.send(b"x" * LARGE_PAYLOAD)
            assert ws.recv(timeout=TIMEOUT) == b"x" * LARGE_PAYLOAD
