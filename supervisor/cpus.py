"""How many CPUs this process may really use, and where that figure comes from (``--workers auto``).

Why not ``os.cpu_count()``: it counts the host's CPUs, not the ones a container may run on. gunicorn's
and uvicorn's "2 x cores + 1" advice read that way starts 160 workers in a 2-CPU pod on an 80-core
node, and each one fights for the same 2 CPUs and holds its own memory. The real limit is the smallest
of:
- the cgroup v2 quota, ``cpu.max`` ("QUOTA PERIOD", or "max ..." for none) in the process's cgroup
  and every parent up to the mount root, since Kubernetes puts the pod's limit on a parent;
- the cgroup v1 CFS quota, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 for none), walked the same
  way, for hosts still on v1 or hybrid ones (v1 controllers plus a ``0::`` line);
- the CPU affinity mask (``taskset``, ``docker --cpuset-cpus``, a cpuset), when the OS reports one;
- ``os.cpu_count()``, the fallback.
A quota of Q microseconds per period P allows ``ceil(Q / P)`` busy CPUs (1.5 CPUs can still keep two
workers busy half the time); the answer is at least 1. Only files are read, no command is run, and a
file that is missing, unreadable or malformed is skipped: the function always returns a figure.

A container with a private cgroup namespace sees its own cgroup as ``/`` (``0::/``), and a v1
container sees the host's path (``/docker/abc``) while its mount shows only its own subtree; either
way the path from ``/proc`` does not name a directory under the mount, so the mount root is read
instead, which in such a container is the container's own cgroup.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

__all__ = ["usable_cpus"]

# Where cgroup v2 is mounted: /sys/fs/cgroup on v2-only hosts, /sys/fs/cgroup/unified on hybrid ones.
_V2_MOUNTS = ("sys/fs/cgroup", "sys/fs/cgroup/unified")
# Where the v1 cpu controller is mounted: distributions differ (often one is a symlink to another).
_V1_MOUNTS = ("sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuacct,cpu")
# No file read here is legitimately longer; a bigger one is garbage and is cut, not slurped.
_MAX_READ = 64 * 1024

Limit = tuple[int, str]
QuotaReader = Callable[[Path], Limit | None]


def usable_cpus(
    root: str | os.PathLike[str] = "/",
    pid: str = "self",
    *,
    affinity: int | None = None,
    cpu_count: int | None = None,
) -> Limit:
    """The number of CPUs the process ``pid`` may use, and one line saying which limit decided it.

    ``root`` is prepended to every path read so tests can build a fake ``/proc`` and ``/sys``.
    ``affinity`` (of ``pid``) and ``cpu_count`` default to the real figures (``None`` means "read it").
    On a tie the cgroup quota is named first, then ``os.cpu_count()``, then the affinity mask.
    """
    base = Path(root)
    host = cpu_count if cpu_count is not None else os.cpu_count()
    if affinity is None:
        affinity = _affinity(str(pid))
    candidates = _cgroup_limits(base, str(pid))
    if host is not None and host >= 1:
        candidates.append((host, "os.cpu_count()"))
    if affinity is not None and affinity >= 1:
        of = f" of {host}" if host else ""
        candidates.append((affinity, f"CPU affinity ({affinity}{of} CPUs)"))
    if not candidates:
        return 1, "no CPU count available (os.cpu_count() unknown)"
    cpus, source = min(candidates, key=lambda candidate: candidate[0])
    return max(1, cpus), source


def _affinity(pid: str) -> int | None:
    """The size of ``pid``'s CPU affinity mask, where the OS has one (Linux, some BSDs)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is None or not (pid == "self" or pid.isdecimal()):
        return None
    try:
        return len(getaffinity(0 if pid == "self" else int(pid))) or None
    except (OSError, ValueError, OverflowError):
        return None


def _cgroup_limits(base: Path, pid: str) -> list[Limit]:
    """Every quota found for ``pid`` in cgroup v2 and v1, the tightest of each hierarchy first."""
    text = _read(base / "proc" / pid / "cgroup")
    if text is None:
        return []
    limits: list[Limit] = []
    for path, controllers in _memberships(text):
        if controllers == {""}:
            limits.extend(_walk(base, _V2_MOUNTS, path, _v2_quota))
        elif "cpu" in controllers:
            limits.extend(_walk(base, _V1_MOUNTS, path, _v1_quota))
    return limits


def _memberships(text: str) -> list[tuple[str, set[str]]]:
    """The ``(cgroup path, controllers)`` pairs of a ``/proc/<pid>/cgroup`` file; v2's is ``{""}``."""
    memberships: list[tuple[str, set[str]]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        memberships.append((parts[2], set(parts[1].split(","))))
    return memberships


def _walk(base: Path, mounts: tuple[str, ...], cgroup: str, quota_in: QuotaReader) -> list[Limit]:
    """The tightest quota over the cgroup's directory and its parents, under each candidate mount."""
    relative = PurePosixPath(cgroup).parts[1:]
    if ".." in relative:  # a malformed path must not lead outside the mount
        relative = ()
    limits: list[Limit] = []
    for mount in mounts:
        found = [limit for directory in _lineage(base / mount, relative) if (limit := quota_in(directory))]
        if found:
            limits.append(min(found, key=lambda limit: limit[0]))
    return limits


def _lineage(mount: Path, relative: tuple[str, ...]) -> list[Path]:
    """The cgroup's directory and each parent up to the mount; only the mount if the path is not there.

    The second case is the private-namespace one (module docstring): the mount root is our cgroup.
    """
    leaf = mount.joinpath(*relative)
    if not leaf.is_dir():
        return [mount]
    return [mount.joinpath(*relative[:depth]) for depth in range(len(relative), -1, -1)]


def _v2_quota(directory: Path) -> Limit | None:
    """The CPUs allowed by ``cpu.max`` in ``directory``, or None if unlimited, missing or malformed."""
    text = _read(directory / "cpu.max")
    fields = text.split() if text else []
    if len(fields) != 2 or fields[0] == "max":
        return None
    quota, period = _positive(fields[0]), _positive(fields[1])
    if quota is None or period is None:
        return None
    return _ceil(quota, period), f"cgroup v2 cpu.max {quota}/{period} in {directory}"


def _v1_quota(directory: Path) -> Limit | None:
    """The CPUs allowed by the CFS quota in ``directory``, or None if unlimited (-1), missing or malformed."""
    quota = _positive((_read(directory / "cpu.cfs_quota_us") or "").strip())
    if quota is None:
        return None
    period = _positive((_read(directory / "cpu.cfs_period_us") or "").strip())
    if period is None:
        return None
    return _ceil(quota, period), f"cgroup v1 cpu.cfs_quota_us {quota}/{period} in {directory}"


def _ceil(quota: int, period: int) -> int:
    """Whole CPUs for a quota: 1.5 CPUs keep 2 workers busy; at least 1."""
    return max(1, -(-quota // period))


def _positive(field: str) -> int | None:
    """A positive decimal integer, or None (v1's -1 "no limit" and garbage alike)."""
    if not field.isascii() or not field.isdigit():
        return None
    value = int(field)
    return value if value > 0 else None


def _read(path: Path) -> str | None:
    """A small text file's content, or None if it cannot be read; odd bytes survive for path names."""
    try:
        with open(path, "rb") as file:
            return file.read(_MAX_READ).decode("utf-8", "surrogateescape")
    except (OSError, ValueError):  # ValueError: a NUL byte in a path taken from /proc
        return None
