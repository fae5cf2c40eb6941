"""Pause and resume, decided by the pure ``decide()``: while paused nothing new is
scheduled; what runs finishes and is recorded; resuming goes on from there."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from api.views import workflow_view
from flow.core.commands import RunActivity
from flow.core.events import CancelRequested, PauseRequested, ResumeRequested, TimerFired
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from flow.persistence.mapping import StoredWorkflow
from tests.unit.test_graph import Run, state_of
from tests.unit.test_maps import in_flight, mapped

S = ActivityStatus


def pause(run: Run) -> None:
    run.decision = run._decide(PauseRequested(occurred_at=run._now()))


def resume(run: Run) -> None:
    run.decision = run._decide(ResumeRequested(occurred_at=run._now()))


def types(run: Run) -> list[HistoryType]:
    return [h.type for h in run.decision.history]


def test_paused_the_running_activity_finishes_and_the_next_waits_for_resume():
    run = Run(state_of({"name": "A"}, {"name": "B"}))
    pause(run)
    assert run.state.paused and types(run) == [HistoryType.PAUSE_REQUESTED, HistoryType.PAUSE_WORKFLOW]
    run.end("A", output=1)
    assert run.status("A") is S.SUCCEEDED and run.status("B") is S.PENDING and run.scheduled() == []
    resume(run)
    assert not run.state.paused and run.scheduled() == ["B"]
    run.end("B")
    assert run.state.status is WorkflowStatus.FINISHED


def test_a_repeated_pause_or_a_resume_of_a_running_workflow_does_nothing():
    run = Run(state_of({"name": "A"}))
    resume(run)
    assert run.decision.history[-1].data["reason"] == "workflow not paused"
    pause(run)
    pause(run)
    assert run.decision.history[-1].data["reason"] == "workflow already paused"


def test_a_retry_of_an_attempt_in_flight_goes_on_while_paused():
    run = Run(state_of({"name": "A", "config": {"retry": {"max_attempts": 2}}}))
    pause(run)
    run.end("A", Outcome.TEMPORARY_FAILURE)
    a = run.activity("A")
    run.decision = run._decide(TimerFired(TimerKind.RETRY, a.position, a.attempt + 1, occurred_at=run._now()))
    assert run.scheduled() == ["A"]


def test_a_paused_map_holds_its_next_items_and_resume_sends_them():
    run = Run(state_of(mapped(max_concurrency=2), input_data={"items": [1, 2, 3, 4]}))
    pause(run)
    run.end("each[0]", output=1)
    run.end("each[1]", output=2)
    assert in_flight(run) == [] and run.status("each") is S.RUNNING
    resume(run)
    assert run.scheduled() == ["each[2]", "each[3]"]
    run.end("each[2]", output=3)
    run.end("each[3]", output=4)
    assert run.activity("each").output == [1, 2, 3, 4] and run.state.status is WorkflowStatus.FINISHED


def test_a_map_whose_items_all_ended_while_paused_ends_on_resume():
    run = Run(state_of(mapped(), {"name": "B"}, input_data={"items": [1, 2]}))
    pause(run)
    run.end("each[0]", output=1)
    run.end("each[1]", output=2)
    assert run.status("each") is S.SUCCEEDED and run.status("B") is S.PENDING  # ended; B held
    resume(run)
    assert run.scheduled() == ["B"]


def test_pause_then_cancel_cancels():
    run = Run(state_of({"name": "A"}, {"name": "B"}))
    pause(run)
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    assert run.state.status is WorkflowStatus.CANCELLED and run.status("B") is S.CANCELLED
    resume(run)
    assert run.decision.history[-1].data["reason"] == "workflow Cancelled"
    assert not any(isinstance(c, RunActivity) for c in run.decision.commands)


def test_a_paused_workflow_that_is_cancelled_is_no_longer_paused():
    run = Run(state_of({"name": "A"}, {"name": "B"}))
    pause(run)
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    assert run.state.status is WorkflowStatus.CANCELLED and not run.state.paused


def test_a_paused_workflow_that_fails_is_no_longer_paused():
    run = Run(state_of({"name": "A"}, {"name": "B"}))
    pause(run)
    run.end("A", Outcome.PERMANENT_FAILURE)
    assert run.state.status is WorkflowStatus.FAILED and not run.state.paused


def test_a_stored_ended_workflow_with_the_old_paused_flag_is_shown_not_paused():
    """Rows written before the end of a run cleared the flag say paused and Cancelled."""
    run = Run(state_of({"name": "A"}))
    ended = replace(run.state, status=WorkflowStatus.CANCELLED, paused=True)
    row = StoredWorkflow(ended, version=3, partition=0, updated_at=datetime(2026, 1, 1), idempotency_key=None)
    assert workflow_view(row)["paused"] is False
    assert workflow_view(replace(row, state=replace(ended, status=WorkflowStatus.IN_PROGRESS)))["paused"] is True
