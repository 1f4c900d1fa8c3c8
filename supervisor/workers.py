"""Worker processes: the arbiter's record of each, and what a forked child runs.

A worker is forked (never spawned) after the supervisor has bound the listening sockets, so it
inherits them and, with ``--preload``, the imported app. In the child:
- signals go back to their defaults, then the server installs its own: SIGTERM graceful, SIGQUIT
  quick, SIGUSR1 reopen log files; SIGUSR2 dumps every thread's stack (faulthandler, which works
  even while the event loop is blocked in C code, e.g. ``time.sleep``);
- the child leaves the supervisor's process group, so a terminal's Ctrl-C reaches the supervisor
  alone, which then tells each worker once;
- ``ASGI_WORKER_SLOT`` (stable index, 0..N-1) and ``ASGI_WORKER_GENERATION`` (rolling restarts so
  far) are set before the app is imported;
- the event loop is created here, in the child, never inherited;
- the worker exits with ``exitcodes``: BOOT_ERROR or CONFIG_ERROR before it was ready stops the
  supervisor instead of a restart loop. It also exits when the supervisor dies (no orphans).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgi_worker.config import Config
from asgi_worker.errors import AppLoadError, ConfigError
from asgi_worker.exitcodes import BOOT_ERROR, CONFIG_ERROR, OK
from asgi_worker.log import tag_lines_with_pid
from asgi_worker.loops import loop_factory, run_on_new_loop
from asgi_worker.server import DRAIN_IDLE_GRACE, Server
from supervisor.heartbeat import Beacon, BeaconReader
from supervisor.policy import WorkerState, WorkerView

__all__ = ["WorkerRecord", "fork_worker", "set_supervisor_title", "set_title"]

# Seconds between two metrics snapshots a worker sends (when something changed): what a scrape may
# lag behind; Prometheus scrapes every 15 s or so.
METRICS_INTERVAL = 1.0
# Seconds an exiting worker waits for its last snapshot to be taken by the pipe.
FINAL_FLUSH = 1.0


@dataclass
class WorkerRecord(WorkerView):
    """One worker as the arbiter tracks it."""

    requests: int = 0  # as of its last heartbeat
    reader: BeaconReader | None = None
    metrics: dict[str, Any] | None = None  # its latest snapshot (--control-bind)
    leaving: str | None = None  # why it is being replaced, as the restarts metric says it


def fork_worker(
    config: Config,
    sockets: list[socket.socket],
    slot: int,
    generation: int,
    close_in_child: Callable[[], None],
    now: float,
) -> WorkerRecord:
    """Fork a worker for ``slot``; returns its record (BOOTING). The child never returns from here."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor_pid = os.getpid()  # taken before the fork: the child's getppid() may already be 1
    pid = os.fork()
    if pid == 0:  # the child
        code = CONFIG_ERROR
        try:
            os.close(read_fd)
            close_in_child()
            code = run_worker(config, sockets, Beacon(write_fd), slot, generation, supervisor_pid)
        except BaseException:  # never unwind into the supervisor's code in a forked child
            logging.getLogger("asgi_worker.error").exception("Worker %d crashed", os.getpid())
        finally:
            logging.shutdown()
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    return WorkerRecord(
        pid=pid,
        slot=slot,
        state=WorkerState.BOOTING,
        started=now,
        last_beat=now,
        reader=BeaconReader(read_fd),
    )


def run_worker(
    config: Config,
    sockets: list[socket.socket],
    beacon: Beacon,
    slot: int,
    generation: int,
    supervisor_pid: int,
) -> int:
    """The child's main: load the app (unless preloaded), serve the sockets, return the exit code."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    tag_lines_with_pid()
    os.environ["ASGI_WORKER_SLOT"] = str(slot)
    os.environ["ASGI_WORKER_GENERATION"] = str(generation)
    set_title(f"asgi-supervise: worker {slot} [{_app_name(config)}]")
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):  # the supervisor's, not ours
        signal.signal(signum, signal.SIG_IGN)
    try:
        config.load()
    except (AppLoadError, ConfigError) as exc:
        logging.getLogger("asgi_worker.error").error("Worker %d failed to load: %s", os.getpid(), exc)
        return exc.exit_code
    if os.getppid() != supervisor_pid:  # the supervisor died while we were booting
        return OK
    server = WorkerServer(config, beacon, supervisor_pid)
    run_on_new_loop(server.serve(sockets=sockets), loop_factory(config.loop))
    return OK if server.started else BOOT_ERROR


class WorkerServer(Server):
    """An asgi_worker ``Server`` that reports to the arbiter and takes the supervisor's signals."""

    def __init__(self, config: Config, beacon: Beacon, supervisor_pid: int) -> None:
        super().__init__(config)
        self._beacon = beacon
        self._supervisor_pid = supervisor_pid
        self.drain_idle_grace = DRAIN_IDLE_GRACE
        self.limit_reached_callback = self._ask_recycling
        self.serve_control = False  # the supervisor serves it, and waits the shutdown delay
        self.shutdown_delay = 0.0
        self._metrics_on = config.control_bind is not None
        self._metrics_sent = ""
        self._metrics_at = 0.0

    def _ask_recycling(self) -> None:
        self._beacon.send("recycle", "max-requests")

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._beacon.send("ready")

    def on_tick(self) -> None:
        super().on_tick()
        self._beacon.send("beat", self.server_state.total_requests, droppable=True)
        # Ticks come just after each second turns, so two of them can be a hair under a second apart:
        # 0.9 of the interval keeps the cadence at one snapshot a second rather than one every two.
        if self._metrics_on and self.last_tick - self._metrics_at >= METRICS_INTERVAL * 0.9:
            self._metrics_at = self.last_tick
            self._send_metrics()
        if os.getppid() != self._supervisor_pid and not self.should_exit:
            logging.getLogger("asgi_worker.error").warning("Supervisor is gone: worker %d stops", os.getpid())
            self.should_exit = True

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets=sockets)
        if self._metrics_on:  # the last word: every request of this worker is in it
            self._send_metrics(final=True)
            self._beacon.flush(FINAL_FLUSH)

    def _send_metrics(self, final: bool = False) -> None:
        """Send the snapshot if it changed since the last one the pipe took (always, when ``final``)."""
        text = json.dumps(self.metrics_snapshot(), separators=(",", ":"))
        if (text != self._metrics_sent or final) and self._beacon.send("metrics", text, droppable=not final):
            self._metrics_sent = text

    def signal_handlers(self) -> dict[signal.Signals, Callable[[], None]]:
        """SIGTERM/SIGINT graceful, SIGQUIT quick, SIGUSR1 reopen logs; each only sets flags."""
        return {
            signal.SIGTERM: lambda: self.handle_exit(signal.SIGTERM, None),
            signal.SIGINT: lambda: self.handle_exit(signal.SIGINT, None),
            signal.SIGQUIT: self._quick_stop,
            signal.SIGUSR1: reopen_log_files,
        }

    def _quick_stop(self) -> None:
        self.should_exit = True
        self.handle_exit(signal.SIGQUIT, None)  # a second request: stop waiting for in-flight work


def reopen_log_files() -> None:
    """SIGUSR1: reopen every file a logging handler writes to (after logrotate moved it)."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    handler.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()


def _app_name(config: Config) -> str:
    return config.app if isinstance(config.app, str) else "app"


def set_supervisor_title(config: Config) -> None:
    """The supervisor's process title, where setproctitle is installed."""
    set_title(f"asgi-supervise: supervisor [{_app_name(config)}]")


def set_title(title: str) -> None:
    """Show ``title`` in ps/top instead of the command line (only if setproctitle is installed)."""
    try:
        import setproctitle  # type: ignore[import-not-found]  # optional: role and app in ps/top
    except ImportError:
        return
    setproctitle.setproctitle(title)
