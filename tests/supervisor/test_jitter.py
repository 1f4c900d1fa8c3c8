"""--limit-max-requests-jitter staggers recycling: each worker draws its own limit, also under --preload."""

from __future__ import annotations

import re

import pytest

from tests.supervisor.harness import supervise

pytestmark = pytest.mark.slow

_LIMIT = re.compile(r"Process (\d+) serves at most (\d+) requests")


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-import", "preload"])
def test_each_worker_draws_its_own_jitter(preload):
    # A jitter of 10**6 makes two equal draws a one-in-a-million event, not a flaky test.
    args = ["--workers", "2", "--limit-max-requests", "1000", "--limit-max-requests-jitter", "1000000"]
    args += ["--log-level", "debug"] + (["--preload"] if preload else [])
    with supervise("supapps:info", *args) as sup:
        sup.wait_log("serves at most", count=2)
        limits = {int(pid): int(limit) for pid, limit in _LIMIT.findall(sup.log)}
        assert set(limits) == {worker.pid for worker in sup.workers()}
        assert len(set(limits.values())) == 2, limits
        assert all(1000 <= limit <= 1_001_000 for limit in limits.values())
