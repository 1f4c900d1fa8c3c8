"""Development file watching for ``--reload``: which files count, and when to report them.

Rules:
- A file counts when its name matches an include pattern and neither it nor any directory between it
  and the watched root matches an exclude pattern: exclude beats include, and an excluded directory
  is never walked (``.git``, ``.venv`` and ``__pycache__`` can be huge). Patterns are fnmatch globs on
  one name (uvicorn's ``--reload-include/--reload-exclude`` defaults); a pattern with a ``/`` is
  matched against the path relative to the root instead.
- Changes are batched: after the first change we wait until the tree has been quiet for ``delay``
  seconds (at most ``MAX_BATCH_ROUNDS`` times ``delay``, so a file rewritten forever still reloads),
  then call ``on_change`` once with every changed path. An editor's save (write temp, rename, touch)
  is one reload, not three.
- Two backends, one contract: watchfiles (inotify and friends) when it is importable, else stat
  polling of mtime and size every ``delay`` seconds. Polling is stdlib-only and needs no OS watch
  limits, at the cost of a walk per ``delay``; new and deleted files count as changes in both.
  With watchfiles a new directory is walked once: files written into it before its OS watch
  existed would otherwise go unseen.
- The watcher thread only observes and calls back: ``on_change`` runs on it, so it should only record
  the request for the arbiter's loop to act on, as signal handlers do (ARCHITECTURE.md, "Signal
  handlers only record").
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import Literal

from asgi_worker.errors import ConfigError

__all__ = ["DEFAULT_DELAY", "DEFAULT_EXCLUDE", "DEFAULT_INCLUDE", "FileWatcher"]

logger = logging.getLogger("asgi_worker.error")

DEFAULT_INCLUDE = ("*.py",)
"""uvicorn's ``--reload-include`` default."""

DEFAULT_EXCLUDE = (".*", ".py[cod]", ".sw.*", "~*", "__pycache__")
"""uvicorn's documented ``--reload-exclude`` default, plus ``__pycache__`` (bytecode churn)."""

DEFAULT_DELAY = 0.25
"""uvicorn's ``--reload-delay`` default, in seconds."""

MAX_BATCH_ROUNDS = 10
"""A batch is delivered after at most this many ``delay`` periods of continuous change."""

STOP_TIMEOUT = 5.0
"""``stop()`` waits at most this long (plus one ``delay``) for the thread to end."""

Backend = Literal["auto", "watchfiles", "polling"]
Stamp = tuple[int, int]  # (mtime_ns, size)


class _PathFilter:
    def __init__(self, roots: list[Path], include: Iterable[str], exclude: Iterable[str]) -> None:
        self.roots = roots
        self.dirs = [str(root) for root in roots]
        """The watched directories, absolute, as given (symlinks not resolved)."""
        self.include = list(include)
        self.exclude = list(exclude)

    def prune(self, dirname: str) -> bool:
        return any(fnmatchcase(dirname, pattern) for pattern in self.exclude if "/" not in pattern)

    def walkable(self, directory: Path) -> bool:
        return not any(self.prune(part) for part in self._relative(directory).parts)

    def wants(self, path: Path) -> bool:
        """Decided on names only (no stat), so that a deleted file is judged like a live one."""
        relative = self._relative(path)
        if any(self.prune(part) for part in relative.parts[:-1]):
            return False
        if any(_matches(relative, pattern) for pattern in self.exclude):
            return False
        return any(_matches(relative, pattern) for pattern in self.include)

    def _relative(self, path: Path) -> PurePath:
        for root in self.roots:
            if path.is_relative_to(root):
                return path.relative_to(root)
        return PurePath(path.name)


def _matches(relative: PurePath, pattern: str) -> bool:
    return relative.match(pattern) if "/" in pattern else fnmatchcase(relative.name, pattern)


class FileWatcher:
    """Watches ``dirs`` (recursively) and reports changed files in batches from a daemon thread.

    ``backend`` is "auto" (watchfiles when importable, else polling), "watchfiles" or "polling"; the
    one chosen is ``backend_name``. Raises ``ConfigError`` for a directory that does not exist, a
    negative ``delay``, or backend "watchfiles" when it is not installed.
    """

    def __init__(
        self,
        dirs: list[str],
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        delay: float = DEFAULT_DELAY,
        backend: Backend = "auto",
    ) -> None:
        roots = [Path(d).absolute() for d in dirs or ["."]]
        for root in roots:
            if not root.is_dir():
                raise ConfigError(f"--reload-dir {root} is not a directory")
        if delay < 0:
            raise ConfigError(f"--reload-delay must not be negative, not {delay}")
        have_watchfiles = importlib.util.find_spec("watchfiles") is not None
        if backend == "watchfiles" and not have_watchfiles:
            raise ConfigError("file watching with watchfiles needs it installed: pip install watchfiles")
        self.backend_name = "watchfiles" if backend != "polling" and have_watchfiles else "polling"
        self.roots = roots
        self.dirs = [str(root) for root in roots]
        """The watched directories, absolute, as given (symlinks not resolved)."""
        self.delay = delay
        self._filter = _PathFilter(
            roots,
            DEFAULT_INCLUDE if include is None else include,
            DEFAULT_EXCLUDE if exclude is None else exclude,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_change: Callable[[list[Path]], None]) -> None:
        """Start watching; ``on_change(paths)`` is then called from the watcher thread, once per batch,
        with the sorted absolute paths that changed, were created or were deleted.

        With polling, the tree as it is when ``start`` returns is the baseline. watchfiles sets up its
        OS watches inside the thread, so a change in the first moments after ``start`` may go unseen.
        An exception from ``on_change`` is logged and watching goes on. Raises RuntimeError if
        already started.
        """
        if self._thread is not None:
            raise RuntimeError("FileWatcher.start() called twice")
        target: Callable[..., None] = self._serve_watchfiles
        args: tuple[object, ...] = (on_change,)
        if self.backend_name == "polling":
            target, args = self._serve_polling, (on_change, self._scan())
        self._thread = threading.Thread(target=target, args=args, name="asgi-supervise-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and join the thread (bounded by ``STOP_TIMEOUT`` plus one ``delay``).

        Idempotent. Safe to call from ``on_change`` itself (it then does not join).
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT + self.delay)

    def _deliver(self, on_change: Callable[[list[Path]], None], paths: set[Path]) -> None:
        logger.debug("file watcher: %d changed: %s", len(paths), ", ".join(map(str, sorted(paths)[:5])))
        try:
            on_change(sorted(paths))
        except Exception:
            logger.exception("file watcher: the change callback failed")

    # polling

    def _scan(self, roots: Iterable[Path] | None = None) -> dict[Path, Stamp]:
        found: dict[Path, Stamp] = {}
        stack = [str(root) for root in (self.roots if roots is None else roots)]
        while stack:
            self._scan_dir(stack.pop(), stack, found)
        return found

    def _scan_dir(self, directory: str, stack: list[str], found: dict[Path, Stamp]) -> None:
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    self._scan_entry(entry, stack, found)
        except OSError:  # a directory removed or unreadable mid-walk: its files count as deleted
            pass

    def _scan_entry(self, entry: os.DirEntry[str], stack: list[str], found: dict[Path, Stamp]) -> None:
        try:
            if entry.is_dir(follow_symlinks=False):
                if not self._filter.prune(entry.name):
                    stack.append(entry.path)
            elif entry.is_file():
                path = Path(entry.path)
                if self._filter.wants(path):
                    st = entry.stat()
                    found[path] = (st.st_mtime_ns, st.st_size)
        except OSError:  # vanished between listing and stat: it will show as deleted
            pass

    def _serve_polling(self, on_change: Callable[[list[Path]], None], previous: dict[Path, Stamp]) -> None:
        while not self._stop.wait(self.delay):
            current = self._scan()
            batch = _changed(previous, current)
            if not batch:
                continue
            for _ in range(MAX_BATCH_ROUNDS - 1):
                if self._stop.wait(self.delay):
                    return
                later = self._scan()
                more = _changed(current, later)
                current = later
                if not more:
                    break
                batch |= more
            previous = current
            self._deliver(on_change, batch)

    # watchfiles

    def _serve_watchfiles(self, on_change: Callable[[list[Path]], None]) -> None:
        # Imported here, and untyped on purpose: it is optional, and mypy must pass without it.
        watchfiles = importlib.import_module("watchfiles")
        added = watchfiles.Change.added
        step_ms = max(1, int(self.delay * 1000))

        def keep(change: object, path: str) -> bool:
            # A new directory passes too: files written into it before the OS watch on it was set
            # up would never be reported, so the batch includes a walk of it (see below).
            return self._filter.wants(Path(path)) or (
                change == added and os.path.isdir(path) and self._filter.walkable(Path(path))
            )

        try:
            for changes in watchfiles.watch(
                *self.roots,
                watch_filter=keep,
                step=step_ms,  # quiet period that ends a batch; also how often stop is checked
                debounce=step_ms * MAX_BATCH_ROUNDS,
                stop_event=self._stop,
                raise_interrupt=False,
            ):
                paths = {Path(path) for _change, path in changes}
                directories = {path for path in paths if path.is_dir()}
                batch = (paths - directories) | set(self._scan(directories))
                if batch:
                    self._deliver(on_change, batch)
        except Exception:
            logger.exception("file watcher (watchfiles) failed; no more reloads will be triggered")


def _changed(before: dict[Path, Stamp], after: dict[Path, Stamp]) -> set[Path]:
    """Paths modified, created or deleted between two scans."""
    changed = {path for path, stamp in after.items() if before.get(path) != stamp}
    changed.update(path for path in before if path not in after)
    return changed
