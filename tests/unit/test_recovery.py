"""What an unfinished workflow is owed after a restart, from its state alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from flow.core.commands import RunActivity
from flow.core.decide import decide
from flow.core.events import ActivityCompleted, ActivityStarted, TimerKind, WorkflowStarted
from flow.core.policy import RetryPolicy, Timeouts
from flow.core.recovery import DueTimer, Owed, owed
from flow.core.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus

T0 = datetime(2026, 1, 1, 12, 0, 0)
S = ActivityStatus


def state(*activities: ActivityState, config: dict | None = None, started: bool = True) -> WorkflowState:
    return WorkflowState(
        id="wf-1",
        name="W",
        definition_version=1,
        status=WorkflowStatus.IN_PROGRESS,
        input_data={},
        config=config or {},
        activities=activities,
        created_at=T0,
        started=started,
        run_started_at=T0 if started else None,
    )


def activity(position: int, status: ActivityStatus = S.PENDING, attempt: int = 0, **fields) -> ActivityState:
    return ActivityState(
        position=position,
        name=f"A{position}",
        independent=True,
        required=True,
        config={},
        status=status,
        attempt=attempt,
        **fields,
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_workflow_created_but_never_started_is_owed_its_start():
    assert owed(state(activity(0), started=False)) == Owed(start=True)


def test_an_ended_workflow_is_owed_nothing():
    assert owed(replace(state(activity(0, S.SCHEDULED, 1)), status=WorkflowStatus.FAILED)) == Owed()


def test_every_attempt_in_flight_runs_again_with_its_own_number():
    s = state(activity(0, S.SCHEDULED, 1), activity(1, S.STARTED, 3), activity(2, S.SUCCEEDED, 1), activity(3))
    assert owed(s).runs == (RunActivity(0, 1), RunActivity(1, 3))


def test_timeouts_are_due_from_when_their_attempt_was_scheduled_or_started():
    timeouts = Timeouts(schedule_to_start_s=5, start_to_close_s=60)
    s = state(
        activity(0, S.SCHEDULED, 1, timeouts=timeouts, scheduled_at=at(10)),
        activity(1, S.STARTED, 2, timeouts=timeouts, scheduled_at=at(10), started_at=at(20)),
    )
    assert owed(s).timers == (
        DueTimer(TimerKind.SCHEDULE_TO_START, 0, 1, at(15)),
        DueTimer(TimerKind.START_TO_CLOSE, 1, 2, at(80)),
    )


def test_the_workflow_timeout_counts_from_the_run_start():
    s = replace(
        state(activity(0, S.SCHEDULED, 1), config={"timeouts": {"workflow_s": 30}}), run=2, run_started_at=at(100)
    )
    assert owed(s).timers == (DueTimer(TimerKind.WORKFLOW, None, 2, at(130)),)


def test_a_retry_is_due_when_the_decision_said_not_at_once():
    """The retry timer the decision set and the one recovery derives are the same timer."""
    retry = RetryPolicy(max_attempts=3, initial_delay_ms=4000, jitter=0.5)
    s = decide(state(activity(0, retry=retry), started=False), WorkflowStarted(at(0))).state
    s = decide(s, ActivityStarted(0, 1, at(1))).state
    decision = decide(s, ActivityCompleted(0, 1, "TEMPORARY_FAILURE", occurred_at=at(2), finished_at=at(2)))
    [timer] = [c for c in decision.commands if getattr(c, "kind", None) == TimerKind.RETRY]
    assert decision.state.activities[0].status is S.WAITING_RETRY
    assert owed(decision.state).timers == (
        DueTimer(TimerKind.RETRY, 0, 2, at(2) + timedelta(milliseconds=timer.delay_ms)),
    )
