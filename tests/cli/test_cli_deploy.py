"""``python -m asgi_worker`` as deployed: TLS files, UNIX sockets, inherited descriptors, IPv6 and
names, ``--env-file``, import strings and ``--log-level trace``, each in a real subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.timing import TIMEOUT

APPS = str(Path(__file__).parent / "apps")


def run_cli(*args: str, **popen: object) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (it must exit by itself: these all fail at startup)."""
    return subprocess.run(
        [sys.executable, "-m", "asgi_worker", "--app-dir", APPS, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
        start_new_session=True,
        **popen,  # type: ignore[arg-type]
    )


@contextmanager
def serving(*args: str, pass_fds: tuple[int, ...] = ()) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the server; yield it and its "running on" line once logged; kill its group at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgi_worker", "--app-dir", APPS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        line = ""
        while time.monotonic() < deadline and "running on" not in line and proc.poll() is None:
            line = proc.stderr.readline()  # type: ignore[union-attr]
        assert "running on" in line, f"server did not start: {line!r}"
        yield proc, line
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
    return out, err


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# TLS


def test_tls_from_the_command_line(tls_files):
    args = (
        "cliapps:hello",
        "--port",
        "0",
        "--ssl-certfile",
        tls_files["cert"],
        "--ssl-keyfile",
        tls_files["key"],
    )
    with serving(*args) as (proc, line):
        port = int(re.search(r"https://127\.0\.0\.1:(\d+)", line).group(1))
        context = ssl.create_default_context(cafile=tls_files["ca"])
        assert httpx.get(f"https://127.0.0.1:{port}/", verify=context, timeout=TIMEOUT).text == "hello"
        stop(proc)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ("--ssl-certfile", "/nonexistent/cert.pem"),
            "could not load TLS certificate and key (/nonexistent/cert.pem)",
        ),
        (("--ssl-certfile", "CERT", "--ssl-keyfile", "/nonexistent/key.pem"), "/nonexistent/key.pem"),
        (("--ssl-certfile", "CERT", "--ssl-keyfile", "CA"), "could not load TLS certificate and key"),
        (
            ("--ssl-certfile", "CERT", "--ssl-keyfile", "KEY", "--ssl-ca-certs", "/nonexistent"),
            "could not load CA",
        ),
        (("--ssl-keyfile", "KEY"), "ssl_keyfile needs ssl_certfile"),
    ],
)
def test_unusable_tls_files_are_one_line_and_exit_1(tls_files, args, needle):
    names = {"CERT": tls_files["cert"], "KEY": tls_files["key"], "CA": tls_files["ca"]}
    result = run_cli("cliapps:hello", "--port", "0", *(names.get(a, a) for a in args))
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("asgi_worker: error: ") and needle in line


# Listening


def test_unix_socket_replaces_a_stale_file_and_sets_its_mode(tmp_path):
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file nobody listens on, as a killed server leaves it
    stale.close()
    with serving("cliapps:hello", "--uds", path, "--uds-mode", "600") as (proc, line):
        assert path in line
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
            response = client.get("http://localhost/")
        assert response.text == "hello"
        stop(proc)
    assert not os.path.exists(path)  # removed on a clean stop


def test_unix_socket_path_that_is_a_regular_file_is_not_deleted(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("precious")
    result = run_cli("cliapps:hello", "--uds", str(path))
    assert result.returncode == 3
    assert path.read_text() == "precious"
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and str(path) in errors[0]


def test_inherited_file_descriptor():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    try:
        with serving("cliapps:hello", "--fd", str(fd), pass_fds=(fd,)) as (proc, _line):
            listener.close()  # the child holds its own copy
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "hello"
            stop(proc)
    finally:
        listener.close()


def test_bad_file_descriptor_exits_3():
    result = run_cli("cliapps:hello", "--fd", "987")
    assert result.returncode == 3
    assert "file descriptor 987" in result.stderr


@pytest.mark.parametrize(("host", "url_host"), [("::1", "[::1]"), ("localhost", "127.0.0.1")])
def test_ipv6_and_host_names(host, url_host):
    with serving("cliapps:hello", "--host", host, "--port", "0") as (proc, line):
        port = int(re.search(re.escape(f"http://{url_host}:") + r"(\d+)", line).group(1))
        assert httpx.get(f"http://{url_host}:{port}/", timeout=TIMEOUT).text == "hello"
        stop(proc)


def test_unresolvable_host_exits_3():
    result = run_cli("cliapps:hello", "--host", "no-such-host.invalid", "--port", "0")
    assert result.returncode == 3
    assert "cannot resolve 'no-such-host.invalid'" in result.stderr


# App loading and the environment


def test_env_file_is_loaded_before_the_app(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text('# settings\nexport GREETING="hi there" # trailing comment\n')
    with serving("cliapps:env_echo", "--port", "0", "--env-file", str(env_file)) as (proc, line):
        port = int(re.search(r":(\d+) \(Press", line).group(1))
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "hi there"
        stop(proc)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "could not read env file"), ("NOT A LINE\n", "line 1: expected NAME=VALUE")],
)
def test_bad_env_file_is_one_line_and_exit_1(tmp_path, content, needle):
    env_file = tmp_path / "bad.env"
    if content is not None:
        env_file.write_text(content)
    result = run_cli("cliapps:env_echo", "--env-file", str(env_file))
    assert result.returncode == 1
    assert needle in one_error_line(result)


def test_dotted_attribute_import_string():
    with serving("cliapps:Nested.Inner.app", "--port", "0") as (proc, line):
        port = int(re.search(r":(\d+) \(Press", line).group(1))
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "hello"
        stop(proc)


def test_import_error_traceback_only_with_debug(tmp_path):
    (tmp_path / "broken.py").write_text("import json\nraise RuntimeError('boom at import')\napp = None\n")
    plain = run_cli("broken:app", "--app-dir", str(tmp_path))
    assert plain.returncode == 3
    assert "RuntimeError: boom at import" in one_error_line(plain)
    debug = run_cli("broken:app", "--app-dir", str(tmp_path), "--log-level", "debug")
    assert debug.returncode == 3
    assert "Traceback" in debug.stderr and "broken.py" in debug.stderr


# Trace


def test_trace_logs_connections_and_asgi_messages():
    with serving("cliapps:hello", "--port", "0", "--log-level", "trace") as (proc, line):
        port = int(re.search(r":(\d+) \(Press", line).group(1))
        assert httpx.get(f"http://127.0.0.1:{port}/?q=1", timeout=TIMEOUT).text == "hello"
        _, err = stop(proc)
    assert re.search(r"^TRACE:    127\.0\.0\.1:\d+ - HTTP connection made$", err, re.M)
    assert re.search(r"^TRACE:    127\.0\.0\.1:\d+ - HTTP connection lost$", err, re.M)
    assert re.search(
        r"ASGI \[\d+\] Started scope=\{'type': 'http'.*'query_string': b'q=1', 'headers': <\d+ headers>", err
    )
    assert re.search(r"ASGI \[\d+\] Send \{'type': 'http.response.start', 'status': 200", err)
    assert re.search(r"ASGI \[\d+\] Send \{'type': 'http.response.body', 'body': <5 bytes>\}", err)
    assert re.search(r"ASGI \[\d+\] Completed", err)
    assert "hello" not in err  # bodies are summarised, never copied into the log
