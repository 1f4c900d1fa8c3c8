"""Graceful shutdown (1012 both ways, the app task given its grace then cancelled), keepalive pings
and their timeout (1011), and a close handshake the peer never finishes, on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from websockets.exceptions import ConnectionClosed

import asgi_worker.ws.connection
from tests.conftest import read_response
from tests.timing import TICK, TIMEOUT
from tests.ws.apps import Recorder, client, echo_app
from tests.ws.frames import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    close_payload,
    encode_frame,
    handshake_request,
    open_raw,
    parse_close,
)


def address(srv):
    return ("127.0.0.1", srv.port)


def stop_in_background(srv):
    """Ask the server to stop (as a signal would) without leaving the ``serve`` block."""
    srv.server.should_exit = True


def test_shutdown_closes_with_1012_and_the_app_hears_1012(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv, client(srv) as ws:
        ws.send("before")
        assert ws.recv(timeout=TIMEOUT) == "before"
        stop_in_background(srv)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1012
        assert recorder.disconnect() == {"type": "websocket.disconnect", "code": 1012, "reason": ""}


def test_shutdown_exact_close_frame(serve):
    recorder = Recorder()
    with serve(echo_app(recorder)) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            stop_in_background(srv)
            frame = reader.frame()
            assert frame.opcode == CLOSE and parse_close(frame.payload) == (1012, "")
            sock.sendall(encode_frame(CLOSE, close_payload(1012)))
            assert reader.at_eof()
    assert recorder.disconnect()["code"] == 1012


def test_shutdown_waits_for_the_app_then_cancels_it(serve):
    recorder = Recorder()
    grace = 5 * TICK

    async def stubborn(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        recorder.add(await receive())  # 1012
        try:
            await asyncio.sleep(10 * TIMEOUT)  # ignores the disconnect
        except asyncio.CancelledError:
            recorder.add("cancelled")
            raise

    with serve(stubborn, timeout_graceful_shutdown=grace) as srv, client(srv) as ws:
        stop_in_background(srv)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1012
        assert recorder.disconnect()["code"] == 1012
        started = time.monotonic()
        items = recorder.wait_len(2)
        waited = time.monotonic() - started
    assert items[-1] == "cancelled"
    assert grace / 2 <= waited < grace + TIMEOUT / 2


def test_shutdown_lets_the_app_finish_within_the_grace(serve):
    recorder = Recorder()

    async def tidy(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        recorder.add(await receive())
        await asyncio.sleep(2 * TICK)  # cleanup after the disconnect
        recorder.add("finished")

    with serve(tidy, timeout_graceful_shutdown=TIMEOUT) as srv, client(srv) as ws:
        stop_in_background(srv)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert recorder.wait_len(2)[-1] == "finished"


def test_shutdown_during_the_handshake_is_503(serve):
    recorder = Recorder()

    async def undecided(scope, receive, send):
        recorder.add(await receive())
        recorder.add(await receive())  # never accepts: the shutdown reaches it here

    with serve(undecided, date_header=False) as srv, srv.connect() as sock:
        sock.sendall(handshake_request())
        recorder.wait_len(1)
        stop_in_background(srv)
        response = read_response(sock)
        assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert recorder.disconnect()["code"] == 1012


def test_exiting_serve_with_a_client_connected(serve):
    recorder = Recorder()
    with contextlib.ExitStack() as stack:
        with serve(echo_app(recorder)) as srv:
            ws = stack.enter_context(client(srv))
            ws.send("hello")
            assert ws.recv(timeout=TIMEOUT) == "hello"
        # The server has stopped; the client's thread answered its close meanwhile.
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1012
    assert recorder.disconnect()["code"] == 1012


PING_INTERVAL = PING_TIMEOUT = 3 * TICK


def test_ping_timeout_is_1011(serve):
    recorder = Recorder()
    settings = {"ws_ping_interval": PING_INTERVAL, "ws_ping_timeout": PING_TIMEOUT}
    with serve(echo_app(recorder), **settings) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            started = time.monotonic()
            ping = reader.frame()
            assert ping.opcode == PING and len(ping.payload) == 4
            close = reader.frame()  # we never answer the ping
            elapsed = time.monotonic() - started
            assert close.opcode == CLOSE and parse_close(close.payload)[0] == 1011
            assert PING_INTERVAL + PING_TIMEOUT * 0.9 <= elapsed < PING_INTERVAL + PING_TIMEOUT + 10 * TICK
            sock.sendall(encode_frame(CLOSE, close_payload(1011)))
            assert reader.at_eof()
    assert recorder.disconnect()["code"] == 1011


def test_answered_pings_keep_the_connection_open(serve):
    recorder = Recorder()
    settings = {"ws_ping_interval": PING_INTERVAL, "ws_ping_timeout": PING_TIMEOUT}
    with serve(echo_app(recorder), **settings) as srv:
        sock, _, reader = open_raw(address(srv))
        with sock:
            for _ in range(4):  # well past interval + timeout
                ping = reader.frame()
                assert ping.opcode == PING
                sock.sendall(encode_frame(PONG, ping.payload))
            sock.sendall(encode_frame(TEXT, b"still here"))
            assert reader.frame().payload == b"still here"
    assert recorder.items[0] == {"type": "websocket.receive", "text": "still here"}


def test_websockets_client_answers_pings(serve, caplog):
    settings = {"ws_ping_interval": PING_INTERVAL, "ws_ping_timeout": PING_TIMEOUT}
    with (
        caplog.at_level(logging.DEBUG, logger="websockets.client"),
        serve(echo_app(), **settings) as srv,
        client(srv) as ws,
    ):
        time.sleep(2 * (PING_INTERVAL + PING_TIMEOUT))  # idle past a ping timeout: only pongs keep it open
        ws.send("alive")
        assert ws.recv(timeout=TIMEOUT) == "alive"
    frames = [r.getMessage().split()[:2] for r in caplog.records if r.name == "websockets.client"]
    assert frames.count(["<", "PING"]) >= 2, frames  # the server pinged the idle client...
    assert frames.count([">", "PONG"]) == frames.count(["<", "PING"])  # ...and each ping was answered


def test_unfinished_close_handshake_is_cut_off(serve, monkeypatch):
    close_timeout = 5 * TICK
    monkeypatch.setattr(asgi_worker.ws.connection, "CLOSE_TIMEOUT", close_timeout)
    recorder = Recorder()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001})
        recorder.add(await receive())

    with serve(app) as srv:
        assert srv.server._tick_interval <= close_timeout / 2  # the sweep is fine enough to see it
        sock, _, reader = open_raw(address(srv))
        with sock:
            close = reader.frame()
            started = time.monotonic()
            assert parse_close(close.payload)[0] == 4001
            assert reader.at_eof(timeout=TIMEOUT)  # we never answer: the server aborts
            elapsed = time.monotonic() - started
        assert close_timeout * 0.8 <= elapsed < close_timeout + 5 * TICK
        assert recorder.disconnect()["code"] == 1005
