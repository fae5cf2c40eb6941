"""The other outcome of a decision that queues a limited step (:func:`flow.core.at_once.let_in`): the
step let in as its grant would have let it in, offered only for what this decision queued, for a
concurrency limit, in a run that goes on and is not paused."""

from __future__ import annotations

from dataclasses import replace

from flow.core.at_once import MOST, let_in
from flow.core.commands import RunActivity
from flow.core.events import TimerFired
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind, WorkflowStatus
from tests.unit.test_graph import T0
from tests.unit.test_limits import limited, run_of

S = ActivityStatus


def test_a_step_queued_by_the_decision_is_offered_scheduled_as_its_grant_would_have():
    run = run_of(limited("input.tenant"))
    assert run.status("pay") is S.QUEUED
    other = let_in(run.state, [run.decision], T0)
    assert other is not None
    assert [c.key for c in other.claims] == ["acme"]
    [decision] = other.decisions
    assert [(e.type, e.position) for e in decision.history] == [
        (HistoryType.TIMER_FIRED, 0),
        (HistoryType.SCHEDULE_ACTIVITY, 0),
    ]
    assert [c for c in decision.commands if isinstance(c, RunActivity)] == [RunActivity(0, 1)]
    assert other.state.activities[0].status is S.SCHEDULED and other.state.activities[0].attempt == 1
    # The grant's own path decides the same.
    granted = run._decide(TimerFired(TimerKind.SLOT, 0, 1, occurred_at=T0))
    assert granted.state == other.state


def test_a_step_that_waited_before_is_not_offered():
    run = run_of(limited("input.tenant"), {"name": "A", "id": "next", "independent": True})
    queued = run.state
    run.end("next")  # a later decision: the step it did not queue keeps its place in the loop's order
    assert let_in(run.state, [run.decision], T0) is None
    assert let_in(queued, [], T0) is None


def test_a_rate_limited_step_is_not_offered():
    run = run_of({"name": "A", "id": "mail", "rate_limit": {"per_s": 10}})
    assert run.status("mail") is S.QUEUED
    assert let_in(run.state, [run.decision], T0) is None


def test_nothing_is_offered_for_a_paused_or_ended_run():
    run = run_of(limited("input.tenant"))
    assert let_in(replace(run.state, paused=True), [run.decision], T0) is None
    assert let_in(replace(run.state, status=WorkflowStatus.CANCELLED), [run.decision], T0) is None


def test_more_steps_queued_at_once_than_most_are_left_to_the_admission_loop():
    few = run_of(*[{**limited("input.tenant"), "id": f"s{i}", "independent": True} for i in range(MOST)])
    offered = let_in(few.state, [few.decision], T0)
    assert offered is not None and len(offered.claims) == MOST
    many = run_of(*[{**limited("input.tenant"), "id": f"s{i}", "independent": True} for i in range(MOST + 1)])
    assert let_in(many.state, [many.decision], T0) is None
