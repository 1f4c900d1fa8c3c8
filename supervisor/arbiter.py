"""The arbiter: the supervisor's main loop. It waits, learns, asks the policy, and executes.

Invariants of the loop (the decisions themselves are ``policy.decide``):
- One iteration: wait (signals via the wakeup pipe, worker messages, or at most ``_POLL``
  seconds) -> take recorded signals -> read every worker's messages -> reap exited children ->
  decide -> execute. Signal handlers never act (``signals.py``); SIGCHLD only wakes the loop, so
  a dead worker is noticed and replaced within one iteration.
- The listening sockets are bound once, before the first fork, and never closed while serving:
  a draining worker closes its own copy only, the backlog stays with the others.
- A worker that exits with a boot or config error before it was ever ready halts the supervisor
  (exit 3) instead of being forked again and again.
- Stopping is one-way: a graceful stop drains every worker, a second SIGINT or a SIGQUIT makes
  it quick; stragglers are killed at their deadline; the loop ends when no worker is left. With
  ``--shutdown-delay`` the first SIGTERM/SIGINT makes ``/readyz`` 503 at once and the workers
  serve on, untouched, for the delay; then the drain begins (a second signal begins it at once).
- The control listener (``--control-bind``) is served by this loop (``telemetry.py``): its
  descriptors join the wait (``wait_ready``), and its requests are answered at the end of the
  iteration, after the signals and worker messages of that iteration were taken (so ``/readyz``
  is 503 in the very iteration that took SIGTERM).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from typing import Any

from asgi_worker.config import Config
from asgi_worker.control.listener import wait_ready
from asgi_worker.exitcodes import BOOT_ERROR, CONFIG_ERROR, OK
from asgi_worker.listeners import open_listeners, socket_url
from supervisor.config import DEFAULT_GRACEFUL_TIMEOUT, SupervisorConfig
from supervisor.policy import DUMP_GRACE, Action, WorkerState, decide
from supervisor.signals import Command, SignalInbox, command_for
from supervisor.telemetry import SupervisorEndpoints
from supervisor.workers import WorkerRecord, fork_worker, reopen_log_files, set_supervisor_title

__all__ = ["Supervisor"]

logger = logging.getLogger("asgi_worker.supervisor")

_POLL = 0.5  # longest wait of one iteration: bounds how late a deadline or a heartbeat check is
_QUICK_DEADLINE = 5.0  # seconds a quick-stopped worker gets before SIGKILL
_KILL_MARGIN = 2.0  # seconds past the graceful timeout before the supervisor kills a draining worker
_MEMORY_CHECK = 1.0  # seconds between RSS checks
_STATUS_INTERVAL = 5.0  # seconds between systemd STATUS= updates


class Supervisor:
    """Runs the workers of one ``Config`` until stopped. ``run()`` returns the process exit code."""

    def __init__(self, config: Config, settings: SupervisorConfig, inbox: SignalInbox | None = None) -> None:
        self.config = config
        self.settings = settings
        self.target = settings.workers
        self.workers: dict[int, WorkerRecord] = {}
        self.generation = 0
        self._requests_of_gone = 0  # requests served by workers that have exited
        self.stopping = False
        self.quick = False
        self.halt_reason: str | None = None
        self.sockets: list[socket.socket] = []
        # Given by the command when it installed the handlers before anything slow (an app import
        # under --preload): a SIGTERM that came meanwhile is in it, and stops us before any fork.
        self._inbox: SignalInbox | None = inbox
        self._notifier: Any = None
        self._ready_announced = False
        self._rolling = False
        self._last_memory_check = 0.0
        self._last_status = 0.0
        self._last_watchdog = 0.0
        self._watcher: Any = None
        self._reload_changes: list[Any] = []  # appended by the watcher thread, taken by the loop
        self._stop_at: float | None = None  # --shutdown-delay: when the drain begins
        self._control: Any = None  # asgi_worker.control.listener.ControlListener
        self._control_ready: set[int] = set()  # its descriptors the poll found ready
        self.telemetry: SupervisorEndpoints | None = None
        graceful = config.timeout_graceful_shutdown
        self.graceful_timeout = DEFAULT_GRACEFUL_TIMEOUT if graceful is None else graceful
        self.boot_timeout = settings.timeout_worker_healthcheck + (config.timeout_lifespan_startup or 60.0)

    # The whole life

    def run(self) -> int:
        """Bind, fork the workers, supervise until stopped; the exit code (0, or 3 after a halt)."""
        from supervisor.pidfile import Pidfile
        from supervisor.systemd import Notifier, listen_fds

        pidfile = Pidfile(self.settings.pid) if self.settings.pid else None
        if self._inbox is None:
            self._inbox = SignalInbox()  # before binding: a signal from now on is recorded, not lost
        self._notifier = Notifier()
        self._notifier.forget_environment()
        scheme = "https" if self.config.is_ssl else "http"
        try:
            self.sockets = listen_fds() or open_listeners(self.config, self.settings.binds)
            if self.config.control_bind is not None:
                self._open_control(scheme)
            if pidfile is not None:
                pidfile.create(os.getpid())
        except BaseException:
            self._inbox.close()
            raise
        set_supervisor_title(self.config)
        try:
            for sock in self.sockets:
                logger.info("Listening on %s", socket_url(sock, scheme))
            logger.info("Supervisor %d started, %d worker(s)", os.getpid(), self.target)
            self._start_reload_watcher()
            self._loop()
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            self._inbox.close()
            if self._control is not None:
                self._control.close()
                if self.config.control_bind and self.config.control_bind.startswith("unix:"):
                    _unlink_quietly(self.config.control_bind[5:])
            for sock in self.sockets:
                sock.close()
            if self.config.uds and not self.settings.binds:
                _unlink_quietly(self.config.uds)
            if pidfile is not None:
                pidfile.remove()
        if self.halt_reason is not None:
            logger.error("Supervisor stopped: %s", self.halt_reason)
            return BOOT_ERROR
        logger.info("Supervisor %d finished", os.getpid())
        return OK

    def _open_control(self, scheme: str) -> None:
        from asgi_worker.control.listener import ControlListener
        from asgi_worker.listeners import bind_address

        address = self.config.control_bind
        assert address is not None
        try:
            sock = bind_address(address, 64, self.config.uds_mode)
        except BaseException:
            for listening in self.sockets:
                listening.close()
            raise
        self.telemetry = SupervisorEndpoints(
            self._alive, self.readiness, self.sockets, [socket_url(s, scheme) for s in self.sockets]
        )
        self._control = ControlListener(sock, self.telemetry)
        logger.info("Control listener on %s (/metrics, /livez, /readyz)", socket_url(sock, "http"))

    def readiness(self) -> tuple[bool, str]:
        """``/readyz``: whether a load balancer should send traffic here, and why (not)."""
        if self.stopping or self._stop_at is not None:
            return False, "stopping"
        ready = sum(1 for w in self._alive() if w.state is WorkerState.READY)
        if not ready:
            return False, "no worker ready"
        return True, f"{ready} worker(s) ready"

    def _loop(self) -> None:
        self._take_signals()  # a stop asked for while we were starting: no worker is forked
        while True:
            now = time.monotonic()
            self._execute(now)
            if self.stopping and not self._alive():
                return
            self._wait()
            self._take_signals()
            self._take_reload_changes()
            self._read_messages(time.monotonic())
            self._reap()
            self._periodic(time.monotonic())
            if self._control is not None:
                self._control.service(self._control_ready)

    def _alive(self) -> list[WorkerRecord]:
        return [w for w in self.workers.values() if w.state is not WorkerState.EXITED]

    def _wait(self) -> None:
        assert self._inbox is not None
        fds = [self._inbox.read_fd] + [w.reader.fd for w in self._alive() if w.reader and not w.reader.closed]
        control_read, control_write = self._control.wanted() if self._control is not None else ([], [])
        timeout = _POLL
        if self._stop_at is not None:
            timeout = max(0.0, min(timeout, self._stop_at - time.monotonic()))
        self._control_ready = wait_ready(fds + control_read, control_write, timeout)

    # Learning what happened

    def _take_signals(self) -> None:
        assert self._inbox is not None
        for signum in self._inbox.take():
            command = command_for(signum)
            if command is Command.CHILD:
                continue  # reaped below, every iteration
            if command is not Command.REOPEN_LOGS:
                logger.info("Received %s: %s", signal.Signals(signum).name, command.value)
            self._apply(command, signum)

    def _apply(self, command: Command, signum: int) -> None:
        if command is Command.STOP:
            if self.stopping and signum == signal.SIGINT:
                self.quick = True
            delay = self.config.shutdown_delay
            if delay and self._stop_at is None and not self.stopping and self._alive():
                self._stop_at = time.monotonic() + delay  # /readyz is 503 from now; _periodic drains
                self._notifier.stopping()
                logger.info("Shutdown delay: serving %g s more before draining", delay)
                return
            self._stop()
        elif command is Command.QUICK_STOP:
            self.quick = True
            self._stop()
        elif self.stopping:
            return
        elif command is Command.ROLL:
            self.roll("rolling restart")
        elif command is Command.MORE:
            self.target += 1
        elif command is Command.FEWER:
            self.target = max(1, self.target - 1)
        elif command is Command.REOPEN_LOGS:
            reopen_log_files()
            for worker in self._alive():
                _signal(worker.pid, signal.SIGUSR1)

    def _stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self._notifier.stopping()
        if self.quick:  # a quick stop overrides the drain already under way
            for worker in self._alive():
                if (
                    worker.state is WorkerState.DRAINING
                    and worker.deadline > time.monotonic() + _QUICK_DEADLINE
                ):
                    _signal(worker.pid, signal.SIGQUIT)
                    worker.deadline = time.monotonic() + _QUICK_DEADLINE

    def roll(self, reason: str, leaving: str = "rolling_restart") -> None:
        """Replace every worker, one slot at a time, each replacement ready before the old one drains.
        ``leaving`` is the restarts metric's reason."""
        self.generation += 1
        self._rolling = True
        self._notifier.reloading()
        for worker in self._alive():
            if worker.state is not WorkerState.DRAINING and worker.replace_reason is None:
                worker.replace_reason = reason
                worker.leaving = leaving
        logger.info("Rolling restart to generation %d", self.generation)

    def _read_messages(self, now: float) -> None:
        for worker in self._alive():
            if worker.reader is None or worker.reader.closed:
                continue
            self._take_messages(worker, worker.reader.read(), now)

    def _take_messages(self, worker: WorkerRecord, messages: list[tuple[str, str]], now: float) -> None:
        for kind, value in messages:
            if kind == "beat":
                worker.last_beat = now
                worker.requests = int(value) if value.isdigit() else worker.requests
            elif kind == "metrics":
                try:
                    snapshot = json.loads(value)
                except ValueError:
                    continue
                if isinstance(snapshot, dict):
                    worker.metrics = snapshot
            elif kind == "ready" and worker.state is WorkerState.BOOTING:
                worker.state = WorkerState.READY
                worker.last_beat = now
                logger.info("Worker %d (slot %d) is ready", worker.pid, worker.slot)
            elif kind == "recycle" and worker.replace_reason is None and not self.stopping:
                worker.replace_reason = value or "recycle"
                worker.leaving = "max_requests"
                logger.info("Worker %d (slot %d) asks to be recycled: %s", worker.pid, worker.slot, value)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.get(pid)
            if worker is not None:
                self._exited(worker, status)
            else:  # not ours: an orphan re-parented to us (we are PID 1 in a container)
                logger.debug("Reaped process %d (not a worker)", pid)

    def _exited(self, worker: WorkerRecord, status: int) -> None:
        was = worker.state
        worker.state = WorkerState.EXITED
        if worker.reader is not None:
            self._take_messages(worker, worker.reader.read(), time.monotonic())  # its last snapshot
            worker.reader.close()
        self._requests_of_gone += worker.requests
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        expected = was is WorkerState.DRAINING or worker.dumped
        if self.telemetry is not None:
            leaving = worker.leaving if expected else "crash"
            self.telemetry.worker_left(worker, None if self.stopping else leaving)
        log = logger.info if expected else logger.error
        log("Worker %d (slot %d, %s) %s", worker.pid, worker.slot, was.value, how)
        del self.workers[worker.pid]
        if was is WorkerState.BOOTING and code in (BOOT_ERROR, CONFIG_ERROR) and not self.stopping:
            self.halt_reason = f"worker {worker.pid} failed to boot (exit code {code}); see the lines above"
            self.quick = True
            self._stop()

    def _periodic(self, now: float) -> None:
        if self._stop_at is not None and now >= self._stop_at and not self.stopping:
            self._stop()
        settings = self.settings
        if settings.max_worker_memory and now - self._last_memory_check >= _MEMORY_CHECK:
            self._last_memory_check = now
            self._check_memory(settings.max_worker_memory * 1024 * 1024)
        serving = [w for w in self._alive() if w.state is WorkerState.READY and w.replace_reason is None]
        all_ready = len(serving) >= self.target and not self.stopping
        if all_ready and (not self._ready_announced or self._rolling):
            self._ready_announced = True
            self._rolling = False
            self._notifier.ready(self._status_text())
            logger.info("All %d worker(s) ready", self.target)
        if self._notifier.enabled and now - self._last_status >= _STATUS_INTERVAL:
            self._last_status = now
            self._notifier.status(self._status_text())
        interval = self._notifier.watchdog_interval()
        if interval and now - self._last_watchdog >= interval:
            self._last_watchdog = now
            self._notifier.watchdog()

    def _status_text(self) -> str:
        alive = self._alive()
        served = self._requests_of_gone + sum(w.requests for w in alive)
        return f"{len(alive)} workers, {served} requests served"

    def _check_memory(self, limit: float) -> None:
        import psutil

        for worker in self._alive():
            if worker.state is not WorkerState.READY or worker.replace_reason is not None:
                continue
            try:
                rss = psutil.Process(worker.pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > limit:
                worker.replace_reason = f"memory {rss / 1024 / 1024:.0f} MB over {limit / 1024 / 1024:.0f} MB"
                worker.leaving = "memory"
                logger.warning("Worker %d (slot %d): %s", worker.pid, worker.slot, worker.replace_reason)

    # Acting

    def _execute(self, now: float) -> None:
        decision = decide(
            list(self.workers.values()),
            now,
            self.target,
            self.settings.timeout_worker_healthcheck,
            self.boot_timeout,
            self.stopping,
            self.quick,
        )
        for action, target, reason in decision.actions:
            if action is Action.SPAWN:
                self._spawn(target, now)
                continue
            worker = self.workers.get(target)
            if worker is None:
                continue
            if action is Action.DRAIN:
                logger.info("Stopping worker %d (slot %d): %s", worker.pid, worker.slot, reason)
                if worker.slot >= self.target:
                    worker.leaving = "scale"
                worker.state = WorkerState.DRAINING
                worker.deadline = now + self.graceful_timeout + _KILL_MARGIN
                _signal(worker.pid, signal.SIGTERM)
            elif action is Action.QUICK:
                worker.state = WorkerState.DRAINING
                worker.deadline = now + _QUICK_DEADLINE
                _signal(worker.pid, signal.SIGQUIT)
            elif action is Action.DUMP_STACK:
                logger.error(
                    "Worker %d (slot %d): %s, its event loop is blocked; its stack follows, then it goes",
                    worker.pid,
                    worker.slot,
                    reason,
                )
                worker.dumped = True
                worker.leaving = "blocked"
                worker.deadline = now + DUMP_GRACE
                _signal(worker.pid, signal.SIGUSR2)
            elif action is Action.KILL:
                logger.error("Killing worker %d (slot %d): %s", worker.pid, worker.slot, reason)
                if worker.state is not WorkerState.DRAINING:  # blocked, or stuck booting
                    worker.leaving = "blocked"
                worker.deadline = float("inf")  # killed once; reaped when it is gone
                worker.dumped = True
                _signal(worker.pid, signal.SIGKILL)

    def _spawn(self, slot: int, now: float) -> None:
        worker = fork_worker(self.config, self.sockets, slot, self.generation, self._close_in_child, now)
        self.workers[worker.pid] = worker
        logger.info("Started worker %d (slot %d, generation %d)", worker.pid, slot, self.generation)

    def _close_in_child(self) -> None:
        assert self._inbox is not None
        self._inbox.close_in_child()
        if self._control is not None:
            self._control.close()
        for worker in self.workers.values():
            if worker.reader is not None:
                worker.reader.close()

    def _start_reload_watcher(self) -> None:
        if not self.settings.reload:
            return
        from supervisor.reload import FileWatcher

        settings = self.settings
        watcher = FileWatcher(
            settings.reload_dirs or [os.getcwd()],
            settings.reload_includes or ["*.py"],
            settings.reload_excludes,
            settings.reload_delay,
        )
        inbox = self._inbox
        assert inbox is not None
        changes = self._reload_changes

        def on_change(paths: list[Any]) -> None:  # runs in the watcher's thread: record and wake
            changes.extend(paths)
            inbox.wake()

        watcher.start(on_change)
        self._watcher = watcher
        logger.info("Watching %s for changes (%s)", ", ".join(map(str, watcher.dirs)), watcher.backend_name)

    def _take_reload_changes(self) -> None:
        changes = self._reload_changes
        if changes and not self.stopping:
            paths = [str(path) for path in changes[:3]]
            changes.clear()
            logger.warning("Detected changes in %s; restarting workers", ", ".join(paths))
            self.roll("code changed", "reload")


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
