"""The pidfile: atomic create, refusal over a live owner, stale files replaced, careful removal."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from asgi_worker.errors import ConfigError
from supervisor.pidfile import Pidfile, PidfileError
from tests.timing import TIMEOUT


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (reuse within the test is unlikely)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=TIMEOUT)
    return proc.pid


def test_create_writes_the_pid_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "app.pid"
    pidfile = Pidfile(path)
    pidfile.create(os.getpid())
    assert path.read_text() == f"{os.getpid()}\n"
    assert pidfile.read() == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.pid"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_create_refuses_a_live_process_that_is_not_us(tmp_path):
    path = tmp_path / "app.pid"
    other = os.getppid()  # the process that started pytest: alive, and not us
    path.write_text(f"{other}\n")
    with pytest.raises(PidfileError) as caught:
        Pidfile(path).create(os.getpid())
    message = str(caught.value)
    assert str(path) in message and str(other) in message
    assert "\n" not in message
    assert path.read_text() == f"{other}\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.pid"]


def test_pidfile_error_is_a_config_error():
    assert issubclass(PidfileError, ConfigError)


@pytest.mark.parametrize("content", ["<dead>\n", "garbage\n", "", "-4\n", "0\n", "12 34\n"])
def test_a_stale_file_is_replaced(tmp_path, content):
    path = tmp_path / "app.pid"
    path.write_text(content.replace("<dead>", str(dead_pid())))
    Pidfile(path).create(os.getpid())
    assert path.read_text() == f"{os.getpid()}\n"


def test_rewriting_our_own_pid_is_allowed(tmp_path):
    path = tmp_path / "app.pid"
    path.write_text(f"{os.getpid()}\n")
    Pidfile(path).create(os.getpid())
    assert path.read_text() == f"{os.getpid()}\n"


def test_an_unwritable_location_is_a_one_line_pidfile_error(tmp_path):
    path = tmp_path / "missing-dir" / "app.pid"
    with pytest.raises(PidfileError) as caught:
        Pidfile(path).create(os.getpid())
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_remove_deletes_only_a_file_that_still_holds_our_pid(tmp_path):
    path = tmp_path / "app.pid"
    pidfile = Pidfile(path)
    pidfile.create(os.getpid())
    pidfile.remove()
    assert not path.exists()
    pidfile.remove()  # idempotent

    pidfile.create(os.getpid())
    path.write_text(f"{os.getppid()}\n")  # a successor took the file over
    pidfile.remove()
    assert path.read_text() == f"{os.getppid()}\n"


def test_remove_uses_the_pid_that_was_written(tmp_path):
    path = tmp_path / "app.pid"
    pid = dead_pid()
    pidfile = Pidfile(path)
    pidfile.create(pid)  # the supervisor may write a pid other than its own
    assert pidfile.read() == pid
    pidfile.remove()
    assert not path.exists()


def test_read_of_a_missing_file_is_none(tmp_path):
    assert Pidfile(tmp_path / "nothing.pid").read() is None
