"""``gunicorn -k asgi_worker.Worker``: each mapped setting, signal and hook, checked by behaviour
on real gunicorn processes."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from tests.gunicorn.harness import gunicorn
from tests.processes import free_port, in_flight_env, wait_in_flight
from tests.timing import TICK, TIMEOUT, wait_until

pytest.importorskip("gunicorn")


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.settimeout(TIMEOUT)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("worker", ["asgi_worker.Worker", "asgi_worker.H11Worker"])
def test_serves_with_both_worker_classes(worker):
    with gunicorn("--workers", "2", worker=worker) as g:
        g.wait_for("Booting worker", count=2)  # the harness waits for the first one only
        pids = {p.pid for p in g.workers()}
        seen = {g.get()["pid"] for _ in range(30)}
        assert seen <= pids and seen


def test_access_log_format_with_gunicorn_atoms():
    fmt = (
        '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
        "%(m)s %(U)s %(q)s %(H)s %(B)s %(D)s %(p)s %({x-test}i)s %({x-served-by}o)s"
    )
    with gunicorn("--access-logfile", "-", "--access-logformat", fmt) as g:
        raw_request(
            g.port,
            b"GET /p?q=1 HTTP/1.1\r\nHost: x\r\nReferer: http://r/\r\nUser-Agent: ua/1\r\n"
            b"X-Test: hello\r\nAuthorization: Basic dXNlcjpwdw==\r\nConnection: close\r\n\r\n",
        )
        line = g.wait_for("GET /p?q=1", name="stdout").strip().splitlines()[-1]
        worker_pid = g.workers()[0].pid
    pattern = (
        r"^127\.0\.0\.1 - user \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET /p\?q=1 HTTP/1\.1" 200 (\d+) '
        r'"http://r/" "ua/1" GET /p q=1 HTTP/1\.1 (\d+) (\d+) <(\d+)> hello gapps$'
    )
    match = re.match(pattern, line)
    assert match, line
    size, big_b, micros, pid = match.groups()
    assert size == big_b and int(size) > 0 and int(micros) >= 0 and int(pid) == worker_pid


def test_limit_request_line_and_fields_give_414_and_431():
    with gunicorn("--limit-request-line", "100", "--limit-request-fields", "5") as g:
        ok = raw_request(g.port, b"GET /" + b"a" * 99 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ")
        too_long = raw_request(g.port, b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert too_long.startswith(b"HTTP/1.1 414 ")
        fields = b"".join(b"X-%d: v\r\n" % i for i in range(5))
        too_many = raw_request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert too_many.startswith(b"HTTP/1.1 431 ")


def test_limit_request_field_size_gives_431():
    with gunicorn("--limit-request-field_size", "50") as g:
        answer = raw_request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 60 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("worker", ["asgi_worker.Worker", "asgi_worker.H11Worker"])
def test_head_budget_is_exact_under_gunicorn(worker):
    # The whole head's budget (65536 bytes by default, limits.py) is measured the same way under
    # gunicorn, by both parsers (Worker: httptools, H11Worker: h11): the budget is served, one more is 431.
    def head_of(size: int) -> bytes:
        start = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        fields = b"".join(b"X-%02d: %b\r\n" % (i, b"v" * 8000) for i in range(8))
        filler = size - len(start) - len(fields) - len(b"X-Pad: \r\n\r\n")
        return start + fields + b"X-Pad: " + b"p" * filler + b"\r\n\r\n"

    assert len(head_of(65536)) == 65536
    with gunicorn("--limit-request-field_size", "0", worker=worker) as g:
        assert raw_request(g.port, head_of(65536)).startswith(b"HTTP/1.1 200 ")
        assert raw_request(g.port, head_of(65537)).startswith(b"HTTP/1.1 431 ")


def test_limit_concurrency_from_the_environment_gives_503(tmp_path):
    """gunicorn's worker_connections is no limit for an asyncio worker (see ``config_kwargs``); our own
    --limit-concurrency is, through the environment."""
    marker = tmp_path / "in-flight"
    env = {**in_flight_env(marker), "ASGI_WORKER_LIMIT_CONCURRENCY": "1"}
    with gunicorn("--worker-connections", "1", env=env) as g:
        busy = socket.create_connection(("127.0.0.1", g.port), timeout=TIMEOUT)
        busy.sendall(b"GET /slow?2 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_in_flight(marker)
        answer = raw_request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        busy.close()
    assert answer.startswith(b"HTTP/1.1 503 ")


def test_keepalive_closes_an_idle_connection():
    with (
        gunicorn("--keep-alive", "1") as g,
        socket.create_connection(("127.0.0.1", g.port), timeout=TIMEOUT) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(65536)
        started = time.monotonic()
        sock.settimeout(TIMEOUT)
        assert sock.recv(1) == b""
        idle = time.monotonic() - started
    assert 1 - 2 * TICK <= idle < 1 + 10 * TICK  # --keep-alive 1 is one second


def test_max_requests_recycles_the_worker():
    with gunicorn("--max-requests", "5") as g:
        first = g.get()["pid"]
        pids = [g.get()["pid"] for _ in range(10)]
        g.wait_for("Booting worker", count=2)
    assert pids[:4] == [first] * 4
    assert len(set(pids)) >= 2


def test_timeout_kills_a_blocked_worker_with_its_stack_and_worker_abort(tmp_path):
    hooks = tmp_path / "hooks.py"
    marker = tmp_path / "abort.txt"
    hooks.write_text(f"def worker_abort(worker):\n    open({str(marker)!r}, 'a').write(str(worker.pid))\n")
    with gunicorn("--timeout", "2", "-c", str(hooks)) as g:
        (blocked,) = g.workers()
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT * 2)
        conn.request("GET", "/block?30")
        log = g.wait_for("Booting worker", count=2, timeout=TIMEOUT * 3)
        conn.close()
        assert "WORKER TIMEOUT" in log
        assert "gapps.py" in log and "in app" in log  # the dumped stack shows what blocked
        assert marker.read_text() == str(blocked.pid)
        assert g.get()["pid"] != blocked.pid


def test_statsd_gets_request_metrics():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("127.0.0.1", 0))
        statsd.settimeout(TIMEOUT)
        port = statsd.getsockname()[1]
        with gunicorn("--statsd-host", f"127.0.0.1:{port}") as g:
            for _ in range(3):
                g.get()
            datagrams = []
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline and sum("gunicorn.requests" in d for d in datagrams) < 3:
                datagrams.append(statsd.recv(4096).decode())
    text = "\n".join(datagrams)
    assert text.count("gunicorn.requests:1|c") >= 3
    assert "gunicorn.request.status.200:1|c" in text
    assert re.search(r"gunicorn\.request\.duration:[\d.]+\|ms", text)


def _hook_file(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "hooks.txt"
    hooks = tmp_path / "hooks.py"
    hooks.write_text(
        "def _note(what, worker):\n"
        f"    open({str(marker)!r}, 'a').write(f'{{what}} {{worker.pid}}\\n')\n"
        "def post_worker_init(worker): _note('post_worker_init', worker)\n"
        "def worker_int(worker): _note('worker_int', worker)\n"
        "def worker_exit(server, worker): _note('worker_exit', worker)\n"
    )
    return hooks, marker


def test_sigterm_is_graceful_and_calls_worker_exit(tmp_path):
    hooks, marker = _hook_file(tmp_path)
    in_flight = tmp_path / "in-flight"
    with gunicorn("--graceful-timeout", "10", "-c", str(hooks), env=in_flight_env(in_flight)) as g:
        (worker,) = g.workers()
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT * 2)
        conn.request("GET", "/slow?1")
        wait_in_flight(in_flight)
        g.proc.send_signal(signal.SIGTERM)
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("connection") == "close"
        conn.close()
        assert g.proc.wait(TIMEOUT * 2) == 0
    notes = marker.read_text().split("\n")
    assert f"post_worker_init {worker.pid}" in notes
    assert f"worker_exit {worker.pid}" in notes


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_quick_stop_does_not_wait_for_graceful_timeout(tmp_path, sig):
    hooks, marker = _hook_file(tmp_path)
    in_flight = tmp_path / "in-flight"
    with gunicorn("--graceful-timeout", "30", "-c", str(hooks), env=in_flight_env(in_flight)) as g:
        (worker,) = g.workers()
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT * 2)
        conn.request("GET", "/slow?60")
        wait_in_flight(in_flight)  # a graceful stop would now wait up to 30 s
        started = time.monotonic()
        os.kill(worker.pid, sig)
        psutil.wait_procs([worker], timeout=TIMEOUT)
        assert time.monotonic() - started < TIMEOUT
        conn.close()
    notes = marker.read_text().split("\n")
    assert f"worker_int {worker.pid}" in notes
    assert f"worker_exit {worker.pid}" in notes


def test_worker_exits_when_the_arbiter_dies():
    with gunicorn("--workers", "2") as g:
        g.wait_for("Booting worker", count=2)
        workers = g.workers()
        assert len(workers) == 2
        os.kill(g.proc.pid, signal.SIGKILL)
        g.proc.wait(TIMEOUT)
        _gone, alive = psutil.wait_procs(workers, timeout=TIMEOUT)
        assert alive == []


def test_sigusr1_reopens_the_access_log(tmp_path):
    logfile = tmp_path / "access.log"
    with gunicorn("--access-logfile", str(logfile)) as g:
        g.get()
        assert wait_until(lambda: "GET / " in logfile.read_text()), "the first request was not logged"
        logfile.rename(tmp_path / "access.log.1")
        g.proc.send_signal(signal.SIGUSR1)
        assert wait_until(logfile.exists), "the access log was not reopened"
        g.get("/after")
        assert wait_until(lambda: "/after" in logfile.read_text()), "the request was not logged"
    assert "/after" not in (tmp_path / "access.log.1").read_text()


def test_reload_restarts_the_worker_on_a_code_change(tmp_path):
    module = tmp_path / "reloadme.py"
    module.write_text("VERSION = 1\nfrom gapps import app\n")
    from tests.gunicorn.harness import APPS

    with gunicorn("--reload", "--pythonpath", f"{tmp_path},{APPS}", app="reloadme:app") as g:
        (first,) = g.workers()
        version = 1

        def edited_and_seen() -> bool:  # the reloader may still be starting: edit until it reports one
            nonlocal version
            version += 1
            module.write_text(f"VERSION = {version}\nfrom gapps import app\n")
            return wait_until(lambda: "Worker reloading" in g.text(), 10 * TICK)

        assert wait_until(edited_and_seen, TIMEOUT * 2), "the change was not seen"
        g.wait_for("Booting worker", count=2, timeout=TIMEOUT * 2)
        psutil.wait_procs([first], timeout=TIMEOUT)
        assert not first.is_running()
        assert g.get()["pid"] != first.pid


def test_lifespan_startup_failure_stops_the_arbiter():
    with gunicorn(app="gapps:failing_startup", ready=False, env={"ASGI_WORKER_LIFESPAN": "on"}) as g:
        assert g.proc.wait(TIMEOUT * 3) == 3
        log = g.wait_for("Worker failed to boot")
    assert "database unreachable" in log


def test_root_path_tls_and_preload(tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    args = ("--certfile", str(cert_file), "--keyfile", str(key_file), "--root-path", "/api", "--preload")
    with gunicorn(*args) as g:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        conn = http.client.HTTPSConnection("127.0.0.1", g.port, timeout=TIMEOUT, context=context)
        conn.request("GET", "/")
        import json

        answer = json.loads(conn.getresponse().read())
        conn.close()
    assert answer["scheme"] == "https" and answer["root_path"] == "/api"


def test_our_settings_from_the_environment():
    with gunicorn(env={"ASGI_WORKER_HTTP": "h11", "ASGI_WORKER_SERVER_HEADER": "false"}) as g:
        answer = raw_request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nserver:" not in answer.lower()


def test_secure_scheme_headers_from_a_trusted_proxy():
    with gunicorn("--forwarded-allow-ips", "127.0.0.1") as g:
        trusted = raw_request(
            g.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Ssl: on\r\nConnection: close\r\n\r\n"
        )
    assert b'"scheme": "https"' in trusted
    with gunicorn("--forwarded-allow-ips", "10.9.9.9") as g:
        untrusted = raw_request(
            g.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Ssl: on\r\nConnection: close\r\n\r\n"
        )
    assert b'"scheme": "http"' in untrusted


def test_control_settings_are_ignored_with_a_warning():
    """Under gunicorn the arbiter is gunicorn's: no control listener is opened (metrics stay on
    statsd) and the shutdown delay is gunicorn's business; each says so once per worker."""
    control = free_port()
    env = {"ASGI_WORKER_CONTROL_BIND": f"127.0.0.1:{control}", "ASGI_WORKER_SHUTDOWN_DELAY": "5"}
    with gunicorn(env=env) as g:
        assert g.get()["pid"]
        log = g.wait_for("ASGI_WORKER_SHUTDOWN_DELAY is ignored", "stderr")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", control), timeout=TICK).close()
    assert "ASGI_WORKER_CONTROL_BIND is ignored under gunicorn" in log
