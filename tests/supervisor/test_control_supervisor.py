"""The supervisor's control listener (``--control-bind``), seen from outside, as a scraper and a
load balancer see it: real supervisors, real workers, real sockets.

What is checked is what those clients rely on: counters that add up to the requests sent and never
go backwards (even as workers come and go), a scrape that Prometheus' own checker accepts, probes
that answer while every worker is blocked, a ``/readyz`` that turns 503 at once on SIGTERM while
``--shutdown-delay`` keeps the workers serving, and a rollout behind a balancer that loses nothing.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hyperframe.frame import PingFrame
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from asgi_worker.http2.events import ErrorCode
from tests.http2.peer import H2Peer
from tests.processes import free_port, in_flight_env, wait_in_flight
from tests.supervisor.harness import ClientThreads, Load, Supervised, supervise
from tests.timing import TICK, TIMEOUT, wait_until

DURATION_COUNT = "http_server_request_duration_seconds_count"
RESTARTS = "asgi_supervisor_worker_restarts_total"
WORKERS = "asgi_supervisor_workers"
RSS = "asgi_supervisor_worker_resident_memory_bytes"
HTTP2_REFUSALS = "asgi_server_http2_refusals_total"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


# The control port, as a scraper and a probe use it


class Answer:
    """One control response: status, content type, body."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body


class Scrape:
    """One ``/metrics`` answer, parsed: every sample's value, and which samples are counters
    (``*_total`` of a counter, ``_count``/``_sum``/``_bucket`` of a histogram)."""

    def __init__(self, body: str) -> None:
        self.values: dict[SampleKey, float] = {}
        self.counters: set[SampleKey] = set()
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                self.values[key] = sample.value
                if family.type in ("counter", "histogram"):
                    self.counters.add(key)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels``."""
        wanted = labels.items()
        return sum(v for (n, ls), v in self.values.items() if n == name and wanted <= dict(ls).items())

    def labels(self, name: str, label: str) -> set[str]:
        """The values label ``label`` takes on the samples named ``name``."""
        return {dict(ls)[label] for (n, ls) in self.values if n == name}


class Control:
    """The supervisor's control listener on 127.0.0.1:``port``; a fresh connection per request."""

    def __init__(self, port: int) -> None:
        self.port = port

    def get(self, path: str, accept: str | None = None, timeout: float = TIMEOUT) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Accept": accept} if accept else {})
            response = conn.getresponse()
            return Answer(response.status, response.getheader("content-type", ""), response.read())
        finally:
            conn.close()

    def scrape(self) -> Scrape:
        answer = self.get("/metrics")
        assert answer.status == 200, (answer.status, answer.body)
        return Scrape(answer.body.decode())

    def wait_scrape(self, holds: Callable[[Scrape], bool], timeout: float = TIMEOUT) -> Scrape:
        """Scrape until ``holds`` is true of the answer (workers' snapshots lag); the scrape."""
        last: list[Scrape] = []

        def check() -> bool:
            last[:] = [self.scrape()]
            return holds(last[0])

        if not wait_until(check, timeout):
            raise AssertionError(f"no scrape within {timeout} s satisfied the condition: {last[0].values}")
        return last[0]


@contextlib.contextmanager
def supervise_controlled(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Supervised, Control]]:
    """``harness.supervise`` with ``--control-bind 127.0.0.1:Q``; the supervisor and its control port."""
    port = free_port()
    with supervise(*args, "--control-bind", f"127.0.0.1:{port}", env=env) as sup:
        yield sup, Control(port)


# Clients


class Clients(ClientThreads):
    """Client threads, each request on a connection of its own (``Connection: close``); ``choose``
    names the port of the next request (None: no backend to send to, wait a little). Counts the
    200s by port and the time of each port's last one; ``failures`` lists everything else. With
    ``limit``, exactly that many requests are sent in all, then the threads end; ``pause`` seconds
    between two requests of a thread spread them over time."""

    def __init__(
        self,
        choose: Callable[[], int | None],
        threads: int = 4,
        limit: int | None = None,
        pause: float = 0.0,
    ) -> None:
        super().__init__(threads)
        self.choose = choose
        self.limit = limit
        self.pause = pause
        self.sent = 0
        self.ok: dict[int, int] = {}
        self.last_ok: dict[int, float] = {}

    def served(self, port: int | None = None) -> int:
        with self._lock:
            return sum(self.ok.values()) if port is None else self.ok.get(port, 0)

    def _ticket(self) -> bool:
        with self._lock:
            if self.limit is not None and self.sent >= self.limit:
                return False
            self.sent += 1
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            port = self.choose()
            if port is None:
                time.sleep(TICK / 10)
                continue
            if not self._ticket():
                return
            self._one(port)
            if self.pause:
                self._stop.wait(self.pause)

    def _one(self, port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
        except Exception as exc:  # every failure counts; nothing is retried
            with self._lock:
                self.failures.append(f"port {port}: {type(exc).__name__}: {exc}")
        else:
            with self._lock:
                self.ok[port] = self.ok.get(port, 0) + 1
                self.last_ok[port] = time.monotonic()
        finally:
            conn.close()


class Scraper:
    """Scrapes every ``interval`` seconds from a thread, keeping every answer (a scraper's view)."""

    def __init__(self, control: Control, interval: float = 2 * TICK) -> None:
        self.control = control
        self.interval = interval
        self.scrapes: list[Scrape] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT * 2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.scrapes.append(self.control.scrape())
            except Exception as exc:  # a scrape that failed fails the test
                self.errors.append(f"{type(exc).__name__}: {exc}")


def counter_decreases(scrapes: list[Scrape]) -> list[str]:
    """Every counter sample that went down from one scrape to the next (a vanished one counts as 0).

    A histogram's ``_sum`` is a float added up in another order when a worker leaves (its total
    joins the gone workers' before the others are added): a difference in the last bits is rounding.
    """
    found = []
    for before, after in itertools.pairwise(scrapes):
        for key in before.counters:
            old, new = before.values[key], after.values.get(key, 0.0)
            slack = abs(old) * 1e-9 if key[0].endswith("_sum") else 0.0
            if new < old - slack:
                found.append(f"{key}: {old} -> {new}")
    return found


def restarts(scrape: Scrape) -> dict[str, float]:
    return {reason: scrape.total(RESTARTS, reason=reason) for reason in scrape.labels(RESTARTS, "reason")}


# 1. Counters add up and never go backwards


@pytest.mark.slow
def test_request_count_is_exact_across_recycles_and_never_decreases():
    requests = 120
    with supervise_controlled("supapps:info", "--workers", "2", "--limit-max-requests", "25") as (sup, ctl):
        with Scraper(ctl) as scraper:
            # About 2 s of load: the recycles (a worker every 25 requests) happen while it runs.
            with Clients(lambda: sup.port, threads=4, limit=requests, pause=TICK / 2) as clients:
                clients.join()
            assert clients.failures == [], clients.failures[:5]
            assert clients.served() == requests
            scrape = ctl.wait_scrape(lambda s: s.total(DURATION_COUNT) >= requests)
            assert scrape.total(DURATION_COUNT) == requests
            for _ in range(8):  # a few snapshot intervals more: nothing counted twice, nothing lost
                time.sleep(2 * TICK)
                assert ctl.scrape().total(DURATION_COUNT) == requests
            scrape = ctl.scrape()
        assert scraper.errors == []
        assert len(scraper.scrapes) >= 10
        assert scrape.total(RESTARTS, reason="max_requests") >= 1, sup.log
        assert "asks to be recycled" in sup.log
        assert counter_decreases([*scraper.scrapes, scrape]) == []


def http2_refusals(scrape: Scrape) -> dict[str, float]:
    return {kind: scrape.total(HTTP2_REFUSALS, kind=kind) for kind in scrape.labels(HTTP2_REFUSALS, "kind")}


def test_http2_refusals_reach_the_supervisors_scrape_and_outlive_their_worker():
    """A stream past the limit and a PING flood, refused by a worker: counted by kind in the
    supervisor's scrape, and still there once that worker is killed and replaced."""
    expected = {"ping_flood": 1, "too_many_streams": 1}
    args = ("supapps:info", "--http2", "--http2-max-concurrent-streams", "1", "--workers", "1")
    with supervise_controlled(*args) as (sup, ctl):
        assert http2_refusals(ctl.scrape()) == {}
        with H2Peer(("127.0.0.1", sup.port)) as client:
            held = client.request(b"/slow?0.5")
            over = client.request(b"/")
            assert client.read(lambda: client.streams[over].done), client.summary()
            assert client.streams[over].reset == ErrorCode.REFUSED_STREAM, client.summary()
            assert client.response(held).status == 200, client.summary()
        with H2Peer(("127.0.0.1", sup.port)) as attacker:
            attacker.send_frames([PingFrame(0, b"%08d" % i) for i in range(1000)])
            assert attacker.read_until_closed(), attacker.summary()
            assert attacker.goaway_code() == ErrorCode.ENHANCE_YOUR_CALM, attacker.summary()
        ctl.wait_scrape(lambda s: http2_refusals(s) == expected)
        (worker,) = sup.workers()
        os.kill(worker.pid, signal.SIGKILL)
        scrape = ctl.wait_scrape(lambda s: restarts(s)["crash"] == 1 and s.total(WORKERS, state="ready") == 1)
        assert http2_refusals(scrape) == expected, sup.log


# 2. The scrape's format


def test_scrape_passes_promtool_and_openmetrics_is_offered():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Prometheus) is not installed")
    with supervise_controlled("supapps:info", "--workers", "2") as (sup, ctl):
        for _ in range(5):
            sup.get()
        ctl.wait_scrape(lambda s: s.total(DURATION_COUNT) == 5)  # the histogram has its series
        text = ctl.get("/metrics")
        assert text.content_type.startswith("text/plain; version=0.0.4"), text.content_type
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text.body, capture_output=True, timeout=TIMEOUT
        )
        assert checked.returncode == 0, (checked.stdout, checked.stderr)

        om = ctl.get("/metrics", accept=OPENMETRICS)
        assert om.status == 200
        assert om.content_type.startswith("application/openmetrics-text"), om.content_type
        assert om.body.endswith(b"# EOF\n")
        names = {family.name for family in openmetrics_families(om.body.decode())}
        assert {"http_server_request_duration_seconds", "asgi_supervisor_worker_restarts"} <= names

        assert ctl.get("/livez").status == 200
        assert ctl.get("/readyz").status == 200
        assert ctl.get("/nope").status == 404


# 3. /readyz on SIGTERM with --shutdown-delay


@pytest.mark.slow
def test_sigterm_turns_readyz_503_at_once_and_workers_serve_through_the_delay():
    delay = 2.0
    with supervise_controlled("supapps:info", "--workers", "2", "--shutdown-delay", str(delay)) as (sup, ctl):
        workers = {p.pid for p in sup.workers()}
        with Load(sup.port, threads=2) as kept, Clients(lambda: sup.port, threads=2) as fresh:
            kept.wait_requests(50)
            wait_until(lambda: fresh.served() >= 50)
            sup.signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert wait_until(lambda: ctl.get("/readyz").status == 503, 6 * TICK), "still ready"
            turned_in = time.monotonic() - signalled
            # The delay is the behaviour under test: the clients run until just before it ends.
            at_503 = (kept.ok, fresh.served())
            time.sleep(max(0.0, signalled + delay - 3 * TICK - time.monotonic()))
            during_delay = (kept.ok - at_503[0], fresh.served() - at_503[1])
            still = {p.pid for p in sup.workers()}
            log = sup.log
        assert kept.failures == [] and fresh.failures == [], (kept.failures[:5], fresh.failures[:5])
        assert during_delay[0] >= 50 and during_delay[1] >= 50, during_delay
        assert still == workers
        assert "Stopping worker" not in log
        assert sup.proc.wait(TIMEOUT * 2) == 0
        assert time.monotonic() - signalled >= delay
    assert turned_in < 6 * TICK, turned_in
    print(f"/readyz 503 {turned_in * 1000:.0f} ms after SIGTERM; during the delay {during_delay} requests")


# 4. Probes while every worker is blocked


@pytest.mark.slow
def test_livez_and_metrics_answer_while_every_worker_is_blocked(tmp_path):
    marker = tmp_path / "in-flight"
    block = 5
    args = ("blockapps:blocking", "--workers", "2", "--timeout-worker-healthcheck", "60")
    with supervise_controlled(*args, env=in_flight_env(marker)) as (sup, ctl):
        answers: list[object] = []

        def blocked_request() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=TIMEOUT * 2)
            try:
                conn.request("GET", f"/block?{block}")
                answers.append(conn.getresponse().status)
            except OSError as exc:  # reported by the assertion below, not as a thread's exception
                answers.append(repr(exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=blocked_request) for _ in range(2)]
        started = time.monotonic()
        for count, thread in enumerate(threads, 1):  # one at a time: the held worker accepts no more
            thread.start()
            wait_in_flight(marker, count)
        held = {int(pid) for pid in marker.read_text().split()}
        assert held == {p.pid for p in sup.workers()}, "both workers must be blocked"
        for path in ("/livez", "/metrics", "/livez", "/readyz"):
            asked = time.monotonic()
            answer = ctl.get(path, timeout=10 * TICK)
            assert answer.status == 200, (path, answer.status, answer.body)
            assert time.monotonic() - asked < 10 * TICK, path
        scrape = ctl.scrape()
        assert time.monotonic() - started < block, "the checks must run while the workers are held"
        assert scrape.total(WORKERS, state="ready") == 2
        for thread in threads:
            thread.join(TIMEOUT * 2)
        assert answers == [200, 200]
        assert "Killing worker" not in sup.log and "is blocked" not in sup.log


# 5. Restart reasons


@pytest.mark.slow
def test_restart_reasons_crash_rolling_restart_and_scale():
    with supervise_controlled("supapps:info", "--workers", "2") as (sup, ctl):
        scrape = ctl.scrape()
        assert set(restarts(scrape).values()) == {0}
        assert scrape.total(WORKERS, state="ready") == 2
        pids = {int(pid) for pid in scrape.labels(RSS, "pid")}
        assert pids == {p.pid for p in sup.workers()}

        os.kill(min(pids), signal.SIGKILL)
        scrape = ctl.wait_scrape(lambda s: s.total(WORKERS, state="ready") == 2 and restarts(s)["crash"] == 1)
        assert min(pids) not in {int(pid) for pid in scrape.labels(RSS, "pid")}

        sup.signal(signal.SIGHUP)
        ctl.wait_scrape(lambda s: restarts(s)["rolling_restart"] == 2, TIMEOUT * 2)
        ctl.wait_scrape(lambda s: s.total(WORKERS, state="ready") == 2 and s.total(WORKERS) == 2)

        sup.signal(signal.SIGTTOU)
        scrape = ctl.wait_scrape(lambda s: restarts(s)["scale"] == 1 and s.total(WORKERS) == 1, TIMEOUT * 2)
        assert scrape.total(WORKERS, state="ready") == 1
        assert len(scrape.labels(RSS, "pid")) == 1
        assert restarts(scrape) == {
            "max_requests": 0,
            "memory": 0,
            "crash": 1,
            "blocked": 0,
            "rolling_restart": 2,
            "reload": 0,
            "scale": 1,
        }, sup.log


@pytest.mark.slow
def test_restart_reasons_memory_and_blocked(tmp_path):
    """A worker past --max-worker-memory counts as ``memory``; one whose loop stops beating as
    ``blocked`` (its stack dumped, then killed); neither as a crash."""
    with supervise_controlled("supapps:info", "--workers", "1", "--max-worker-memory", "150") as (sup, ctl):
        sup.get("/grow?200")
        ctl.wait_scrape(lambda s: restarts(s)["memory"] == 1, TIMEOUT * 3)
    marker = tmp_path / "in-flight"
    args = ("blockapps:blocking", "--workers", "1", "--timeout-worker-healthcheck", "1")
    with supervise_controlled(*args, env=in_flight_env(marker)) as (sup, ctl):
        conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=TIMEOUT * 2)
        try:
            conn.request("GET", "/block?30")
            wait_in_flight(marker)
            scrape = ctl.wait_scrape(
                lambda s: restarts(s)["blocked"] == 1 and s.total(WORKERS, state="ready") == 1, TIMEOUT * 3
            )
        finally:
            conn.close()
    assert {reason: n for reason, n in restarts(scrape).items() if n} == {"blocked": 1}


# 6. A rollout behind a load balancer


class Balancer:
    """Polls each backend's ``/readyz`` every ``interval``; ``choose`` picks one whose last answer
    was 200 (as a load balancer's health check does)."""

    def __init__(self, backends: dict[int, Control], interval: float = TICK) -> None:
        self.backends = backends
        self.interval = interval
        self.ready = dict.fromkeys(backends, False)
        self.turned_unready: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Balancer:
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT * 2)

    def choose(self) -> int | None:
        ready = [port for port, ok in self.ready.items() if ok]
        return random.choice(ready) if ready else None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def _poll(self) -> None:
        for port, control in self.backends.items():
            try:
                ok = control.get("/readyz", timeout=5 * TICK).status == 200
            except OSError:
                ok = False
            if self.ready[port] and not ok:
                self.turned_unready.setdefault(port, time.monotonic())
            self.ready[port] = ok


@pytest.mark.slow
def test_rollout_behind_a_balancer_fails_no_request():
    delay = 1.5
    app = ("supapps:info", "--workers", "2")
    with (
        supervise_controlled(*app, "--shutdown-delay", str(delay)) as (old, old_ctl),
        supervise_controlled(*app) as (new, new_ctl),
        Balancer({old.port: old_ctl, new.port: new_ctl}) as balancer,
        Clients(balancer.choose, threads=4, pause=TICK / 20) as clients,
    ):
        assert wait_until(lambda: clients.served(old.port) >= 200 and clients.served(new.port) >= 200)
        old.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert old.proc.wait(TIMEOUT * 2) == 0
        gone = time.monotonic()
        on_new = clients.served(new.port)
        assert wait_until(lambda: clients.served(new.port) >= on_new + 100)
        clients.stop()
    assert clients.failures == [], (len(clients.failures), clients.failures[:5])
    assert gone - signalled >= delay
    assert balancer.turned_unready[old.port] - signalled < 5 * TICK  # well within the delay
    assert clients.last_ok[old.port] < signalled + delay  # nothing was sent there once it drained
    assert clients.last_ok[new.port] > gone
    print(
        f"served: old {clients.served(old.port)}, new {clients.served(new.port)}; "
        f"old unready after {(balancer.turned_unready[old.port] - signalled) * 1000:.0f} ms, "
        f"exited after {gone - signalled:.2f} s"
    )
