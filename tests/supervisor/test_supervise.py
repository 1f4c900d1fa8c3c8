"""``asgi-supervise`` as a real process tree: health, signals, scaling, memory, reload, boot failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.processes import in_flight_env, wait_in_flight
from tests.supervisor.harness import APPS, free_port, supervise
from tests.timing import TICK, TIMEOUT, wait_until


def test_blocked_worker_stack_is_logged_and_it_is_replaced():
    with supervise("supapps:info", "--workers", "1", "--timeout-worker-healthcheck", "1") as sup:
        (blocked,) = sup.workers()
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=TIMEOUT)
        conn.request("GET", "/block?30")
        sup.wait_log("is ready", count=2, timeout=TIMEOUT * 3)
        log = sup.wait_log("was killed by signal SIGKILL")
        conn.close()
        assert "event loop is blocked" in log
        assert "Current thread" in log or "Thread 0x" in log  # faulthandler's dump
        assert "supapps.py" in log and "in info" in log  # the frame that blocks
        psutil.wait_procs([blocked], timeout=TIMEOUT)
        assert not blocked.is_running()
        assert sup.get()["pid"] != blocked.pid


def test_ttin_ttou_change_the_worker_count():
    with supervise("supapps:info", "--workers", "2") as sup:
        sup.signal(signal.SIGTTIN)
        sup.wait_log("is ready", count=3)
        assert len(sup.workers()) == 3
        sup.signal(signal.SIGTTOU)
        sup.wait_log("fewer workers", count=1)
        sup.signal(signal.SIGTTOU)  # one at a time: a second identical signal in flight would merge
        sup.wait_log("fewer workers", count=2)
        assert wait_until(lambda: len(sup.workers()) == 1, TIMEOUT * 2), sup.workers()
        assert sup.get()["slot"] == "0"


def test_max_worker_memory_recycles_the_worker():
    with supervise("supapps:info", "--workers", "1", "--max-worker-memory", "150") as sup:
        (first,) = sup.workers()
        sup.get("/grow?200")
        log = sup.wait_log("is ready", count=2, timeout=TIMEOUT * 3)
        assert "MB over 150 MB" in log
        sup.wait_log("exited with code 0")
        assert sup.get()["pid"] != first.pid


def test_reload_on_file_change(tmp_path):
    app = tmp_path / "reloaded.py"
    app.write_text("from supapps import info as app\n")
    args = ("reloaded:app", "--app-dir", str(tmp_path), "--reload", "--reload-dir", str(tmp_path))
    with supervise(*args, "--reload-delay", str(TICK), env={"PYTHONPATH": APPS}) as sup:
        before = sup.get()["pid"]
        edits = 0

        def edited_and_seen() -> bool:  # the watcher may still be starting: edit until it reports one
            nonlocal edits
            edits += 1
            app.write_text(f"from supapps import info as app  # change {edits}\n")
            return wait_until(lambda: "Detected changes in" in sup.log, 5 * TICK)

        assert wait_until(edited_and_seen, TIMEOUT * 2), "no change was detected"
        sup.wait_log("is ready", count=2)
        assert wait_until(lambda: sup.get()["pid"] != before), "still served by the old worker"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("no_such_module:app",), 'Could not import module "no_such_module"'),
        (("supapps:failing_startup", "--lifespan", "on"), "database unreachable"),
    ],
)
def test_boot_failure_stops_the_supervisor_with_exit_3(args, needle):
    started = time.monotonic()
    with supervise(*args, "--workers", "2", ready=False) as sup:
        assert sup.proc.wait(TIMEOUT * 2) == 3
        sup.wait_log("Supervisor stopped: worker")
    assert time.monotonic() - started < TIMEOUT * 2
    assert needle in sup.log
    assert sup.log.count("Started worker") <= 2  # no restart loop


def test_port_in_use_exits_3_with_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "supervisor", "--app-dir", APPS, "supapps:info", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 2,
        )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        f"asgi-supervise: error: could not bind to 127.0.0.1:{port}: Address already in use"
    ]


def test_bad_flag_and_bad_setting():
    run = [sys.executable, "-m", "supervisor", "--app-dir", APPS, "supapps:info"]
    bad_flag = subprocess.run([*run, "--workers", "x"], capture_output=True, text=True, timeout=TIMEOUT)
    assert bad_flag.returncode == 2 and len(bad_flag.stderr.strip().splitlines()) == 1
    bad_value = subprocess.run([*run, "--workers", "0"], capture_output=True, text=True, timeout=TIMEOUT)
    assert bad_value.returncode == 1
    assert (
        bad_value.stderr.strip()
        == "asgi-supervise: error: workers must be a whole number of at least 1, not 0"
    )


def test_workers_exit_when_the_supervisor_dies():
    with supervise("supapps:info", "--workers", "2") as sup:
        workers = sup.workers()
        os.kill(sup.proc.pid, signal.SIGKILL)
        sup.proc.wait(TIMEOUT)
        _gone, alive = psutil.wait_procs(workers, timeout=TIMEOUT)
        assert alive == []


def test_ctrl_c_stops_everything_once_cleanly():
    """A terminal's Ctrl-C reaches the supervisor's process group; workers hear it once, from it."""
    with supervise("supapps:info", "--workers", "2") as sup:
        workers = sup.workers()
        os.killpg(sup.proc.pid, signal.SIGINT)
        assert sup.proc.wait(TIMEOUT * 2) == 0
        log = sup.wait_log("Supervisor")
        _gone, alive = psutil.wait_procs(workers, timeout=TIMEOUT)
        assert alive == []
    assert "Traceback" not in log
    assert log.count("Received SIGINT") == 1
    assert log.count("Shutting down") == 2  # once per worker


def test_second_sigint_is_a_quick_stop(tmp_path):
    marker = tmp_path / "in-flight"
    args = ("supapps:info", "--workers", "1", "--timeout-graceful-shutdown", "30")
    with supervise(*args, env=in_flight_env(marker)) as sup:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=TIMEOUT)
        conn.request("GET", "/slow?60")
        wait_in_flight(marker)  # a graceful stop would now wait up to 30 s
        sup.signal(signal.SIGINT)
        sup.wait_log("Received SIGINT")
        started = time.monotonic()
        sup.signal(signal.SIGINT)
        assert sup.proc.wait(TIMEOUT * 2) == 0
        assert time.monotonic() - started < TIMEOUT
        conn.close()


def test_slot_and_generation_variables():
    with supervise("supapps:info", "--workers", "2") as sup:
        answers = [sup.get() for _ in range(20)]
        assert {a["slot"] for a in answers} <= {"0", "1"}
        assert {a["generation"] for a in answers} == {"0"}
        old = sup.workers()
        sup.signal(signal.SIGHUP)
        sup.wait_log("All 2 worker(s) ready", count=2)
        _gone, alive = psutil.wait_procs(old, timeout=TIMEOUT)  # the old generation drains and leaves
        assert alive == []
        assert {sup.get()["generation"] for _ in range(10)} == {"1"}


def test_preload_imports_the_app_once_in_the_supervisor(tmp_path):
    marker = tmp_path / "imports.txt"
    (tmp_path / "preloaded.py").write_text(
        "import os\n"
        f"with open({str(marker)!r}, 'a') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n"
        "from supapps import info as app\n"
    )
    env = {"PYTHONPATH": APPS}
    with supervise(
        "preloaded:app", "--app-dir", str(tmp_path), "--workers", "2", "--preload", env=env
    ) as sup:
        assert sup.get()["pid"] != sup.proc.pid
        assert marker.read_text().split() == [str(sup.proc.pid)]
    marker.unlink()
    with supervise("preloaded:app", "--app-dir", str(tmp_path), "--workers", "2", env=env) as sup:
        sup.get()
        assert sorted(marker.read_text().split()) == sorted(str(p.pid) for p in sup.workers())


def test_wrong_supervisor_package_is_one_line(tmp_path):
    fake = tmp_path / "supervisor"
    fake.mkdir()
    (fake / "__init__.py").write_text("# supervisord's package\n")
    done = subprocess.run(
        [sys.executable, "-c", "import asgi_supervise, sys; sys.exit(asgi_supervise.main())"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path(__file__).parents[2]}"},
        cwd=tmp_path,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "is not asgi-worker's" in line and "supervisord" in line


def test_port_is_shared_by_workers_bound_once():
    port = free_port()
    with supervise(
        "supapps:info", "--workers", "2", "--bind", f"127.0.0.1:{port}", "--bind", "[::1]:0"
    ) as sup:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        listening = [
            c for p in sup.workers() for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN
        ]
        assert {c.laddr.port for c in listening} >= {port}


def test_every_worker_line_carries_its_pid():
    with supervise("supapps:info", "--workers", "2") as sup:
        sup.get()
        pids = {str(p.pid) for p in sup.workers()}
        log = sup.log
    worker_lines = [line for line in log.splitlines() if "Started server process" in line]
    assert len(worker_lines) == 2
    for line in worker_lines:
        pid = line.rsplit("[", 1)[1].rstrip("]")
        assert pid in pids and line.startswith(f"INFO:     [{pid}] ")
    supervisor_lines = [line for line in log.splitlines() if "Supervisor" in line]
    assert supervisor_lines and all(not line.startswith("INFO:     [") for line in supervisor_lines)


def test_pid_file_written_and_removed(tmp_path):
    pidfile = tmp_path / "app.pid"
    with supervise("supapps:info", "--pid", str(pidfile)) as sup:
        assert pidfile.read_text().strip() == str(sup.proc.pid)
        sup.signal(signal.SIGTERM)
        assert sup.proc.wait(TIMEOUT * 2) == 0
    assert not pidfile.exists()


def test_worker_still_booting_when_the_supervisor_dies_exits_too(tmp_path):
    # Booting takes 10 TICK (the behaviour under test: the supervisor dies meanwhile), less than the
    # TIMEOUT the test waits for the worker to leave.
    (tmp_path / "slowimport.py").write_text(
        f"import time\ntime.sleep({10 * TICK})\nfrom supapps import info as app\n"
    )
    env = {"PYTHONPATH": APPS}
    with supervise("slowimport:app", "--app-dir", str(tmp_path), ready=False, env=env) as sup:
        log = sup.wait_log("Started worker")
        pid = int(log.split("Started worker ", 1)[1].split()[0])
        worker = psutil.Process(pid)
        os.kill(sup.proc.pid, signal.SIGKILL)  # while the worker is still importing the app
        sup.proc.wait(TIMEOUT)
        _gone, alive = psutil.wait_procs([worker], timeout=TIMEOUT)
        assert alive == []


def test_web_concurrency_sets_the_worker_count():
    with supervise("supapps:info", env={"WEB_CONCURRENCY": "3"}) as sup:
        assert len(sup.workers()) == 3
        assert "3 worker(s)" in sup.log
