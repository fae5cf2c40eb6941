"""The decision function, rule by rule: (state, event) -> expected decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from flow.core.commands import CancelAttempt, CancelTimer, RunActivity, StartTimer
from flow.core.decide import decide
from flow.core.events import (
    ActivityCompleted,
    ActivityStarted,
    CancelRequested,
    RetryRequested,
    TimerFired,
    WorkflowStarted,
)
from flow.core.graph import ready_positions
from flow.core.policy import RetryPolicy, Timeouts
from flow.core.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus
from flow.core.vocabulary import HistoryType, Outcome, TimerKind

T0 = datetime(2026, 1, 1, 12, 0, 0)
S, P, H = ActivityStatus, WorkflowStatus, HistoryType


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


def types(decision) -> list[HistoryType]:
    types = [h.type for h in decision.history]
    assert all(type(t) is HistoryType for t in types), types  # members, not look-alike strings
    return types


def completed(position: int, outcome: Outcome, attempt: int = 1) -> ActivityCompleted:
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
    assert types(decision) == [H.START_WORKFLOW] + [H.SCHEDULE_ACTIVITY] * len(scheduled)
    assert [a.position for a in decision.state.activities if a.status is S.SCHEDULED] == scheduled
    assert decision.state.started


def test_second_start_changes_nothing():
    first = decide(make_state(SEQ), WorkflowStarted(at())).state
    again = decide(first, WorkflowStarted(at(2)))
    assert again.state == first
    assert again.commands == ()
    assert types(again) == [H.DO_NOTHING]


def test_dependent_activity_waits_for_every_activity_listed_before_it():
    state = with_statuses(make_state(IND, IND, SEQ), S.SCHEDULED, S.SCHEDULED, S.PENDING)
    after_first = decide(state, completed(0, Outcome.SUCCEEDED))
    assert after_first.commands == ()
    assert types(after_first) == [H.ACTIVITY_RESULT, H.DO_NOTHING]
    after_second = decide(after_first.state, completed(1, Outcome.SUCCEEDED))
    assert after_second.commands == (RunActivity(2, 1),)


def test_success_of_last_activity_finishes_the_workflow_with_outputs_by_name():
    state = with_statuses(make_state(SEQ, SEQ), S.SUCCEEDED, S.SCHEDULED)
    state = replace(state, activities=(replace(state.activities[0], output={"p": 0}), state.activities[1]))
    decision = decide(state, completed(1, Outcome.SUCCEEDED))
    assert decision.state.status is P.FINISHED
    assert decision.state.finished_at == at(2)
    assert decision.state.output == {"A0": {"p": 0}, "A1": {"p": 1}}
    assert types(decision) == [H.ACTIVITY_RESULT, H.WORKFLOW_FINISHED]


def test_temporary_failure_is_rescheduled_with_backoff_until_attempts_run_out():
    state = with_statuses(make_state(SEQ, max_attempts=3), S.SCHEDULED)
    first = decide(state, completed(0, Outcome.TEMPORARY_FAILURE, attempt=1))
    assert first.state.activities[0].status is S.WAITING_RETRY
    assert first.commands == (StartTimer(TimerKind.RETRY, 1000, 0, 2),)
    assert types(first) == [H.ACTIVITY_RESULT, H.RESCHEDULE_ACTIVITY]

    due = decide(first.state, TimerFired(TimerKind.RETRY, 0, 2, at(3)))
    assert due.commands == (RunActivity(0, 2),)
    assert due.state.activities[0].attempt == 2

    second = decide(due.state, completed(0, Outcome.TEMPORARY_FAILURE, attempt=2))
    assert second.commands == (StartTimer(TimerKind.RETRY, 2000, 0, 3),)  # doubled

    third_run = decide(second.state, TimerFired(TimerKind.RETRY, 0, 3, at(5))).state
    last = decide(third_run, completed(0, Outcome.TEMPORARY_FAILURE, attempt=3))
    assert last.state.activities[0].status is S.FAILED
    assert last.state.status is P.FAILED
    assert types(last)[-1] == H.WORKFLOW_FAILURE


def test_permanent_failure_is_never_retried():
    state = with_statuses(make_state(SEQ, max_attempts=5), S.SCHEDULED)
    decision = decide(state, completed(0, Outcome.PERMANENT_FAILURE))
    assert decision.commands == ()
    assert decision.state.activities[0].status is S.FAILED


def test_required_permanent_failure_fails_workflow_and_schedules_nothing_more():
    state = with_statuses(make_state(SEQ, IND, SEQ), S.SCHEDULED, S.SCHEDULED, S.PENDING)
    decision = decide(state, completed(0, Outcome.PERMANENT_FAILURE))
    assert decision.state.status is P.FAILED
    # Nothing new; the attempt in flight is told to stop at once (not at its next heartbeat).
    assert decision.commands == (CancelAttempt(1, 1),)
    assert "A0" in decision.state.error
    statuses = [a.status for a in decision.state.activities]
    # The in-flight one stays in flight (its late result is recorded); the waiting one is skipped.
    assert statuses == [S.FAILED, S.SCHEDULED, S.SKIPPED]
    assert types(decision) == [H.ACTIVITY_RESULT, H.WORKFLOW_FAILURE]


TRACEBACK = """Traceback (most recent call last):
  File "/app/flow/worker/execution.py", line 86, in run_attempt
    outcome = instance.do_activity()
              ^^^^^^^^^^^^^^^^^^^^^^
  File "/app/myacts/__init__.py", line 7, in do_activity
    raise ValueError("no such customer: 42")
ValueError: no such customer: 42
"""
CHAINED = """Traceback (most recent call last):
  File "/app/myacts/__init__.py", line 5, in do_activity
    return self.call()
KeyError: 'id'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/app/myacts/__init__.py", line 9, in do_activity
    raise RuntimeError("lookup failed") from e
RuntimeError: lookup failed
"""
WHO = "required activity A0 (position 0) failed"


@pytest.mark.parametrize(
    ("outcome", "max_attempts", "error", "workflow_error"),
    [
        (Outcome.PERMANENT_FAILURE, 3, "config.width is required", f"{WHO} permanently: config.width is required"),
        (Outcome.PERMANENT_FAILURE, 3, TRACEBACK, f"{WHO} permanently: ValueError: no such customer: 42"),
        (Outcome.TEMPORARY_FAILURE, 1, TRACEBACK, f"{WHO} after 1 attempt: ValueError: no such customer: 42"),
        (Outcome.TEMPORARY_FAILURE, 1, CHAINED, f"{WHO} after 1 attempt: RuntimeError: lookup failed"),
        (Outcome.TEMPORARY_FAILURE, 1, "HTTP 503\nfrom upstream", f"{WHO} after 1 attempt: HTTP 503 from upstream"),
        (Outcome.PERMANENT_FAILURE, 3, None, f"{WHO} permanently: PERMANENT_FAILURE, with no error given"),
        (Outcome.TEMPORARY_FAILURE, 1, "", f"{WHO} after 1 attempt: TEMPORARY_FAILURE, with no error given"),
        (Outcome.PERMANENT_FAILURE, 3, "x" * 600, f"{WHO} permanently: {'x' * 499}…"),
    ],
)
def test_a_required_failure_puts_the_activity_own_error_in_the_workflow_error(
    outcome, max_attempts, error, workflow_error
):
    state = with_statuses(make_state(SEQ, max_attempts=max_attempts), S.SCHEDULED)
    event = replace(completed(0, outcome), error=error)
    decision = decide(state, event)
    assert decision.state.status is P.FAILED
    assert decision.state.error == workflow_error
    assert decision.history[-1].data == {"error": workflow_error}
    assert decision.state.activities[0].error == error  # the attempt keeps its whole error


def test_a_required_failure_after_every_attempt_names_the_count_and_the_last_error():
    state = with_statuses(make_state(SEQ, max_attempts=3), S.SCHEDULED, attempt=3)
    decision = decide(state, replace(completed(0, Outcome.TEMPORARY_FAILURE, attempt=3), error=TRACEBACK))
    assert decision.state.error == f"{WHO} after 3 attempts: ValueError: no such customer: 42"


def test_a_required_activity_timing_out_names_the_timeout_in_the_workflow_error():
    state = with_statuses(with_timeouts(make_state(SEQ, max_attempts=1), start_to_close_s=2), S.STARTED)
    decision = decide(state, TimerFired(TimerKind.START_TO_CLOSE, 0, 1, at(3)))
    assert decision.state.error == (
        f"{WHO} after 1 attempt: start-to-close timeout: attempt 1 did not finish within 2 s"
    )


def test_optional_permanent_failure_is_recorded_and_the_workflow_goes_on():
    state = with_statuses(make_state(OPT, SEQ), S.SCHEDULED, S.PENDING)
    decision = decide(state, completed(0, Outcome.PERMANENT_FAILURE))
    assert decision.state.status is P.IN_PROGRESS
    assert decision.state.activities[0].status is S.FAILED
    assert decision.commands == (RunActivity(1, 1),)


def test_optional_failure_of_the_last_activity_still_finishes_the_workflow():
    state = with_statuses(make_state(SEQ, OPT), S.SUCCEEDED, S.SCHEDULED)
    decision = decide(state, completed(1, Outcome.PERMANENT_FAILURE))
    assert decision.state.status is P.FINISHED


def test_late_result_after_workflow_failed_is_recorded_and_ignored():
    state = with_statuses(make_state(SEQ, IND, SEQ), S.SCHEDULED, S.SCHEDULED, S.PENDING)
    failed = decide(state, completed(0, Outcome.PERMANENT_FAILURE)).state
    late = decide(failed, completed(1, Outcome.SUCCEEDED))
    assert late.commands == ()
    assert late.state.status is P.FAILED
    assert late.state.activities[1].status is S.SUCCEEDED
    assert late.state.activities[2].status is S.SKIPPED
    assert types(late) == [H.ACTIVITY_RESULT, H.DO_NOTHING]


@pytest.mark.parametrize(
    "event",
    [
        completed(0, Outcome.SUCCEEDED, attempt=2),  # an attempt that never ran
        completed(5, Outcome.SUCCEEDED),  # no such activity
        ActivityStarted(0, 2, at()),
        TimerFired(TimerKind.RETRY, 0, 2, at()),  # not waiting for a retry
    ],
)
def test_stale_events_are_recorded_and_change_nothing(event):
    state = with_statuses(make_state(SEQ), S.SCHEDULED)
    decision = decide(state, event)
    assert decision.state == state
    assert decision.commands == ()
    assert decision.history[0].data["stale"] is True
    assert types(decision)[-1] == H.DO_NOTHING


def test_duplicate_result_changes_nothing():
    state = with_statuses(make_state(SEQ, SEQ), S.SCHEDULED, S.PENDING)
    once = decide(state, completed(0, Outcome.SUCCEEDED))
    twice = decide(once.state, completed(0, Outcome.SUCCEEDED))
    assert twice.state == once.state
    assert twice.commands == ()


def test_started_marks_the_current_attempt_started():
    state = with_statuses(make_state(SEQ), S.SCHEDULED)
    decision = decide(state, ActivityStarted(0, 1, at(1.5)))
    assert decision.state.activities[0].status is S.STARTED
    assert decision.state.activities[0].started_at == at(1.5)
    assert types(decision) == [H.ACTIVITY_STARTED, H.DO_NOTHING]


def test_result_after_started_is_accepted():
    state = with_statuses(make_state(SEQ), S.STARTED)
    assert decide(state, completed(0, Outcome.SUCCEEDED)).state.status is P.FINISHED


def test_retry_due_after_workflow_failed_schedules_nothing():
    state = with_statuses(make_state(SEQ, IND), S.WAITING_RETRY, S.SCHEDULED)
    failed = decide(state, completed(1, Outcome.PERMANENT_FAILURE)).state
    assert failed.activities[0].status is S.SKIPPED
    assert decide(failed, TimerFired(TimerKind.RETRY, 0, 2, at(3))).commands == ()


def test_ready_positions_is_empty_before_start():
    assert ready_positions(make_state(IND, SEQ)) == []


def test_decide_is_deterministic():
    state = with_statuses(make_state(SEQ, max_attempts=3), S.SCHEDULED)
    event = completed(0, Outcome.TEMPORARY_FAILURE)
    assert decide(state, event) == decide(state, event)


# -- timeouts -----------------------------------------------------------------------


def with_timeouts(state: WorkflowState, **timeouts: float) -> WorkflowState:
    return replace(state, activities=tuple(replace(a, timeouts=Timeouts(**timeouts)) for a in state.activities))


def test_schedule_to_start_timer_is_set_when_scheduling():
    state = with_timeouts(make_state(SEQ), schedule_to_start_s=5)
    decision = decide(state, WorkflowStarted(at()))
    assert decision.commands == (RunActivity(0, 1), StartTimer(TimerKind.SCHEDULE_TO_START, 5000, 0, 1))


def test_an_attempt_nobody_started_in_time_fails_and_is_retried():
    state = with_statuses(with_timeouts(make_state(SEQ), schedule_to_start_s=5), S.SCHEDULED)
    decision = decide(state, TimerFired(TimerKind.SCHEDULE_TO_START, 0, 1, at(6)))
    assert decision.state.activities[0].status is S.WAITING_RETRY
    assert "schedule-to-start timeout" in decision.state.activities[0].error
    assert decision.commands == (StartTimer(TimerKind.RETRY, 1000, 0, 2),)


def test_schedule_to_start_timer_after_the_start_is_stale():
    state = with_statuses(with_timeouts(make_state(SEQ), schedule_to_start_s=5), S.STARTED)
    decision = decide(state, TimerFired(TimerKind.SCHEDULE_TO_START, 0, 1, at(6)))
    assert decision.state == state
    assert decision.history[0].data["stale"]


def test_start_to_close_timer_is_set_when_the_attempt_starts():
    state = with_statuses(with_timeouts(make_state(SEQ), start_to_close_s=2.5), S.SCHEDULED)
    decision = decide(state, ActivityStarted(0, 1, at()))
    assert decision.commands == (StartTimer(TimerKind.START_TO_CLOSE, 2500, 0, 1),)


def test_an_attempt_running_too_long_fails_and_its_late_result_is_stale():
    state = with_statuses(with_timeouts(make_state(SEQ, max_attempts=1), start_to_close_s=2), S.STARTED)
    timed_out = decide(state, TimerFired(TimerKind.START_TO_CLOSE, 0, 1, at(3)))
    assert timed_out.state.status is P.FAILED
    assert "start-to-close timeout" in timed_out.state.activities[0].error
    late = decide(timed_out.state, completed(0, Outcome.SUCCEEDED))
    assert late.state == timed_out.state
    assert late.history[0].data["stale"]


def test_workflow_timeout_fails_the_workflow_with_the_reason():
    state = replace(make_state(SEQ), config={"timeouts": {"workflow_s": 60}})
    started = decide(state, WorkflowStarted(at()))
    assert StartTimer(TimerKind.WORKFLOW, 60_000, None, 1) in started.commands
    timed_out = decide(started.state, TimerFired(TimerKind.WORKFLOW, None, 1, at(61)))
    assert timed_out.state.status is P.FAILED
    assert "timed out" in timed_out.state.error
    assert types(timed_out) == [H.TIMER_FIRED, H.WORKFLOW_FAILURE]


def test_workflow_timer_of_an_ended_workflow_is_stale():
    state = with_statuses(make_state(SEQ), S.SCHEDULED)
    finished = decide(state, completed(0, Outcome.SUCCEEDED)).state
    assert decide(finished, TimerFired(TimerKind.WORKFLOW, None, 1, at(61))).state == finished


# -- cancel -------------------------------------------------------------------------


def test_cancel_schedules_nothing_and_cancels_waiting_activities():
    state = with_statuses(make_state(SEQ, IND, SEQ), S.STARTED, S.WAITING_RETRY, S.PENDING)
    decision = decide(state, CancelRequested(at(), reason="changed my mind"))
    assert decision.state.status is P.CANCELLED
    # Nothing is scheduled; the retry timer of the activity waiting to retry is
    # forgotten; the attempt running is told to stop (at its next heartbeat).
    assert decision.commands == (CancelTimer(TimerKind.RETRY, 1, 2), CancelAttempt(0, 1))
    assert [a.status for a in decision.state.activities] == [S.STARTED, S.CANCELLED, S.CANCELLED]
    assert types(decision) == [H.CANCEL_REQUESTED, H.WORKFLOW_CANCELLED]
    assert "changed my mind" in decision.state.error


def test_results_after_cancel_are_recorded_and_ignored():
    state = with_statuses(make_state(SEQ, SEQ), S.STARTED, S.PENDING)
    cancelled = decide(state, CancelRequested(at())).state
    late = decide(cancelled, completed(0, Outcome.SUCCEEDED))
    assert late.commands == ()
    assert late.state.status is P.CANCELLED
    assert late.state.activities[0].status is S.SUCCEEDED
    assert late.state.activities[1].status is S.CANCELLED


def test_cancelling_an_ended_workflow_changes_nothing():
    state = with_statuses(make_state(SEQ), S.SCHEDULED)
    finished = decide(state, completed(0, Outcome.SUCCEEDED)).state
    decision = decide(finished, CancelRequested(at()))
    assert decision.state == finished
    assert types(decision) == [H.CANCEL_REQUESTED, H.DO_NOTHING]


# -- retry from failure ----------------------------------------------------------------


def test_retry_from_failure_keeps_successes_and_reruns_the_rest():
    state = with_statuses(make_state(SEQ, SEQ, SEQ, max_attempts=2), S.SUCCEEDED, S.SCHEDULED, S.PENDING, attempt=2)
    failed = decide(state, completed(1, Outcome.PERMANENT_FAILURE, attempt=2)).state
    assert [a.status for a in failed.activities] == [S.SUCCEEDED, S.FAILED, S.SKIPPED]

    retried = decide(failed, RetryRequested(at(10)))
    assert retried.state.status is P.IN_PROGRESS
    assert retried.state.run == 2
    assert retried.commands == (RunActivity(1, 3),)  # attempt numbers are never reused
    assert [a.status for a in retried.state.activities] == [S.SUCCEEDED, S.SCHEDULED, S.PENDING]
    assert types(retried) == [H.RETRY_REQUESTED, H.RETRY_WORKFLOW, H.SCHEDULE_ACTIVITY]

    # The retry policy counts attempts of this run only: one failure still retries.
    again = decide(retried.state, completed(1, Outcome.TEMPORARY_FAILURE, attempt=3))
    assert again.commands == (StartTimer(TimerKind.RETRY, 1000, 1, 4),)


def test_retry_of_a_cancelled_workflow_reruns_cancelled_activities():
    state = with_statuses(make_state(SEQ, SEQ), S.SUCCEEDED, S.PENDING)
    cancelled = decide(state, CancelRequested(at())).state
    retried = decide(cancelled, RetryRequested(at(2)))
    assert retried.commands == (RunActivity(1, 1),)


def test_retry_of_a_running_or_finished_workflow_changes_nothing():
    state = with_statuses(make_state(SEQ), S.SCHEDULED)
    decision = decide(state, RetryRequested(at()))
    assert decision.state == state
    assert types(decision) == [H.RETRY_REQUESTED, H.DO_NOTHING]
