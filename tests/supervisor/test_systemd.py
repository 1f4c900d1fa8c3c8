"""sd_notify over real AF_UNIX datagram sockets (path and abstract), and socket activation in a real
child process that gets a listening socket as fd 3, as systemd hands it over."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgi_worker.errors import ConfigError
from supervisor.systemd import Notifier, listen_fds
from tests.timing import TIMEOUT

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def notify_path() -> Iterator[tuple[str, socket.socket]]:
    """(NOTIFY_SOCKET value, bound receiver) for a filesystem socket; a short dir keeps under 108 bytes."""
    directory = tempfile.mkdtemp(prefix="sdn-")
    path = os.path.join(directory, "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(TIMEOUT)
    try:
        yield path, receiver
    finally:
        receiver.close()
        os.unlink(path)
        os.rmdir(directory)


@pytest.fixture
def notify_abstract() -> Iterator[tuple[str, socket.socket]]:
    name = f"asgi-worker-test-{uuid.uuid4().hex}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(TIMEOUT)
    try:
        yield "@" + name, receiver
    finally:
        receiver.close()


class ListHandler(logging.Handler):
    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the ``asgi_worker.error`` logger, caught on the logger itself (it may not propagate)."""
    handler = ListHandler(logging.DEBUG)
    records = handler.records
    logger = logging.getLogger("asgi_worker.error")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_each_message_is_one_exact_datagram(kind, request):
    address, receiver = request.getfixturevalue(f"notify_{kind}")
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled

    notifier.ready("Serving 4 workers")
    assert receiver.recv(4096) == b"READY=1\nSTATUS=Serving 4 workers"
    notifier.ready()
    assert receiver.recv(4096) == b"READY=1"
    notifier.stopping()
    assert receiver.recv(4096) == b"STOPPING=1"
    notifier.status("3 workers")
    assert receiver.recv(4096) == b"STATUS=3 workers"
    notifier.watchdog()
    assert receiver.recv(4096) == b"WATCHDOG=1"
    notifier.send("EXTEND_TIMEOUT_USEC=5000000", "STATUS=slow")
    assert receiver.recv(4096) == b"EXTEND_TIMEOUT_USEC=5000000\nSTATUS=slow"


def test_reloading_carries_the_monotonic_clock(notify_path):
    address, receiver = notify_path
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier({"NOTIFY_SOCKET": address}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = receiver.recv(4096).split(b"\n")
    assert first == b"RELOADING=1"
    name, value = second.split(b"=")
    assert name == b"MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_a_newline_in_status_cannot_inject_an_assignment(notify_path):
    address, receiver = notify_path
    Notifier({"NOTIFY_SOCKET": address}).status("ok\nREADY=1\r\nMAINPID=1")
    assert receiver.recv(4096) == b"STATUS=ok READY=1  MAINPID=1"


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path", "@"])
def test_disabled_without_a_usable_address(value):
    notifier = Notifier({} if value is None else {"NOTIFY_SOCKET": value})
    assert not notifier.enabled
    notifier.ready("nobody listens")  # a no-op, not an error


def test_reads_os_environ_by_default(monkeypatch, notify_path):
    address, receiver = notify_path
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    Notifier().stopping()
    assert receiver.recv(4096) == b"STOPPING=1"


def test_a_missing_socket_is_logged_once_and_never_raises(tmp_path, error_log):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    notifier.ready()
    notifier.status("still nobody")
    failures = [r for r in error_log if "systemd notification failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG


def test_a_full_queue_does_not_block(notify_path, error_log):
    address, _receiver = notify_path  # never read: the kernel queue fills (max_dgram_qlen, about 10)
    notifier = Notifier({"NOTIFY_SOCKET": address})

    def flood() -> None:
        for _ in range(500):
            notifier.status("x" * 100)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    sender.join(TIMEOUT)
    assert not sender.is_alive(), "send() blocked on a full socket queue"
    assert len(error_log) == 1


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<ours>"}, 15.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "<other>"}, None),
        ({}, None),
        ({"WATCHDOG_PID": "<ours>"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(environ, expected):
    pids = {"<ours>": str(os.getpid()), "<other>": str(os.getpid() + 1)}
    environ = {key: pids.get(value, value) for key, value in environ.items()}
    assert Notifier(environ).watchdog_interval() == expected


def test_forget_environment_removes_only_the_notify_variables(monkeypatch, notify_path):
    address, receiver = notify_path
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "1")
    notifier = Notifier()
    notifier.forget_environment()
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(os.environ)
    assert os.environ["LISTEN_FDS"] == "1"
    assert notifier.watchdog_interval() == 0.5  # what was read is kept
    notifier.ready()
    assert receiver.recv(4096) == b"READY=1"


# Socket activation. In-process: the cases that return [] or raise before touching any fd.


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"LISTEN_FDS": "1"},
        {"LISTEN_PID": "<ours>"},
        {"LISTEN_PID": "<other>", "LISTEN_FDS": "1"},
        {"LISTEN_PID": "<other>", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"},
        {"LISTEN_PID": "<ours>", "LISTEN_FDS": "0"},
    ],
)
def test_not_socket_activated_gives_no_sockets(environ):
    pids = {"<ours>": str(os.getpid()), "<other>": str(os.getpid() + 1)}
    environ = {key: pids.get(value, value) for key, value in environ.items()}
    assert listen_fds(environ, unset=False) == []


@pytest.mark.parametrize(
    "environ",
    [
        {"LISTEN_PID": "<ours>", "LISTEN_FDS": "one"},
        {"LISTEN_PID": "me", "LISTEN_FDS": "1"},
        {"LISTEN_PID": "<ours>", "LISTEN_FDS": "-1"},
    ],
)
def test_bad_numbers_are_a_one_line_config_error(environ):
    environ = {key: str(os.getpid()) if value == "<ours>" else value for key, value in environ.items()}
    with pytest.raises(ConfigError) as caught:
        listen_fds(environ, unset=False)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)
    assert "LISTEN_" in str(caught.value)


def test_unset_removes_the_variables_even_when_they_are_not_ours(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_FDNAMES", "a:b")
    assert listen_fds() == []
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(os.environ)


# In a child process: fd 3 is the test's listener, and LISTEN_PID the child's own pid, which only
# the child knows, so the child sets it (systemd sets it between fork and exec).

CHILD = textwrap.dedent(
    """
    import os, socket, sys
    inherited = int(sys.argv[1])
    if inherited != 3:
        os.dup2(inherited, 3)
        os.close(inherited)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = sys.argv[2]
    os.environ["LISTEN_FDNAMES"] = "http"
    from supervisor.systemd import listen_fds
    try:
        sockets = listen_fds()
    except ValueError as exc:
        print("error:", exc, flush=True)
        sys.exit(1)
    left = sorted(set(os.environ) & {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"})
    [sock] = sockets
    print(sock.fileno(), sock.family.name, sock.type.name, sock.getblocking(), left, flush=True)
    sock.setblocking(True)
    conn, _ = sock.accept()
    conn.sendall(b"hello from " + str(os.getpid()).encode())
    conn.close()
    """
)


def run_child(listener: socket.socket, count: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(listener.fileno()), count],
        pass_fds=(listener.fileno(),),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=TIMEOUT)


def test_listen_fds_adopts_fd_3_in_the_activated_process():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        proc = run_child(listener, "1")
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # blocks until the child adopted the socket, or died
            assert line.split() == ["3", "AF_INET", "SOCK_STREAM", "False", "[]"], finish(proc)
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
                client.settimeout(TIMEOUT)
                assert client.recv(100) == f"hello from {proc.pid}".encode()
        finally:
            _out, err = finish(proc)
        assert proc.returncode == 0, err


def test_listen_fds_rejects_an_announced_fd_that_is_not_a_socket():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        proc = run_child(listener, "40")  # fd 3 is a socket; at least one of 4..42 is not open
        out, err = finish(proc)
    assert proc.returncode == 1, err
    assert out.startswith("error: LISTEN_FDS=40 but fd ")
    assert len(out.strip().splitlines()) == 1
