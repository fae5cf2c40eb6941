"""The decision function, rule by rule: (state, event) -> expected decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from flow.commands import RunActivity, StartRetryTimer
from flow.decide import decide, ready_positions
from flow.events import ActivityCompleted, ActivityStarted, RetryDue, WorkflowStarted
from flow.policy import RetryPolicy
from flow.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus

T0 = datetime(2026, 1, 1, 12, 0, 0)
S, P = ActivityStatus, WorkflowStatus


def make_state(*specs: tuple[bool, bool], max_attempts: int = 3, started: bool = False) -> WorkflowState:
    """One activity per ``(independent, required)`` pair."""
    activities = tuple(
        ActivityState(
            position=i,
            name=f"A{i}",
            independent=independent,
            required=required,
            config={},
            retry=RetryPolicy(max_attempts=max_attempts, initial_delay_ms=1000, jitter=0),
        )
        for i, (independent, required) in enumerate(specs)
    )
    return WorkflowState(
        id="wf-1",
        name="W",
        definition_version=1,
        status=P.IN_PROGRESS,
        input_data={},
        config={},
        activities=activities,
        created_at=T0,
        started=started,
    )


def at(seconds: float = 1) -> datetime:
    return T0 + timedelta(seconds=seconds)


def with_statuses(state: WorkflowState, *statuses: ActivityStatus, attempt: int = 1) -> WorkflowState:
    activities = tuple(
        replace(a, status=s, attempt=0 if s is S.PENDING else attempt)
        for a, s in zip(state.activities, statuses, strict=True)
    )
    return replace(state, activities=activities, started=True)


def types(decision) -> list[str]:
    return [h.type for h in decision.history]


def completed(position: int, outcome: str, attempt: int = 1) -> ActivityCompleted:
    return ActivityCompleted(position, attempt, outcome, occurred_at=at(2), output={"p": position})


SEQ, IND, OPT = (False, True), (True, True), (False, False)


@pytest.mark.parametrize(
    ("specs", "scheduled"),
    [
        ([SEQ, SEQ, SEQ], [0]),
        ([IND, IND, SEQ], [0, 1]),
        ([SEQ, IND, SEQ], [0, 1]),
        ([IND, SEQ, IND], [0, 2]),
    ],
)
def test_start_schedules_first_activity_and_every_independent_one(specs, scheduled):
    decision = decide(make_state(*specs), WorkflowStarted(at()))
    assert decision.commands == tuple(RunActivity(p, 1) for p in scheduled)
    assert types(decision) == ["start-workflow"] + ["schedule-activity"] * len(scheduled)
    assert [a.position for a in decision.state.activities if a.status is S.SCHEDULED] == scheduled
    assert decision.state.started


def test_second_start_changes_nothing():
    first = decide(make_state(SEQ), WorkflowStarted(at())).state
    again = decide(first, WorkflowStarted(at(2)))
    assert again.state == first
    assert again.commands == ()
    assert types(again) == ["do-nothing"]


def test_dependent_activity_waits_for_every_activity_listed_before_it():
    state = with_statuses(make_state(IND, IND, SEQ), S.SCHEDULED, S.SCHEDULED, S.PENDING)
    after_first = decide(state, completed(0, "SUCCEEDED"))
    assert after_first.commands == ()
    assert types(after_first) == ["activity-result", "do-nothing"]
    after_second = decide(after_first.state, completed(1, "SUCCEEDED"))
    assert after_second.commands == (RunActivity(2, 1),)


def test_success_of_last_activity_finishes_the_workflow_with_outputs_by_name():
    state = with_statuses(make_state(SEQ, SEQ), S.SUCCEEDED, S.SCHEDULED)
    state = replace(state, activities=(replace(state.activities[0], output={"p": 0}), state.activities[1]))
    decision = decide(state, completed(1, "SUCCEEDED"))
    assert decision.state.status is P.FINISHED
    assert decision.state.finished_at == at(2)
    assert decision.state.output == {"A0": {"p": 0}, "A1": {"p": 1}}
    assert types(decision) == ["activity-result", "workflow-finished"]


def test_temporary_failure_is_rescheduled_with_backoff_until_attempts_run_out():
    state = with_statuses(make_state(SEQ, max_attempts=3), S.SCHEDULED)
    first = decide(state, completed(0, "TEMPORARY_FAILURE", attempt=1))
    assert first.state.activities[0].status is S.WAITING_RETRY
    assert first.commands == (StartRetryTimer(0, 2, 1000),)
    assert types(first) == ["activity-result", "reschedule-activity"]

    due = decide(first.state, RetryDue(0, 2, at(3)))
    assert due.commands == (RunActivity(0, 2),)
    assert due.state.activities[0].attempt == 2

    second = decide(due.state, completed(0, "TEMPORARY_FAILURE", attempt=2))
    assert second.commands == (StartRetryTimer(0, 3, 2000),)  # doubled

    third_run = decide(second.state, RetryDue(0, 3, at(5))).state
    last = decide(third_run, completed(0, "TEMPORARY_FAILURE", attempt=3))
    assert last.state.activities[0].status is S.FAILED
    assert last.state.status is P.FAILED
    assert types(last)[-1] == "workflow-failure"


def test_permanent_failure_is_never_retried():
    state = with_statuses(make_state(SEQ, max_attempts=5), S.SCHEDULED)
    decision = decide(state, completed(0, "PERMANENT_FAILURE"))
    assert decision.commands == ()
    assert decision.state.activities[0].status is S.FAILED


def test_required_permanent_failure_fails_workflow_and_schedules_nothing_more():
    state = with_statuses(make_state(SEQ, IND, SEQ), S.SCHEDULED, S.SCHEDULED, S.PENDING)
    decision = decide(state, completed(0, "PERMANENT_FAILURE"))
    assert decision.state.status is P.FAILED
    assert decision.commands == ()
    assert "A0" in decision.state.error
    statuses = [a.status for a in decision.state.activities]
    # The in-flight one keeps running (its late result is recorded); the waiting one is skipped.
    assert statuses == [S.FAILED, S.SCHEDULED, S.SKIPPED]
    assert types(decision) == ["activity-result", "workflow-failure"]


def test_optional_permanent_failure_is_recorded_and_the_workflow_goes_on():
    state = with_statuses(make_state(OPT, SEQ), S.SCHEDULED, S.PENDING)
    decision = decide(state, completed(0, "PERMANENT_FAILURE"))
    assert decision.state.status is P.IN_PROGRESS
    assert decision.state.activities[0].status is S.FAILED
    assert decision.commands == (RunActivity(1, 1),)


def test_optional_failure_of_the_last_activity_still_finishes_the_workflow():
    state = with_statuses(make_state(SEQ, OPT), S.SUCCEEDED, S.SCHEDULED)
    decision = decide(state, completed(1, "PERMANENT_FAILURE"))
    assert decision.state.status is P.FINISHED


def test_late_result_after_workflow_failed_is_recorded_and_ignored():
    state = with_statuses(make_state(SEQ, IND, SEQ), S.SCHEDULED, S.SCHEDULED, S.PENDING)
    failed = decide(state, completed(0, "PERMANENT_FAILURE")).state
    late = decide(failed, completed(1, "SUCCEEDED"))
    assert late.commands == ()
    assert late.state.status is P.FAILED
    assert late.state.activities[1].status is S.SUCCEEDED
    assert late.state.activities[2].status is S.SKIPPED
    assert types(late) == ["activity-result", "do-nothing"]


@pytest.mark.parametrize(
    "event",
    [
        completed(0, "SUCCEEDED", attempt=2),  # an attempt that never ran
        completed(5, "SUCCEEDED"),  # no such activity
        ActivityStarted(0, 2, at()),
        RetryDue(0, 2, at()),  # not waiting for a retry
    ],
)
def test_stale_events_are_recorded_and_change_nothing(event):
    state = with_statuses(make_state(SEQ), S.SCHEDULED)
    decision = decide(state, event)
    assert decision.state == state
    assert decision.commands == ()
    assert decision.history[0].data["stale"] is True
    assert types(decision)[-1] == "do-nothing"


def test_duplicate_result_changes_nothing():
    state = with_statuses(make_state(SEQ, SEQ), S.SCHEDULED, S.PENDING)
    once = decide(state, completed(0, "SUCCEEDED"))
    twice = decide(once.state, completed(0, "SUCCEEDED"))
    assert twice.state == once.state
    assert twice.commands == ()


def test_started_marks_the_current_attempt_started():
    state = with_statuses(make_state(SEQ), S.SCHEDULED)
    decision = decide(state, ActivityStarted(0, 1, at(1.5)))
    assert decision.state.activities[0].status is S.STARTED
    assert decision.state.activities[0].started_at == at(1.5)
    assert types(decision) == ["activity-started", "do-nothing"]


def test_result_after_started_is_accepted():
    state = with_statuses(make_state(SEQ), S.STARTED)
    assert decide(state, completed(0, "SUCCEEDED")).state.status is P.FINISHED


def test_retry_due_after_workflow_failed_schedules_nothing():
    state = with_statuses(make_state(SEQ, IND), S.WAITING_RETRY, S.SCHEDULED)
    failed = decide(state, completed(1, "PERMANENT_FAILURE")).state
    assert failed.activities[0].status is S.SKIPPED
    assert decide(failed, RetryDue(0, 2, at(3))).commands == ()


def test_ready_positions_is_empty_before_start():
    assert ready_positions(make_state(IND, SEQ)) == []


def test_decide_is_deterministic():
    state = with_statuses(make_state(SEQ, max_attempts=3), S.SCHEDULED)
    event = completed(0, "TEMPORARY_FAILURE")
    assert decide(state, event) == decide(state, event)
