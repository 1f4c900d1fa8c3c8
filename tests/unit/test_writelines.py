"""``flow.writelines_of``: the transport's own ``writelines`` only where it pauses the protocol.

CPython 3.12.0-3.12.8 and 3.13.0-3.13.1 have a selector-transport ``writelines`` that never calls
``pause_writing`` (gh-127655); a large streamed response would then be buffered whole while the
client reads nothing. Real transports on a socket pair, no mocks of the transport itself.
"""

from __future__ import annotations

import asyncio
import socket

import uvloop

from asgi_worker import flow

HIGH = 65536
PIECE = b"x" * HIGH


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.paused = False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


def _paused_after_writelines(loop_factory, monkeypatch, pauses: bool | None) -> tuple[bool, bool]:
    """Whether the protocol was paused after writing 4 MiB nobody reads; and whether the
    transport's own writelines was chosen."""
    if pauses is not None:
        monkeypatch.setattr(flow, "_STDLIB_WRITELINES_PAUSES", pauses)
    loop = loop_factory()
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:

        async def main() -> tuple[bool, bool]:
            transport, protocol = await loop.connect_accepted_socket(Recorder, ours)
            transport.set_write_buffer_limits(HIGH, HIGH // 4)
            writelines = flow.writelines_of(transport)
            own = getattr(writelines, "__self__", None) is transport
            writelines([PIECE] * 64)
            paused = protocol.paused
            transport.abort()
            return paused, own

        return loop.run_until_complete(main())
    finally:
        theirs.close()
        loop.close()


def test_uvloop_keeps_its_writelines_and_pauses(monkeypatch):
    assert _paused_after_writelines(uvloop.new_event_loop, monkeypatch, False) == (True, True)


def test_the_stdlib_transport_pauses_on_this_python(monkeypatch):
    """Its own writelines where this CPython's pauses; joined where it would not (3.12.1 here)."""
    paused, own = _paused_after_writelines(asyncio.new_event_loop, monkeypatch, None)
    assert paused
    assert own is flow._STDLIB_WRITELINES_PAUSES


def test_joined_pieces_pause_the_stdlib_transport(monkeypatch):
    paused, own = _paused_after_writelines(asyncio.new_event_loop, monkeypatch, False)
    assert (paused, own) == (True, False)
