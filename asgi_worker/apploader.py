"""Import the application from ``module:attr.attr`` and decide which interface it speaks.

Every way loading can fail becomes an ``AppLoadError`` whose message names what was wrong, so the
command line can print one line and exit 1. The module's own import errors (a typo inside the
app) keep their traceback as ``__cause__`` for ``--log-level debug``. ``wsgi`` is never guessed (as
in uvicorn): a WSGI callable takes two parameters, so ``auto`` takes it for ASGI 2.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from asgi_worker.adapters import asgi2_to_asgi3
from asgi_worker.errors import AppLoadError
from asgi_worker.types import ASGIApp
from asgi_worker.wsgi import WSGI_THREADS, WSGIAdapter

__all__ = ["INTERFACES", "import_from_string", "load_app", "resolve_interface"]

INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")


def import_from_string(import_str: Any) -> Any:
    """``"pkg.module:attr.sub"`` -> the object. Non-strings are returned unchanged."""
    if not isinstance(import_str, str):
        return import_str
    module_name, _, attrs = import_str.partition(":")
    if not module_name or not attrs:
        raise AppLoadError(f'Import string "{import_str}" must be in format "<module>:<attribute>".')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise AppLoadError(f'Error while importing "{module_name}": {exc}') from exc
        raise AppLoadError(f'Could not import module "{module_name}".') from exc
    except Exception as exc:
        raise AppLoadError(f'Error while importing "{module_name}": {type(exc).__name__}: {exc}') from exc
    instance: Any = module
    try:
        for attr in attrs.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise AppLoadError(f'Attribute "{attrs}" not found in module "{module_name}".') from None
    return instance


def resolve_interface(app: Any, interface: str) -> str:
    """``auto`` -> ``asgi3`` or ``asgi2`` by the app's shape, as uvicorn decides it; others pass through."""
    if interface != "auto":
        return interface
    if inspect.isclass(app):
        return "asgi3" if hasattr(app, "__await__") else "asgi2"
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    return "asgi3" if inspect.iscoroutinefunction(call) or _takes_three(call) else "asgi2"


def _takes_three(call: Any) -> bool:
    try:
        return len(inspect.signature(call).parameters) >= 3
    except (TypeError, ValueError):
        return False


def load_app(
    target: Any, factory: bool, interface: str, app_dir: str | None, *, wsgi_threads: int = WSGI_THREADS
) -> ASGIApp:
    """Import (and with ``factory`` call) the app, then wrap it as an ASGI 3 callable.

    ``interface="wsgi"`` wraps it in a ``WSGIAdapter`` (one pool of ``wsgi_threads`` threads per
    loaded app); other interfaces ignore ``wsgi_threads``.

    ``app_dir`` goes first on ``sys.path`` ("" is the working directory, as with uvicorn); None adds nothing.
    """
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    app = import_from_string(target)
    if factory:
        if not callable(app):
            raise AppLoadError(f"the factory {target!r} is not callable")
        try:
            app = app()
        except TypeError as exc:
            raise AppLoadError(f"the factory {target!r} must take no arguments: {exc}") from exc
    if not callable(app):
        raise AppLoadError(f"the application {target!r} is not callable (got {type(app).__name__})")
    kind = resolve_interface(app, interface)
    if kind == "wsgi":
        return WSGIAdapter(app, wsgi_threads)
    return asgi2_to_asgi3(app) if kind == "asgi2" else app
