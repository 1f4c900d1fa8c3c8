"""``asgi-supervise`` as a container's PID 1, with no init wrapper: real PID namespaces (``unshare``).

PID 1 is special twice over: the kernel drops a signal for which it has no handler (so an early
SIGTERM is lost unless the handlers come first), and every orphan in the namespace becomes its child
(so it reaps processes that are not its workers). Also ``--workers auto``, read from the real
machine and, where the host lets root make one, from a cgroup with a CPU quota.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.cpus import usable_cpus
from tests.supervisor.harness import Supervised, supervise
from tests.timing import TICK, TIMEOUT, wait_until

UNSHARE = ("unshare", "--pid", "--fork", "--mount-proc")
IMPORT_DELAY = 30 * TICK  # how long pid1apps' import sleeps in the early-signal tests
REQUESTS = 20


@pytest.fixture(scope="module")
def namespaces() -> None:
    """Skips the test where this machine cannot make a PID namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.skip("unshare --pid --fork --mount-proc true did not finish")
    if probe.returncode != 0:
        pytest.skip(f"unshare --pid --fork --mount-proc true failed: {probe.stderr.strip()}")


def supervisor_in(sup: Supervised) -> psutil.Process:
    """The supervisor inside the namespace, seen from here: the child ``unshare --fork`` made."""
    children: list[psutil.Process] = []

    def forked() -> bool:
        children[:] = psutil.Process(sup.proc.pid).children()
        return bool(children)

    assert wait_until(forked), "unshare did not start the supervisor"
    return children[0]


def namespace_pid(process: psutil.Process) -> int:
    """``process``'s pid as its own (innermost) PID namespace numbers it."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(re.search(r"^NSpid:\s.*?(\d+)\s*$", status, re.MULTILINE)[1])  # type: ignore[index]


def started_workers(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"Started worker (\d+) ", log)]


def test_orphans_reaped_as_pid1_are_not_workers(namespaces):
    """Every request leaves an orphan that exits 7 after its parent; PID 1 reaps each one quietly."""
    with supervise("pid1apps:orphaning", "--workers", "2", "--log-level", "debug", prefix=UNSHARE) as sup:
        assert "Supervisor 1 started" in sup.log
        supervisor = supervisor_in(sup)
        workers = supervisor.children()  # no orphan yet: only the two workers
        started = started_workers(sup.log)
        assert len(workers) == 2 and sorted(namespace_pid(w) for w in workers) == sorted(started)
        answers = [sup.get() for _ in range(REQUESTS)]
        orphans = {answer["orphan"] for answer in answers}
        assert len(orphans) == REQUESTS
        assert {answer["pid"] for answer in answers} <= set(started)
        for orphan in orphans:  # reaped by the supervisor, which numbers them as the app does
            sup.wait_log(f"Reaped process {orphan} (not a worker)")
        log = sup.log
        assert started_workers(log) == started, "a worker was replaced"
        assert all(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
        assert "exited with code" not in log and "was killed by signal" not in log
        assert "ERROR" not in log and "crash" not in log.lower()
        supervisor.send_signal(signal.SIGTERM)
        assert sup.proc.wait(TIMEOUT * 2) == 0  # unshare exits with the supervisor's code
        log = sup.wait_log("Supervisor 1 finished")
        _gone, alive = psutil.wait_procs(workers, timeout=TIMEOUT)
        assert alive == []
    assert "Received SIGTERM" in log and "ERROR" not in log
    exits = re.findall(r"Worker (\d+) \(slot \d, draining\) exited with code 0", log)
    assert sorted(int(pid) for pid in exits) == sorted(started)
    for orphan in orphans:
        assert not re.search(rf"\b{orphan}\b.*exited with code", log), f"orphan {orphan} logged as a worker"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "plain"])
def test_signal_while_the_preloaded_app_imports_stops_cleanly(request, tmp_path, signum, pid1):
    """The handlers are in place before the slow import: the signal is kept, no worker is forked."""
    if pid1:
        request.getfixturevalue("namespaces")
    marker = tmp_path / "importing"
    env = {"ASGI_TEST_IMPORT_MARKER": str(marker), "ASGI_TEST_IMPORT_DELAY": str(IMPORT_DELAY)}
    args = ("pid1apps:orphaning", "--workers", "2", "--preload")
    with supervise(*args, prefix=UNSHARE if pid1 else (), env=env, ready=False) as sup:
        supervisor = supervisor_in(sup) if pid1 else psutil.Process(sup.proc.pid)
        began = wait_until(lambda: marker.exists() and marker.read_text().endswith("\n"), TIMEOUT * 2)
        assert began, f"the import never began:\n{sup.log}"
        assert marker.read_text().split() == ["1" if pid1 else str(sup.proc.pid)]
        signalled = time.monotonic()
        supervisor.send_signal(signum)
        assert sup.proc.wait(IMPORT_DELAY + TIMEOUT) == 0, sup.log
        took = time.monotonic() - signalled
        log = sup.wait_log("finished")
    assert took < IMPORT_DELAY + TIMEOUT
    assert f"Received {signal.Signals(signum).name}" in log
    assert "Started worker" not in log
    assert "Traceback" not in log and "ERROR" not in log
    if pid1:
        assert "Supervisor 1 started" in log


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("no_such_module:app",), "failed to boot"),
        (("no_such_module:app", "--preload"), 'Could not import module "no_such_module"'),
        (("supapps:failing_startup", "--lifespan", "on"), "failed to boot"),
    ],
    ids=["unimportable", "unimportable-preload", "lifespan-failure"],
)
def test_boot_failures_exit_3_as_pid1(namespaces, args, needle):
    with supervise(*args, "--workers", "2", prefix=UNSHARE, ready=False) as sup:
        assert sup.proc.wait(TIMEOUT * 2) == 3
        sup.output.join()
        log = sup.log
    assert needle in log, log
    assert log.count("Started worker") <= 2  # no restart loop
    if "--preload" not in args:
        assert "Supervisor 1 started" in log


@pytest.mark.parametrize("how", ["flag", "WEB_CONCURRENCY"])
def test_workers_auto_starts_one_worker_per_usable_cpu(how):
    cpus, source = usable_cpus()
    args, env = (("--workers", "auto"), {}) if how == "flag" else ((), {"WEB_CONCURRENCY": "auto"})
    with supervise("supapps:info", *args, env=env) as sup:
        assert len(sup.workers()) == cpus
        log = sup.log
    assert log.count(f"--workers auto: {cpus}, from {source}\n") == 1
    assert f"All {cpus} worker(s) ready" in log


# A CPU quota the workers count must follow: 1 CPU (100 ms of CPU time every 100 ms).

QUOTA, PERIOD = 100_000, 100_000


def _v2_mount() -> Path | None:
    """A cgroup v2 mount whose root lets its children use the cpu controller."""
    for mount in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        with contextlib.suppress(OSError):
            if "cpu" in (mount / "cgroup.subtree_control").read_text().split():
                return mount
    return None


def _v1_mount() -> Path | None:
    """The cgroup v1 cpu controller's mount, where it has the CFS quota files."""
    for name in ("cpu,cpuacct", "cpu"):
        mount = Path("/sys/fs/cgroup") / name
        if (mount / "cpu.cfs_quota_us").exists():
            return mount
    return None


def _make_quota_cgroup(name: str) -> Path:
    """A child cgroup with the quota, under whichever hierarchy has the cpu controller; or skip."""
    mount = _v2_mount() or _v1_mount()
    if mount is None:
        pytest.skip("no cgroup v2 mount with the cpu controller enabled and no v1 cpu controller")
    group = mount / name
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup under {mount}: {exc}")
    try:
        if (group / "cpu.max").exists():
            (group / "cpu.max").write_text(f"{QUOTA} {PERIOD}\n")
        else:
            (group / "cpu.cfs_period_us").write_text(f"{PERIOD}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{QUOTA}\n")
    except OSError as exc:
        group.rmdir()
        pytest.skip(f"cannot set a CPU quota in {group}: {exc}")
    return group


def _remove_cgroup(group: Path) -> None:
    """rmdir once its last process is gone (the kernel refuses with EBUSY until then)."""

    def removed() -> bool:
        try:
            group.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    assert wait_until(removed, TIMEOUT), f"cgroup {group} still busy"


@pytest.fixture
def quota_cgroup() -> Iterator[tuple[tuple[str, ...], str]]:
    """A command prefix that moves the process into a 1-CPU cgroup, and the cgroup's directory.

    Skips where the host does not let us (no cpu controller, not root, a read-only mount), or where
    the moved process would not see the new cgroup as its own (a container's partial view)."""
    group = _make_quota_cgroup(f"asgi-test-{os.getpid()}")
    try:
        mover = ("sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs"))
        probe = subprocess.run(
            [*mover, "cat", "/proc/self/cgroup"], capture_output=True, text=True, timeout=TIMEOUT
        )
        if probe.returncode != 0:
            pytest.skip(f"cannot move a process into {group}: {probe.stderr.strip()}")
        if not re.search(rf":/{group.name}$", probe.stdout, re.MULTILINE):
            pytest.skip(f"a process moved into {group} does not see it as its cgroup:\n{probe.stdout}")
        yield mover, str(group)
    finally:
        _remove_cgroup(group)


def test_workers_auto_follows_a_cgroup_cpu_quota(quota_cgroup):
    mover, group = quota_cgroup
    with supervise("supapps:info", "--workers", "auto", prefix=mover) as sup:
        assert len(sup.workers()) == 1
        log = sup.log
    (line,) = [line for line in log.splitlines() if "--workers auto:" in line]
    assert re.search(r"--workers auto: 1, from cgroup v[12] cpu\.(max|cfs_quota_us) 100000/100000 in ", line)
    assert line.endswith(f"/{Path(group).name}"), line
    assert "All 1 worker(s) ready" in log
