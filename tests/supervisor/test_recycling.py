"""Workers come and go under continuous load, and no request is lost.

Each test runs a real supervisor with 4 workers and 8 client threads on keep-alive connections
that never retry (see ``harness.Load``); the counts asserted are every failed request.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tests.processes import in_flight_env, wait_in_flight
from tests.supervisor.harness import Load, supervise
from tests.timing import TICK, TIMEOUT, wait_until

pytestmark = pytest.mark.slow


def test_four_workers_distinct_pids_all_serving():
    with supervise("supapps:info", "--workers", "4") as sup:
        pids = {p.pid for p in sup.workers()}
        assert len(pids) == 4
        seen: set[int] = set()
        deadline = time.monotonic() + TIMEOUT * 2
        while seen != pids and time.monotonic() < deadline:
            seen.add(sup.get()["pid"])  # type: ignore[arg-type]
        assert seen == pids
        slots = sorted(sup.get()["slot"] for _ in range(40))  # type: ignore[type-var]
        assert set(slots) <= {"0", "1", "2", "3"}


def test_max_requests_recycles_twenty_times_without_a_failed_request():
    with supervise("supapps:info", "--workers", "4", "--limit-max-requests", "200") as sup:
        first = {p.pid for p in sup.workers()}
        with Load(sup.port, threads=8) as load:
            wait_until(lambda: sup.log.count("asks to be recycled") >= 20, TIMEOUT * 12)
            recycles = sup.log.count("asks to be recycled")
            load.wait_requests(load.ok + 100)
        assert recycles >= 20, sup.log
        assert load.failures == [], (len(load.failures), load.failures[:5])
        assert len(load.pids - first) >= 16  # the answers came from the replacements too
        assert sup.log.count("Worker ") and "was killed" not in sup.log


def test_rolling_restart_picks_up_new_code_without_a_failed_request(tmp_path):
    app = tmp_path / "rolling.py"
    app.write_text(_VERSIONED.format(version=1))
    with supervise("rolling:app", "--app-dir", str(tmp_path), "--workers", "4") as sup:
        with Load(sup.port, threads=8, path="/") as load:
            load.wait_requests(300)
            old = sup.workers()
            app.write_text(_VERSIONED.format(version=2))
            sup.signal(signal.SIGHUP)
            sup.wait_log("All 4 worker(s) ready", count=2, timeout=TIMEOUT * 6)
            _gone, alive = psutil.wait_procs(old, timeout=TIMEOUT)  # drained (idle grace) and gone
            assert alive == []
            load.wait_requests(load.ok + 300)
        assert load.failures == [], (len(load.failures), load.failures[:5])
        assert {sup.get()["version"] for _ in range(20)} == {2}
        assert {sup.get()["generation"] for _ in range(20)} == {"1"}


_VERSIONED = """
import json, os

VERSION = {version}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({{"pid": os.getpid(), "version": VERSION,
                        "generation": os.environ.get("ASGI_WORKER_GENERATION")}}).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
"""


def test_sigterm_under_load_finishes_in_flight_and_exits_0(tmp_path):
    import http.client
    import threading

    marker = tmp_path / "in-flight"
    with supervise("supapps:info", "--workers", "2", env=in_flight_env(marker)) as sup:
        workers = sup.workers()
        results: list[object] = []

        def one_slow_request() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=TIMEOUT)
            try:
                conn.request("GET", "/slow?1")
                response = conn.getresponse()
                results.append((response.status, response.getheader("connection")))
            except Exception as exc:
                results.append(exc)
            finally:
                conn.close()

        with Load(sup.port, threads=4) as load:  # steady traffic around the slow ones
            load.wait_requests(100)
            slow = [threading.Thread(target=one_slow_request) for _ in range(8)]
            for thread in slow:
                thread.start()
            wait_in_flight(marker, count=8)
            sup.signal(signal.SIGTERM)
            for thread in slow:
                thread.join(TIMEOUT * 2)
            assert sup.proc.wait(TIMEOUT * 2) == 0
        assert results == [(200, "close")] * 8
        for worker in workers:
            assert not worker.is_running()


def test_kill_9_under_load_is_replaced_within_a_second():
    with supervise("supapps:info", "--workers", "4") as sup:
        with Load(sup.port, threads=8) as load:
            load.wait_requests(200)
            victim = sup.workers()[0]
            killed_at = time.monotonic()
            victim.kill()
            sup.wait_log("was killed by signal SIGKILL")
            sup.wait_log("is ready", count=5)
            replaced_in = time.monotonic() - killed_at
            load.wait_requests(load.ok + 200)
        assert replaced_in < 1.0 * max(1.0, TICK * 10), replaced_in
        # Only requests that were in flight on the killed worker may fail (at most one per client thread).
        assert len(load.failures) <= 8, load.failures
        print(f"kill -9 -> replacement ready in {replaced_in:.3f} s; failed requests: {len(load.failures)}")
