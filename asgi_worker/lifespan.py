"""The ASGI lifespan protocol: startup before serving, shutdown after the drain, both bounded.

Modes: ``on`` requires the app to speak lifespan, ``off`` never asks, ``auto`` asks and carries on
without it when the app raises before startup completes (uvicorn's rule: such an app does not
support lifespan). ``lifespan.startup.failed``, a raise in ``on`` mode, or a startup that does not
finish within its timeout is a ``StartupError``: the server must not serve. A stuck shutdown is
abandoned after its timeout and the app task cancelled, so a deploy cannot hang on it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import MutableMapping
from typing import Any

from asgi_worker.errors import AppProtocolError, StartupError
from asgi_worker.http.scope import ASGI_VERSION
from asgi_worker.types import ASGIApp

__all__ = ["Lifespan", "LifespanState"]

logger = logging.getLogger("asgi_worker.error")


class LifespanState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"


# (state, message type the app sends) -> next state.
_TRANSITIONS = {
    (LifespanState.STARTING, "lifespan.startup.complete"): LifespanState.STARTED,
    (LifespanState.STARTING, "lifespan.startup.failed"): LifespanState.FAILED,
    (LifespanState.STOPPING, "lifespan.shutdown.complete"): LifespanState.STOPPED,
    (LifespanState.STOPPING, "lifespan.shutdown.failed"): LifespanState.FAILED,
}


class Lifespan:
    """Runs the app's lifespan task. ``state`` is the dict shared (shallow-copied) with every request."""

    def __init__(self, app: ASGIApp, mode: str, startup_timeout: float, shutdown_timeout: float) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.phase = LifespanState.IDLE
        self._startup_timeout = startup_timeout or None
        self._shutdown_timeout = shutdown_timeout or None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure = ""

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the answer. Raises ``StartupError`` on failure."""
        if self.mode == "off":
            return
        self.phase = LifespanState.STARTING
        logger.info("Waiting for application startup.")
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        if not await self._wait_left(LifespanState.STARTING, self._startup_timeout):
            raise StartupError(f"Application startup did not complete within {self._startup_timeout}s.")
        if self.phase is LifespanState.FAILED:
            raise StartupError(self._failure or "Application startup failed.")
        if self.phase is LifespanState.STARTED:
            logger.info("Application startup complete.")

    async def shutdown(self, within: float | None = None) -> None:
        """Send ``lifespan.shutdown``, wait (bounded), then make sure the lifespan task is gone.

        ``within``: seconds left of the whole stop's budget (``--timeout-graceful-shutdown``), when
        shorter than the shutdown timeout.
        """
        if self.phase is not LifespanState.STARTED:
            await self._stop_task()
            return
        timeout = self._shutdown_timeout
        if within is not None and (timeout is None or within < timeout):
            timeout = max(within, 0.0)
        self.phase = LifespanState.STOPPING
        logger.info("Waiting for application shutdown.")
        await self._inbox.put({"type": "lifespan.shutdown"})
        if not await self._wait_left(LifespanState.STOPPING, timeout):
            logger.error("Application shutdown did not complete within %.1fs.", timeout)
        elif self.phase is LifespanState.FAILED:
            logger.error(self._failure or "Application shutdown failed.")
        else:
            logger.info("Application shutdown complete.")
        await self._stop_task()

    async def _wait_left(self, phase: LifespanState, timeout: float | None) -> bool:
        """Wait until the app moves out of ``phase``; False if ``timeout`` passed first."""

        async def left() -> None:
            while self.phase is phase:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(left(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _stop_task(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self.phase is LifespanState.STARTING and self.mode == "auto":
                self.phase = LifespanState.UNSUPPORTED
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                self.phase = LifespanState.FAILED
                self._failure = f"Exception in 'lifespan' protocol: {type(exc).__name__}: {exc}"
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
        else:
            if self.phase is LifespanState.STARTING:
                if self.mode == "on":
                    self.phase = LifespanState.FAILED
                    self._failure = "The application returned before completing lifespan startup."
                else:
                    self.phase = LifespanState.UNSUPPORTED
                    logger.info("ASGI 'lifespan' protocol appears unsupported.")
        finally:
            self._changed.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._inbox.get()

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        mtype = message["type"]
        following = _TRANSITIONS.get((self.phase, mtype))
        if following is None:
            raise AppProtocolError(f"lifespan message {mtype!r} is not allowed in state {self.phase.value!r}")
        if following is LifespanState.FAILED:
            self._failure = message.get("message") or ""
        self.phase = following
        self._changed.set()
