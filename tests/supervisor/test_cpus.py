"""usable_cpus: cgroup v2 and v1 quotas, affinity and cpu_count, read from fake /proc and /sys trees.

Every test but the last builds its tree under tmp_path and passes the affinity and CPU count, so the
answer does not depend on the machine running it; the last one reads the real machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.cpus import usable_cpus

HOST = 8  # the fake host's CPU count and affinity, unless a test says otherwise
V2 = "sys/fs/cgroup"
V1 = "sys/fs/cgroup/cpu,cpuacct"


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (paths relative to ``root``) and return ``root``."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def cpus(root: Path, affinity: int = HOST, cpu_count: int = HOST, pid: str = "self") -> tuple[int, str]:
    return usable_cpus(root, pid, affinity=affinity, cpu_count=cpu_count)


def v2_pod(root: Path, leaf: str, pod: str, top: str = "max 100000") -> Path:
    """A Kubernetes-like v2 tree: the container's cgroup under a pod under kubepods."""
    return tree(
        root,
        {
            "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
            f"{V2}/kubepods/cpu.max": top,
            f"{V2}/kubepods/pod1/cpu.max": pod,
            f"{V2}/kubepods/pod1/ctr/cpu.max": leaf,
        },
    )


def test_v2_quota_on_the_leaf(tmp_path):
    v2_pod(tmp_path, leaf="200000 100000\n", pod="max 100000\n")
    assert cpus(tmp_path) == (2, f"cgroup v2 cpu.max 200000/100000 in {tmp_path}/{V2}/kubepods/pod1/ctr")


def test_v2_quota_on_a_parent_only_is_the_pod_limit(tmp_path):
    v2_pod(tmp_path, leaf="max 100000\n", pod="300000 100000\n")
    assert cpus(tmp_path) == (3, f"cgroup v2 cpu.max 300000/100000 in {tmp_path}/{V2}/kubepods/pod1")


def test_v2_the_tightest_of_leaf_and_parents_wins(tmp_path):
    v2_pod(tmp_path, leaf="400000 100000\n", pod="600000 100000\n", top="200000 100000\n")
    assert cpus(tmp_path) == (2, f"cgroup v2 cpu.max 200000/100000 in {tmp_path}/{V2}/kubepods")


def test_v2_max_everywhere_falls_back_to_cpu_count(tmp_path):
    v2_pod(tmp_path, leaf="max 100000\n", pod="max 100000\n")
    tree(tmp_path, {f"{V2}/cpu.max": "max 100000\n"})
    assert cpus(tmp_path) == (HOST, "os.cpu_count()")


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("150000 100000", 2),  # 1.5 CPUs keep two workers busy
        ("50000 100000", 1),  # less than one CPU is still one
        ("100000 100000", 1),
        ("100001 100000", 2),
        ("1 1000000", 1),
        ("250000 50000", 5),  # a non-default period
    ],
)
def test_v2_quota_rounds_up_to_whole_cpus(tmp_path, cpu_max, expected):
    v2_pod(tmp_path, leaf=cpu_max + "\n", pod="max 100000\n")
    count, source = cpus(tmp_path)
    assert count == expected
    assert source.startswith(f"cgroup v2 cpu.max {cpu_max.replace(' ', '/')} in ")


def test_v2_private_namespace_reads_the_mount_root(tmp_path):
    """Inside the container's cgroup namespace its own cgroup is "/": the mount root holds its limit."""
    tree(tmp_path, {"proc/self/cgroup": "0::/\n", f"{V2}/cpu.max": "200000 100000\n"})
    assert cpus(tmp_path) == (2, f"cgroup v2 cpu.max 200000/100000 in {tmp_path}/{V2}")


def test_v2_path_missing_under_the_mount_reads_the_mount_root(tmp_path):
    """A host path shown in /proc but not under the container's mount: the mount root is our cgroup."""
    tree(tmp_path, {"proc/self/cgroup": "0::/kubepods/pod1/ctr\n", f"{V2}/cpu.max": "300000 100000\n"})
    assert cpus(tmp_path) == (3, f"cgroup v2 cpu.max 300000/100000 in {tmp_path}/{V2}")


def test_v2_mount_root_is_not_read_twice_or_wrongly_when_the_path_exists(tmp_path):
    """The walk stops at the mount root: a limit there counts (it is a parent), nothing above it."""
    v2_pod(tmp_path, leaf="max 100000\n", pod="max 100000\n")
    tree(tmp_path, {f"{V2}/cpu.max": "100000 100000\n", "sys/fs/cpu.max": "50000 100000\n"})
    assert cpus(tmp_path) == (1, f"cgroup v2 cpu.max 100000/100000 in {tmp_path}/{V2}")


def test_pid_selects_the_proc_entry(tmp_path):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/a\n",
            "proc/4242/cgroup": "0::/b\n",
            f"{V2}/a/cpu.max": "400000 100000\n",
            f"{V2}/b/cpu.max": "200000 100000\n",
        },
    )
    assert cpus(tmp_path, pid="4242")[0] == 2
    assert cpus(tmp_path)[0] == 4


@pytest.mark.parametrize(
    "layout", ["sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuacct,cpu"]
)
def test_v1_quota_in_each_mount_layout(tmp_path, layout):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n",
            f"{layout}/docker/abc/cpu.cfs_quota_us": "200000\n",
            f"{layout}/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus(tmp_path) == (
        2,
        f"cgroup v1 cpu.cfs_quota_us 200000/100000 in {tmp_path}/{layout}/docker/abc",
    )


def test_v1_quota_on_a_parent(tmp_path):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "3:cpu,cpuacct:/kubepods/pod1/ctr\n",
            f"{V1}/kubepods/pod1/ctr/cpu.cfs_quota_us": "-1\n",
            f"{V1}/kubepods/pod1/ctr/cpu.cfs_period_us": "100000\n",
            f"{V1}/kubepods/pod1/cpu.cfs_quota_us": "150000\n",
            f"{V1}/kubepods/pod1/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus(tmp_path) == (2, f"cgroup v1 cpu.cfs_quota_us 150000/100000 in {tmp_path}/{V1}/kubepods/pod1")


def test_v1_unlimited_falls_back_to_cpu_count(tmp_path):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n",
            f"{V1}/docker/abc/cpu.cfs_quota_us": "-1\n",
            f"{V1}/docker/abc/cpu.cfs_period_us": "100000\n",
            f"{V1}/cpu.cfs_quota_us": "-1\n",
            f"{V1}/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus(tmp_path) == (HOST, "os.cpu_count()")


def test_v1_path_missing_under_the_mount_reads_the_mount_root(tmp_path):
    """Docker on v1 shows /docker/abc in /proc but mounts only that subtree at the controller's root."""
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n",
            f"{V1}/cpu.cfs_quota_us": "50000\n",
            f"{V1}/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus(tmp_path) == (1, f"cgroup v1 cpu.cfs_quota_us 50000/100000 in {tmp_path}/{V1}")


def test_affinity_smaller_than_the_quota_wins(tmp_path):
    v2_pod(tmp_path, leaf="400000 100000\n", pod="max 100000\n")
    assert cpus(tmp_path, affinity=3) == (3, f"CPU affinity (3 of {HOST} CPUs)")


def test_quota_smaller_than_the_affinity_wins(tmp_path):
    v2_pod(tmp_path, leaf="200000 100000\n", pod="max 100000\n")
    count, source = cpus(tmp_path, affinity=3)
    assert count == 2 and source.startswith("cgroup v2 cpu.max 200000/100000 in ")


def test_ties_name_the_quota_then_cpu_count(tmp_path):
    v2_pod(tmp_path, leaf="300000 100000\n", pod="max 100000\n")
    assert cpus(tmp_path, affinity=3)[1].startswith("cgroup v2 ")
    assert cpus(tmp_path / "nothing", affinity=HOST) == (HOST, "os.cpu_count()")


def test_affinity_alone_without_cgroups(tmp_path):
    assert cpus(tmp_path, affinity=4, cpu_count=80) == (4, "CPU affinity (4 of 80 CPUs)")


def test_nothing_readable_gives_cpu_count(tmp_path):
    assert cpus(tmp_path / "missing") == (HOST, "os.cpu_count()")


@pytest.mark.parametrize(
    "cpu_max",
    [
        "",
        "banana",
        "100000",  # no period
        "200000 100000 7",
        "-5 100000",
        "0 100000",
        "200000 0",
        "200000 -100000",
        "2e5 1e5",
        "200000.0 100000",
        "\u00b2\u00b2 100000",  # digits to str.isdigit, not to a quota
        b"\xff\xfe\x00 100000",
        b"\x00" * 100_000,
    ],
)
def test_malformed_cpu_max_is_skipped(tmp_path, cpu_max):
    files: dict[str, str | bytes] = {"proc/self/cgroup": "0::/ctr\n", f"{V2}/ctr/cpu.max": cpu_max}
    files[f"{V2}/cpu.max"] = "300000 100000\n"  # a good parent still counts
    tree(tmp_path, files)
    assert cpus(tmp_path) == (3, f"cgroup v2 cpu.max 300000/100000 in {tmp_path}/{V2}")


@pytest.mark.parametrize(
    ("quota", "period"),
    [
        ("banana", "100000"),
        ("200000", "banana"),
        ("200000", None),
        ("0", "100000"),
        ("200000", "0"),
        ("", ""),
    ],
)
def test_malformed_v1_files_are_skipped(tmp_path, quota, period):
    files = {"proc/self/cgroup": "4:cpu,cpuacct:/\n", f"{V1}/cpu.cfs_quota_us": quota}
    if period is not None:
        files[f"{V1}/cpu.cfs_period_us"] = period
    tree(tmp_path, files)
    assert cpus(tmp_path) == (HOST, "os.cpu_count()")


@pytest.mark.parametrize(
    "proc_cgroup",
    [
        "",
        "garbage\n",
        "0::relative/path\n",
        "::\n",
        "0::/../../../etc\n",  # must not read outside the mount
        "0::/a\x00b\n",
        b"\xff\xfe\n0::/\xff\n",
        "4:cpu:\n",
    ],
)
def test_malformed_proc_cgroup_never_raises(tmp_path, proc_cgroup):
    tree(tmp_path, {"proc/self/cgroup": proc_cgroup, "etc/cpu.max": "100000 100000\n"})
    count, source = cpus(tmp_path)
    assert (count, source) == (HOST, "os.cpu_count()")


def test_cpu_max_that_is_a_directory_is_skipped(tmp_path):
    tree(tmp_path, {"proc/self/cgroup": "0::/ctr\n", f"{V2}/ctr/cpu.max/x": ""})
    assert cpus(tmp_path) == (HOST, "os.cpu_count()")


def test_hybrid_prefers_the_v2_hierarchy_that_has_a_quota(tmp_path):
    """A hybrid host: v1 controllers with no quota, plus the unified v2 mount that has one."""
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/svc\n2:memory:/svc\n0::/svc\n",
            f"{V1}/svc/cpu.cfs_quota_us": "-1\n",
            f"{V1}/svc/cpu.cfs_period_us": "100000\n",
            f"{V2}/unified/svc/cpu.max": "200000 100000\n",
        },
    )
    assert cpus(tmp_path) == (2, f"cgroup v2 cpu.max 200000/100000 in {tmp_path}/{V2}/unified/svc")


def test_hybrid_prefers_the_v1_hierarchy_that_has_a_quota(tmp_path):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/svc\n0::/svc\n",
            f"{V1}/svc/cpu.cfs_quota_us": "300000\n",
            f"{V1}/svc/cpu.cfs_period_us": "100000\n",
            f"{V2}/unified/svc/cpu.max": "max 100000\n",
        },
    )
    assert cpus(tmp_path) == (3, f"cgroup v1 cpu.cfs_quota_us 300000/100000 in {tmp_path}/{V1}/svc")


def test_hybrid_with_both_quotas_takes_the_smaller(tmp_path):
    tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/svc\n0::/svc\n",
            f"{V1}/svc/cpu.cfs_quota_us": "300000\n",
            f"{V1}/svc/cpu.cfs_period_us": "100000\n",
            f"{V2}/unified/svc/cpu.max": "100000 100000\n",
        },
    )
    assert cpus(tmp_path)[0] == 1


def test_the_real_machine(capsys):
    count, source = usable_cpus()
    with capsys.disabled():
        print(f"\nusable_cpus() on this machine: {count} ({source})")
    assert isinstance(count, int) and 1 <= count <= (os.cpu_count() or 1)
    assert isinstance(source, str) and source.strip()
