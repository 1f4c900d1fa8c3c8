"""Event loop choice and running a coroutine on a fresh loop (the only place uvloop is imported)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from asgi_worker.errors import ConfigError
from asgi_worker.options import LoopName, choices_of

__all__ = ["loop_factory", "run_on_new_loop"]

T = TypeVar("T")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop constructor for ``--loop``: ``auto`` takes uvloop when it is installed."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise ConfigError("--loop uvloop needs uvloop: pip install 'asgi-worker[standard]'") from None
            return asyncio.new_event_loop
        return uvloop.new_event_loop
    raise ConfigError(f"--loop must be one of {', '.join(choices_of(LoopName))}, not {name!r}")


def run_on_new_loop(coro: Coroutine[Any, Any, T], factory: Callable[[], asyncio.AbstractEventLoop]) -> T:
    """``asyncio.run`` with a chosen loop, also on Python 3.10 (no ``loop_factory`` there)."""
    if sys.version_info >= (3, 12):
        return asyncio.run(coro, loop_factory=factory)
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
