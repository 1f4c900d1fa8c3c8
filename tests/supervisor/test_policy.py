"""The supervisor's decisions, as a pure function of the worker table and the time."""

from __future__ import annotations

from supervisor.policy import Action, WorkerState, WorkerView, decide

B, R, D = WorkerState.BOOTING, WorkerState.READY, WorkerState.DRAINING


def w(pid, slot, state=R, started=90.0, beat=100.0, reason=None, deadline=0.0, dumped=False):
    return WorkerView(pid, slot, state, started, beat, reason, deadline, dumped)


def actions(workers, now=100.0, target=2, stopping=False, quick=False):
    return [(a, t) for a, t, _ in decide(workers, now, target, 30.0, 60.0, stopping, quick).actions]


def test_fills_every_empty_slot():
    assert actions([], target=3) == [(Action.SPAWN, 0), (Action.SPAWN, 1), (Action.SPAWN, 2)]
    assert actions([w(1, 0)], target=2) == [(Action.SPAWN, 1)]
    assert actions([w(1, 0), w(2, 1)]) == []


def test_replacement_is_ready_before_the_old_worker_drains():
    due = w(1, 0, reason="max-requests")
    assert actions([due, w(2, 1)]) == [(Action.SPAWN, 0)]
    assert actions([due, w(3, 0, B), w(2, 1)]) == []  # still booting: the old one keeps serving
    assert actions([due, w(3, 0, R), w(2, 1)]) == [(Action.DRAIN, 1)]


def test_one_replacement_at_a_time():
    a, b = w(1, 0, reason="rolling restart"), w(2, 1, reason="rolling restart")
    assert actions([a, b]) == [(Action.SPAWN, 0)]
    assert actions([a, b, w(3, 0, B)]) == []
    assert actions([a, b, w(3, 0, R)]) == [(Action.DRAIN, 1), (Action.SPAWN, 1)]


def test_silent_worker_is_dumped_then_killed_and_replaced_at_once():
    assert actions([w(1, 0, beat=50.0), w(2, 1)]) == [(Action.DUMP_STACK, 1)]
    dumped = w(1, 0, beat=50.0, dumped=True, deadline=101.0)
    assert actions([dumped, w(2, 1)]) == [(Action.SPAWN, 0)]
    assert actions([dumped, w(2, 1), w(3, 0, B)], now=101.5) == [(Action.KILL, 1)]


def test_booting_worker_gets_the_boot_timeout():
    assert actions([w(1, 0, B, started=0.0, beat=0.0), w(2, 1)], now=59.0) == []
    assert actions([w(1, 0, B, started=0.0, beat=0.0), w(2, 1)], now=61.0)[0] == (Action.KILL, 1)


def test_draining_worker_is_killed_at_its_deadline():
    draining = w(1, 0, D, deadline=120.0)
    assert (Action.KILL, 1) not in actions([draining, w(2, 0), w(3, 1)], now=119.0)
    assert (Action.KILL, 1) in actions([draining, w(2, 0), w(3, 1)], now=121.0)


def test_scale_down_drains_the_highest_slots():
    assert actions([w(1, 0), w(2, 1), w(3, 2)], target=2) == [(Action.DRAIN, 3)]


def test_stopping_drains_everyone_once_quick_or_not():
    table = [w(1, 0), w(2, 1, D, deadline=200.0)]
    assert actions(table, stopping=True) == [(Action.DRAIN, 1)]
    assert actions(table, stopping=True, quick=True) == [(Action.QUICK, 1)]
    assert actions([w(1, 0, WorkerState.EXITED)], stopping=True) == []
