"""The --reload file watcher on real directories, with each backend: stat polling always, watchfiles
when it is installed. Changes, creations and deletions count; include/exclude decide which files;
a burst of changes is one call."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import supervisor.reload as reload_module
from asgi_worker.errors import ConfigError
from supervisor.reload import FileWatcher
from tests.supervisor.test_systemd import ListHandler
from tests.timing import TICK, TIMEOUT

HAVE_WATCHFILES = importlib.util.find_spec("watchfiles") is not None
DELAY = TICK
QUIET = 5 * DELAY  # long enough that a change, had it counted, would have been reported

BACKENDS = [
    pytest.param("polling", id="polling"),
    pytest.param(
        "watchfiles",
        id="watchfiles",
        marks=pytest.mark.skipif(not HAVE_WATCHFILES, reason="watchfiles is not installed"),
    ),
]


class Calls:
    """Collects ``on_change`` batches from the watcher thread."""

    def __init__(self) -> None:
        self.batches: list[list[Path]] = []
        self._cond = threading.Condition()

    def __call__(self, paths: list[Path]) -> None:
        with self._cond:
            self.batches.append(paths)
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float = TIMEOUT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.batches) >= count, timeout)

    def next_batch(self) -> list[Path]:
        """Wait for the next batch and take it."""
        assert self.wait(), "no change was reported"
        with self._cond:
            return self.batches.pop(0)

    def assert_quiet(self, period: float = QUIET) -> None:
        time.sleep(period)
        with self._cond:
            assert self.batches == [], f"unexpected change report: {self.batches}"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Callable[..., tuple[FileWatcher, Calls]]]:
    """``watch(backend, **options)`` watches tmp_path; the watcher is stopped (bounded) at the end."""
    watchers: list[FileWatcher] = []

    def start(backend: str, dirs: list[str] | None = None, **options: object) -> tuple[FileWatcher, Calls]:
        watcher = FileWatcher(dirs or [str(tmp_path)], delay=DELAY, backend=backend, **options)  # type: ignore[arg-type]
        assert watcher.backend_name == backend
        calls = Calls()
        watcher.start(calls)
        watchers.append(watcher)
        if backend == "watchfiles":
            wait_until_watching(tmp_path, calls)
        return watcher, calls

    yield start
    for watcher in watchers:
        watcher.stop()
        assert watcher._thread is not None and not watcher._thread.is_alive(), "watcher did not stop"


def wait_until_watching(root: Path, calls: Calls) -> None:
    """watchfiles sets up its OS watch inside the thread: poke a file until a change is seen."""
    probe = root / "zz_probe.py"
    deadline = time.monotonic() + TIMEOUT
    n = 0
    while not calls.wait(timeout=DELAY * 2):
        assert time.monotonic() < deadline, "watchfiles never reported the probe file"
        n += 1
        write(probe, "x" * n)
    probe.unlink()
    calls.wait(count=2, timeout=QUIET)  # the deletion (and any late part of the probe batch)
    time.sleep(QUIET)  # no state to wait on: stray probe events land in this window, then are dropped
    calls.batches.clear()


@pytest.mark.parametrize("backend", BACKENDS)
def test_change_create_and_delete_are_reported(tmp_path, watch, backend):
    existing = write(tmp_path / "app.py", "a = 1\n")
    _watcher, calls = watch(backend)

    write(existing, "a = 22\n")
    assert calls.next_batch() == [existing]

    created = write(tmp_path / "pkg" / "new.py", "b = 2\n")
    assert calls.next_batch() == [created]

    created.unlink()
    assert calls.next_batch() == [created]
    calls.assert_quiet()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_burst_of_changes_is_one_call(tmp_path, watch, backend):
    files = [write(tmp_path / f"m{i}.py", "") for i in range(3)]
    _watcher, calls = watch(backend)
    for path in files:
        write(path, "changed\n")
    write(tmp_path / "m3.py", "new\n")
    assert calls.next_batch() == sorted([*files, tmp_path / "m3.py"])
    calls.assert_quiet()


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_excludes_and_non_python_files_are_ignored(tmp_path, watch, backend):
    _watcher, calls = watch(backend)
    write(tmp_path / ".hidden.py", "x")
    write(tmp_path / "__pycache__" / "cached.py", "x")
    write(tmp_path / ".git" / "hooks" / "hook.py", "x")
    write(tmp_path / "~backup.py", "x")
    write(tmp_path / "notes.txt", "x")
    write(tmp_path / "module.pyc", "x")
    calls.assert_quiet()

    included = write(tmp_path / "views.py", "x")
    write(tmp_path / "notes.txt", "more")
    assert calls.next_batch() == [included]


@pytest.mark.parametrize("backend", BACKENDS)
def test_custom_include_and_exclude_beats_include(tmp_path, watch, backend):
    _watcher, calls = watch(backend, include=["*.html", "*.py"], exclude=["skip_*", "build"])
    write(tmp_path / "skip_me.py", "x")
    write(tmp_path / "build" / "page.html", "x")
    calls.assert_quiet()

    page = write(tmp_path / "templates" / "index.html", "<p>")
    assert calls.next_batch() == [page]


def test_a_pattern_with_a_slash_matches_the_relative_path(tmp_path, watch):
    _watcher, calls = watch("polling", include=["templates/*.html"])
    write(tmp_path / "other" / "index.html", "x")
    calls.assert_quiet()
    page = write(tmp_path / "templates" / "index.html", "x")
    assert calls.next_batch() == [page]


def test_several_directories_are_watched(tmp_path, watch):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    _watcher, calls = watch("polling", dirs=[str(first), str(second)])
    changed = [write(first / "a.py", "x"), write(second / "b.py", "x")]
    assert calls.next_batch() == changed


def test_polling_never_walks_an_excluded_directory(tmp_path, monkeypatch):
    write(tmp_path / "src" / "a.py", "x")
    write(tmp_path / ".venv" / "lib" / "big.py", "x")
    write(tmp_path / "__pycache__" / "a.py", "x")
    scanned: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: str) -> object:
        scanned.append(os.path.basename(path))
        return real_scandir(path)

    watcher = FileWatcher([str(tmp_path)], backend="polling")
    monkeypatch.setattr(reload_module.os, "scandir", recording_scandir)
    found = watcher._scan()
    monkeypatch.undo()
    assert sorted(found) == [tmp_path / "src" / "a.py"]
    assert sorted(scanned) == sorted([tmp_path.name, "src"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_is_bounded_and_final(tmp_path, watch, backend):
    watcher, calls = watch(backend)
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < TIMEOUT
    assert watcher._thread is not None and not watcher._thread.is_alive()
    write(tmp_path / "late.py", "x")
    calls.assert_quiet()
    watcher.stop()  # idempotent


def test_a_failing_callback_is_logged_and_watching_goes_on(tmp_path):
    handler = ListHandler()
    records = handler.records
    logger = logging.getLogger("asgi_worker.error")
    logger.addHandler(handler)
    calls = Calls()
    failed = threading.Event()

    def on_change(paths: list[Path]) -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("boom")
        calls(paths)

    watcher = FileWatcher([str(tmp_path)], delay=DELAY, backend="polling")
    try:
        watcher.start(on_change)
        write(tmp_path / "a.py", "1")
        assert failed.wait(TIMEOUT)
        second = write(tmp_path / "b.py", "2")
        assert calls.next_batch() == [second]
    finally:
        watcher.stop()
        logger.removeHandler(handler)
    assert any(r.exc_info and "callback failed" in r.getMessage() for r in records)


def test_start_twice_is_an_error(tmp_path):
    watcher = FileWatcher([str(tmp_path)], delay=DELAY, backend="polling")
    watcher.start(lambda paths: None)
    try:
        with pytest.raises(RuntimeError):
            watcher.start(lambda paths: None)
    finally:
        watcher.stop()


def test_bad_settings_are_config_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not a directory"):
        FileWatcher([str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="negative"):
        FileWatcher([str(tmp_path)], delay=-1)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "watchfiles" else real_find_spec(name)
    )
    with pytest.raises(ConfigError, match="watchfiles"):
        FileWatcher([str(tmp_path)], backend="watchfiles")
    assert FileWatcher([str(tmp_path)]).backend_name == "polling"


def test_auto_picks_watchfiles_when_importable(tmp_path):
    watcher = FileWatcher([str(tmp_path)])
    assert watcher.backend_name == ("watchfiles" if HAVE_WATCHFILES else "polling")
    assert watcher.dirs == [str(tmp_path)]
