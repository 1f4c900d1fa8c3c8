"""The supervisor's decisions as a pure function: (worker table, time, target) -> actions.

Invariants the arbiter keeps by executing these actions, and nothing else:
1. Every slot 0..target-1 has one serving worker (BOOTING or READY, not DRAINING); an empty slot
   (crash, kill, scale-up) is filled at once.
2. A worker due for replacement (max requests, memory, rolling restart) keeps serving until the
   replacement in its slot is READY; only then is it told to drain. Replacements happen one slot
   at a time, so capacity never drops by more than the one booting worker.
3. A READY worker silent for longer than the healthcheck timeout is blocked: dump its stack, kill
   it (its slot is then empty: rule 1). A BOOTING one gets the boot timeout.
4. A DRAINING worker past its deadline is killed; when stopping, every worker drains, then the
   stragglers are killed, and the supervisor exits when none is left.
5. Slots past the target (scale-down) drain their workers.
This module imports no os, signal or time: the arbiter passes ``now`` and applies the result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Action", "Decision", "WorkerState", "WorkerView", "decide"]


class WorkerState(enum.Enum):
    BOOTING = "booting"
    READY = "ready"
    DRAINING = "draining"
    EXITED = "exited"


# Seconds between dumping a blocked worker's stack and killing it: time for the dump to be written.
DUMP_GRACE = 1.0


class Action(enum.Enum):
    SPAWN = "spawn"  # slot
    DRAIN = "drain"  # pid: SIGTERM, graceful
    QUICK = "quick stop"  # pid: SIGQUIT
    DUMP_STACK = "dump stack"  # pid: SIGUSR2 (faulthandler)
    KILL = "kill"  # pid: SIGKILL


@dataclass
class WorkerView:
    """What the policy reads of one worker (the arbiter's record provides these fields)."""

    pid: int
    slot: int
    state: WorkerState
    started: float
    last_beat: float
    replace_reason: str | None = None  # set when the worker should be replaced
    deadline: float = 0.0  # DRAINING: kill after; READY with a dumped stack: kill after
    dumped: bool = False


@dataclass
class Decision:
    """One step's actions, in order; ``reason`` is logged with each."""

    actions: list[tuple[Action, int, str]] = field(default_factory=list)

    def add(self, action: Action, target: int, reason: str) -> None:
        self.actions.append((action, target, reason))


def decide(
    workers: list[WorkerView],
    now: float,
    target: int,
    healthcheck_timeout: float,
    boot_timeout: float,
    stopping: bool = False,
    quick: bool = False,
) -> Decision:
    """The actions that restore the invariants above, given the table as it is at ``now``."""
    decision = Decision()
    alive = [w for w in workers if w.state is not WorkerState.EXITED]
    for worker in alive:
        _check_health(decision, worker, now, healthcheck_timeout, boot_timeout)
    if stopping:
        for worker in alive:
            if worker.state is not WorkerState.DRAINING and not worker.dumped:
                decision.add(Action.QUICK if quick else Action.DRAIN, worker.pid, "stopping")
        return decision
    booting = {w.slot for w in alive if w.state is WorkerState.BOOTING and w.replace_reason is None}
    for slot in range(target):
        _manage_slot(decision, [w for w in alive if w.slot == slot], slot, booting)
    for worker in alive:
        if worker.slot >= target and worker.state is not WorkerState.DRAINING:
            decision.add(Action.DRAIN, worker.pid, "fewer workers")
    return decision


def _check_health(
    decision: Decision, worker: WorkerView, now: float, healthcheck_timeout: float, boot_timeout: float
) -> None:
    if worker.state is WorkerState.DRAINING:
        if worker.deadline and now >= worker.deadline:
            decision.add(Action.KILL, worker.pid, "graceful stop timed out")
        return
    if worker.dumped:
        if now >= worker.deadline:
            decision.add(Action.KILL, worker.pid, "event loop blocked")
        return
    if worker.state is WorkerState.READY and now - worker.last_beat > healthcheck_timeout:
        decision.add(Action.DUMP_STACK, worker.pid, f"no heartbeat for {now - worker.last_beat:.1f} s")
    elif worker.state is WorkerState.BOOTING and now - worker.started > boot_timeout:
        decision.add(Action.KILL, worker.pid, f"not ready after {boot_timeout:.0f} s")


def _manage_slot(decision: Decision, in_slot: list[WorkerView], slot: int, booting: set[int]) -> None:
    """Fill or replace the worker of ``slot``; ``booting`` holds the slots with a fresh worker
    booting (a replacement spawned here is added to it)."""
    serving = [w for w in in_slot if w.state is not WorkerState.DRAINING and not w.dumped]
    if not serving:
        decision.add(Action.SPAWN, slot, "empty slot")
        return
    due = [w for w in serving if w.replace_reason is not None]
    fresh = [w for w in serving if w.replace_reason is None]
    if not due:
        return
    if any(w.state is WorkerState.READY for w in fresh):
        for worker in due:
            decision.add(Action.DRAIN, worker.pid, f"replaced ({worker.replace_reason})")
        return
    if fresh or booting - {slot}:
        return  # this slot's replacement is booting, or another slot's is: one at a time
    booting.add(slot)
    decision.add(Action.SPAWN, slot, f"replacement ({due[0].replace_reason})")
