"""Heartbeats and cancellation that reaches an attempt: table tests on ``decide()``, the
attempt's message, recovery, and the worker's throttle and cancel flag."""

from __future__ import annotations

from dataclasses import replace

import pytest

from activities.base import ActivityCancelled, BaseActivity
from flow.core import recovery
from flow.core.commands import CancelAttempt, CancelTimer, RunActivity, StartTimer
from flow.core.decide import decide
from flow.core.definition import parse
from flow.core.events import (
    ActivityCompleted,
    ActivityHeartbeat,
    ActivityStarted,
    CancelRequested,
    RetryRequested,
    TimerFired,
)
from flow.core.policy import Timeouts
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from flow.errors import DefinitionError
from flow.wire.attempts import AttemptRequest
from flow.worker.cancellations import CancellationListener
from flow.worker.execution import execute
from flow.worker.heartbeats import Heartbeats, interval_for
from flow.worker.running import RunningAttempts
from tests.unit.test_decide import IND, SEQ, at, make_state, with_statuses

S, H = ActivityStatus, HistoryType
HB = TimerKind.HEARTBEAT


def beating(*statuses: ActivityStatus, heartbeat_s: float = 10, **timeouts: float):
    state = with_statuses(make_state(*(SEQ for _ in statuses)), *statuses)
    return replace(
        state,
        activities=tuple(
            replace(a, timeouts=Timeouts(heartbeat_s=heartbeat_s, **timeouts), started_at=at(0))
            for a in state.activities
        ),
    )


def types(decision) -> list[HistoryType]:
    return [h.type for h in decision.history]


# -- the heartbeat timer ----------------------------------------------------------------


def test_the_heartbeat_timer_starts_with_the_attempt():
    state = beating(S.SCHEDULED, heartbeat_s=10, start_to_close_s=60)
    decision = decide(state, ActivityStarted(0, 1, at(1)))
    assert decision.commands == (StartTimer(TimerKind.START_TO_CLOSE, 60_000, 0, 1), StartTimer(HB, 10_000, 0, 1))


def test_a_heartbeat_moves_the_timer_on_and_keeps_its_details_on_the_activity_not_in_the_history():
    decision = decide(beating(S.STARTED), ActivityHeartbeat(0, 1, at(5), {"done": 3}))
    assert decision.commands == (StartTimer(HB, 10_000, 0, 1),)
    activity = decision.state.activities[0]
    assert (activity.heartbeat, activity.heartbeat_at) == ({"done": 3}, at(5))
    assert types(decision) == []


def test_a_thousand_heartbeats_add_nothing_to_the_history_and_the_last_one_is_kept():
    state, entries = beating(S.STARTED), 0
    for n in range(1000):
        decision = decide(state, ActivityHeartbeat(0, 1, at(1 + n * 0.01), {"done": n}))
        state, entries = decision.state, entries + len(decision.history)
    assert entries == 0
    assert (state.activities[0].heartbeat, state.activities[0].heartbeat_at) == ({"done": 999}, at(1 + 999 * 0.01))
    # The timeout rule still reads the last one: no heartbeat for heartbeat_s after it fails the attempt.
    assert decide(state, TimerFired(HB, 0, 1, at(1 + 999 * 0.01 + 10))).state.activities[0].status is S.WAITING_RETRY


def test_a_heartbeat_without_details_keeps_the_last_ones():
    state = decide(beating(S.STARTED), ActivityHeartbeat(0, 1, at(5), {"done": 3})).state
    activity = decide(state, ActivityHeartbeat(0, 1, at(6))).state.activities[0]
    assert (activity.heartbeat, activity.heartbeat_at) == ({"done": 3}, at(6))


def test_a_heartbeat_before_the_started_report_starts_the_attempt():
    state = beating(S.SCHEDULED, schedule_to_start_s=5)
    decision = decide(state, ActivityHeartbeat(0, 1, at(2), {"done": 1}))
    assert decision.state.activities[0].status is S.STARTED
    assert decision.state.activities[0].started_at == at(2)
    assert decision.commands == (CancelTimer(TimerKind.SCHEDULE_TO_START, 0, 1), StartTimer(HB, 10_000, 0, 1))
    # The started report that follows is stale: the attempt is started already.
    late = decide(decision.state, ActivityStarted(0, 1, at(1)))
    assert late.state == decision.state and late.history[0].data["stale"]


def test_no_heartbeat_for_heartbeat_s_fails_the_attempt_and_retries_it():
    state = decide(beating(S.STARTED), ActivityHeartbeat(0, 1, at(5), {"done": 3})).state
    decision = decide(state, TimerFired(HB, 0, 1, at(15)))
    activity = decision.state.activities[0]
    assert activity.status is S.WAITING_RETRY
    assert "heartbeat timeout: no heartbeat from attempt 1 for 10 s" in activity.error
    assert StartTimer(TimerKind.RETRY, 1000, 0, 2) in decision.commands
    # The next attempt resumes from the last details.
    after_retry = decide(decision.state, TimerFired(TimerKind.RETRY, 0, 2, at(16))).state
    request = AttemptRequest.of(after_retry, 0, 2, reply_to="q")
    assert request.last_heartbeat == {"done": 3} and request.heartbeat_s == 10


def test_a_timer_racing_a_heartbeat_is_set_again_for_what_is_left():
    # The timer row was taken just before the heartbeat at 8 s moved it: it fires at 10 s.
    state = decide(beating(S.STARTED), ActivityHeartbeat(0, 1, at(8))).state
    decision = decide(state, TimerFired(HB, 0, 1, at(10)))
    assert decision.state.activities[0].status is S.STARTED
    assert decision.commands == (StartTimer(HB, 8_000, 0, 1),)


def test_heartbeat_timeout_racing_a_result_whichever_comes_first_wins():
    state = beating(S.STARTED)
    # The result first: the attempt's timers go; the timer that fires anyway is stale.
    done = decide(state, ActivityCompleted(0, 1, Outcome.SUCCEEDED, at(11)))
    assert CancelTimer(HB, 0, 1) in done.commands
    late_timer = decide(done.state, TimerFired(HB, 0, 1, at(12)))
    assert late_timer.state == done.state and late_timer.history[0].data["stale"]
    # The timer first: the attempt failed; its result, arriving after, is stale.
    timed_out = decide(state, TimerFired(HB, 0, 1, at(11)))
    assert timed_out.state.activities[0].status is S.WAITING_RETRY
    late_result = decide(timed_out.state, ActivityCompleted(0, 1, Outcome.SUCCEEDED, at(12)))
    assert late_result.state == timed_out.state and late_result.history[0].data["stale"]


def test_a_new_attempt_does_not_inherit_the_old_heartbeat_time():
    state = decide(beating(S.STARTED), ActivityHeartbeat(0, 1, at(5))).state
    failed = decide(state, ActivityCompleted(0, 1, Outcome.TEMPORARY_FAILURE, at(6)))
    again = decide(failed.state, TimerFired(TimerKind.RETRY, 0, 2, at(7))).state
    assert again.activities[0].heartbeat_at is None


# -- cancellation reaching the attempt -------------------------------------------------


def test_cancel_tells_every_attempt_in_flight_to_stop():
    state = beating(S.STARTED, S.SCHEDULED)
    decision = decide(state, CancelRequested(at(3)))
    assert decision.state.status is WorkflowStatus.CANCELLED
    assert CancelAttempt(0, 1) in decision.commands and CancelAttempt(1, 1) in decision.commands


def test_cancel_during_a_heartbeat_the_heartbeat_after_it_is_answered_with_a_cancel():
    state = decide(beating(S.STARTED), CancelRequested(at(3))).state
    decision = decide(state, ActivityHeartbeat(0, 1, at(4), {"done": 9}))
    assert decision.commands == (CancelAttempt(0, 1),)
    assert types(decision) == [H.ACTIVITY_HEARTBEAT, H.CANCEL_ATTEMPT]
    assert decision.history[0].data["stale"] and decision.history[1].data["reason"] == "workflow Cancelled"
    # The attempt stops: its result says so, and is recorded on the activity.
    stopped = decide(decision.state, ActivityCompleted(0, 1, Outcome.CANCELLED, at(5)))
    assert stopped.state.activities[0].status is S.CANCELLED
    assert stopped.state.status is WorkflowStatus.CANCELLED


def test_a_heartbeat_of_an_attempt_that_is_not_the_current_one_is_told_to_stop():
    # Attempt 1 timed out and attempt 2 runs; attempt 1's worker was only slow.
    state = replace(beating(S.STARTED), activities=(replace(beating(S.STARTED).activities[0], attempt=2),))
    decision = decide(state, ActivityHeartbeat(0, 1, at(4)))
    assert decision.commands == (CancelAttempt(0, 1),)
    assert decision.state == state


@pytest.mark.parametrize("attempt", [2, 99])
def test_a_heartbeat_for_an_attempt_never_made_changes_nothing(attempt):
    decision = decide(beating(S.STARTED), ActivityHeartbeat(0, attempt, at(4)))
    assert decision.commands == () and decision.history[0].data["stale"]


def test_a_cancelled_result_while_the_workflow_runs_runs_the_activity_again_uncounted():
    # Stopped by a cancel of the run before (a retry came first): not this run's failure.
    decision = decide(beating(S.STARTED), ActivityCompleted(0, 1, Outcome.CANCELLED, at(4)))
    activity = decision.state.activities[0]
    assert (activity.status, activity.attempt, activity.attempts_before) == (S.SCHEDULED, 2, 1)
    assert RunActivity(0, 2) in decision.commands


def test_recovery_sends_a_heartbeating_attempt_again_and_leaves_its_timer_to_its_first_heartbeat():
    state = decide(replace(beating(S.STARTED), started=True), ActivityHeartbeat(0, 1, at(5))).state
    owed = recovery.owed(state)
    assert RunActivity(0, 1) in owed.runs
    assert HB not in {t.kind for t in owed.timers}


# -- the worker side ------------------------------------------------------------------


class FakeDelayed:
    def __init__(self) -> None:
        self.calls: dict[int, tuple[float, object]] = {}

    def schedule(self, delay_s, call):
        handle = len(self.calls) + 1
        self.calls[handle] = (delay_s, call)
        return handle

    def cancel(self, handle):
        return self.calls.pop(handle, None) is not None

    def run_all(self):
        for handle in list(self.calls):
            _, call = self.calls.pop(handle)
            call()


def test_heartbeats_are_throttled_and_the_newest_details_follow_at_the_interval_s_end():
    sent, now, delayed = [], [100.0], FakeDelayed()
    beats = Heartbeats(sent.append, interval_s=5, delayed=delayed, clock=lambda: now[0])
    for n in range(1000):  # a tight loop: one message, one trailing send
        beats.beat({"done": n})
    assert sent == [{"done": 0}]
    assert [d for d, _ in delayed.calls.values()] == [5]
    delayed.run_all()
    assert sent == [{"done": 0}, {"done": 999}]
    now[0] = 106.0
    beats.beat({"done": 1000})
    assert sent[-1] == {"done": 1000}


def test_a_failed_attempt_flushes_its_kept_details_and_a_succeeded_one_does_not():
    for flush, expected in ((True, [{"done": 0}, {"done": 2}]), (False, [{"done": 0}])):
        sent, delayed = [], FakeDelayed()
        beats = Heartbeats(sent.append, interval_s=5, delayed=delayed, clock=lambda: 1.0)
        beats.beat({"done": 0})
        beats.beat({"done": 2})
        beats.close(flush=flush)
        assert sent == expected and not delayed.calls


@pytest.mark.parametrize(
    ("details", "problem"),
    [(float("nan"), "must be JSON"), ({"s": "\ud800"}, "must be JSON"), ("x" * 200, "over the limit of 100")],
)
def test_heartbeat_details_that_are_not_json_or_too_big_raise_in_the_activity(details, problem):
    beats = Heartbeats(lambda d: None, interval_s=5, delayed=FakeDelayed(), max_bytes=100)
    with pytest.raises(ValueError, match=problem):
        beats.beat(details)


def test_the_interval_is_half_the_timeout():
    assert interval_for(10) == 5 and interval_for(1) == 0.5 and interval_for(None) == 30


class Looping(BaseActivity):
    def do_activity(self):
        for n in range(10_000_000):
            self.heartbeat({"n": n})
        return self.SUCCEEDED


class Ignoring(BaseActivity):
    def do_activity(self):
        raise ActivityCancelled("not asked for")


def request(activity: str) -> AttemptRequest:
    return AttemptRequest(
        workflow_id="w", position=0, attempt=1, activity=activity, config={}, input_data={}, outputs={}
    )


def test_a_cancel_notice_stops_the_attempt_at_its_next_heartbeat(monkeypatch):
    running = RunningAttempts()
    monkeypatch.setattr("flow.worker.execution.RUNNING", running)
    beats: list = []

    def beat(details):
        beats.append(details)
        if len(beats) == 3:
            running.cancel(("w", 0, 1))  # the notice arrives while it runs

    result = execute({"Looping": Looping}, request("Looping"), heartbeat=beat)
    assert result.outcome is Outcome.CANCELLED and "cancelled" in result.error
    assert len(beats) == 3 and len(running) == 0


def test_a_notice_that_came_before_the_attempt_started_cancels_it_at_once(monkeypatch):
    running = RunningAttempts()
    monkeypatch.setattr("flow.worker.execution.RUNNING", running)
    running.cancel(("w", 0, 1))
    assert execute({"Looping": Looping}, request("Looping")).outcome is Outcome.CANCELLED


def test_a_cancellation_the_engine_did_not_ask_for_is_a_failure(monkeypatch):
    monkeypatch.setattr("flow.worker.execution.RUNNING", RunningAttempts())
    result = execute({"Ignoring": Ignoring}, request("Ignoring"))
    assert result.outcome is Outcome.TEMPORARY_FAILURE and "not asked for" in result.error


def test_a_cancel_reaches_every_copy_of_an_attempt_running_here():
    # A redelivered message may run the same attempt twice in one process.
    running = RunningAttempts()
    first, second = running.start(("w", 0, 1)), running.start(("w", 0, 1))
    running.finish(("w", 0, 1), first)
    assert running.cancel(("w", 0, 1)) and second.is_set() and not first.is_set()
    running.finish(("w", 0, 1), second)
    assert len(running) == 0


def test_the_running_attempts_remember_a_bounded_number_of_cancels():
    running = RunningAttempts(remember=2)
    for n in range(3):
        running.cancel(("w", 0, n))
    assert not running.start(("w", 0, 0)).is_set()
    assert running.start(("w", 0, 2)).is_set()


def test_an_activity_built_by_a_test_can_heartbeat_and_see_its_last_heartbeat():
    activity = Looping(workflow_id="w", last_heartbeat={"n": 4})
    activity.heartbeat({"n": 5})  # no worker: nothing is sent
    assert activity.last_heartbeat == {"n": 4} and not activity.cancelled


def test_big_details_are_kept_on_the_activity_and_a_stale_heartbeat_records_none_of_them():
    big = decide(beating(S.STARTED), ActivityHeartbeat(0, 1, at(5), {"log": "x" * 500}))
    assert big.history == () and big.state.activities[0].heartbeat == {"log": "x" * 500}
    stale = decide(beating(S.STARTED), ActivityHeartbeat(0, 7, at(5), {"log": "x" * 500}))
    assert stale.history[0].data == {"attempt": 7, "stale": True}


# -- retries after a stop, the worker's beat and listener, recovery: found by a review -----


def _heartbeating(*specs, statuses, max_attempts: int = 1, heartbeat_s: float = 10):
    state = with_statuses(make_state(*specs, max_attempts=max_attempts), *statuses)
    return replace(
        state,
        activities=tuple(
            replace(a, timeouts=Timeouts(heartbeat_s=heartbeat_s), started_at=at(0)) for a in state.activities
        ),
    )


def _runs_again(decision, position: int) -> bool:
    """The activity at ``position`` is on its way to a new attempt (scheduled now, or
    after a retry delay)."""
    return any(
        (isinstance(c, RunActivity) and c.position == position)
        or (isinstance(c, StartTimer) and c.kind == TimerKind.RETRY and c.position == position)
        for c in decision.commands
    )


# -- retry-from-failure after an attempt was told to stop --------------------------------


def test_a_retry_after_a_cancel_does_not_fail_on_the_attempt_the_cancel_stopped():
    """Defect: cancelling a workflow leaves its running activity ``Started`` and sends the
    attempt a cancel notice; a retry-from-failure that comes before the attempt's next
    heartbeat leaves that attempt as the activity's current one (``_RERUN`` covers only
    Failed, Skipped and Cancelled activities). When the attempt then obeys the notice and
    reports ``CANCELLED``, ``_attempt_ended`` counts it as a temporary failure of the new
    run, against the budget the retry was meant to refresh: with ``max_attempts: 1`` the
    retried workflow fails at once ("failed after 1 attempt"), although the README says
    a retry runs cancelled activities again "with a fresh retry budget".

    Expected: the stopped attempt's ``CANCELLED`` result does not fail the new run; the
    activity runs again (a new attempt), and the workflow stays In Progress."""
    state = _heartbeating(IND, statuses=(S.STARTED,))
    cancelled = decide(state, CancelRequested(at(3)))
    assert CancelAttempt(0, 1) in cancelled.commands  # the running attempt is told to stop
    retry = decide(cancelled.state, RetryRequested(at(4)))
    assert retry.state.status is WorkflowStatus.IN_PROGRESS
    # The attempt obeys the notice at its next heartbeat.
    stopped = decide(retry.state, ActivityCompleted(0, 1, Outcome.CANCELLED, at(5), error="cancelled"))
    assert stopped.state.status is WorkflowStatus.IN_PROGRESS, stopped.state.error
    # A new attempt of the activity is owed: by the retry itself, or once the stopped one reported.
    assert _runs_again(retry, 0) or _runs_again(stopped, 0)


def test_a_retry_after_a_failure_does_not_fail_on_an_attempt_told_to_stop_by_the_failure():
    """Defect: when a workflow fails, a heartbeat of another activity still running is
    answered with ``CancelAttempt`` ("workflow Failed", docs/design.md). If the user
    retries the workflow before that attempt's next heartbeat, the attempt is still the
    activity's current one in the new run, and its ``CANCELLED`` result fails the
    activity (with ``max_attempts: 1``) and the retried workflow with it.

    Expected: an attempt the engine itself told to stop does not count as a failure of
    the run that follows: the activity runs again and the workflow stays In Progress."""
    state = _heartbeating(IND, IND, statuses=(S.STARTED, S.STARTED))
    failed = decide(state, ActivityCompleted(1, 1, Outcome.PERMANENT_FAILURE, at(2), error="boom"))
    assert failed.state.status is WorkflowStatus.FAILED
    told = decide(failed.state, ActivityHeartbeat(0, 1, at(3), {"done": 5}))
    assert told.commands == (CancelAttempt(0, 1),)
    retried = decide(told.state, RetryRequested(at(4))).state
    assert retried.status is WorkflowStatus.IN_PROGRESS
    stopped = decide(retried, ActivityCompleted(0, 1, Outcome.CANCELLED, at(5), error="cancelled"))
    assert stopped.state.status is WorkflowStatus.IN_PROGRESS, stopped.state.error
    assert stopped.state.activities[0].status is not S.FAILED


def test_attempts_of_the_run_before_a_retry_do_not_count_against_its_budget():
    """Attempt 1 failed and attempt 2 was in flight when the workflow was cancelled; the
    retry comes before attempt 2 obeys. Its ``CANCELLED`` runs attempt 3, the new run's
    first: with ``max_attempts: 2`` that run still has a retry left."""
    state = _heartbeating(IND, statuses=(S.STARTED,), max_attempts=2)
    state = replace(state, activities=(replace(state.activities[0], attempt=2),))
    retried = decide(decide(state, CancelRequested(at(3))).state, RetryRequested(at(4))).state
    stopped = decide(retried, ActivityCompleted(0, 2, Outcome.CANCELLED, at(5), error="cancelled"))
    assert RunActivity(0, 3) in stopped.commands
    failed_once = decide(stopped.state, ActivityCompleted(0, 3, Outcome.TEMPORARY_FAILURE, at(6), error="x"))
    assert failed_once.state.status is WorkflowStatus.IN_PROGRESS, failed_once.state.error
    assert _runs_again(failed_once, 0)


# -- the throttle against a small heartbeat_s --------------------------------------------


@pytest.mark.parametrize("heartbeat_s", [0.001, 0.05, 0.1, 0.15])
def test_the_worker_can_beat_within_every_heartbeat_s_a_definition_may_set(heartbeat_s):
    """Defect: a definition may set any ``timeouts.heartbeat_s`` > 0 (the schema's
    ``exclusiveMinimum: 0``), and the README says the worker sends "at most one heartbeat
    per half heartbeat_s". But ``interval_for`` never goes under ``MIN_INTERVAL_S`` (0.1 s):
    with ``heartbeat_s`` below 0.2 s the heartbeats cannot come within half of it, and
    below 0.1 s not even within it, so an activity that calls ``heartbeat()`` in a tight
    loop still fails every attempt with "heartbeat timeout" (the engine's timer is set
    for ``heartbeat_s``; 0.001 s is a 1 ms timer).

    Expected: either the definition is refused (a documented minimum for heartbeat_s),
    or the worker's interval is at most half of it."""
    body = {
        "name": "TinyBeat",
        "activities": [{"name": "SleepActivity", "config": {"timeouts": {"heartbeat_s": heartbeat_s}}}],
    }
    try:
        parse(body, known_activities={"SleepActivity"})
    except DefinitionError:
        return  # refused: fine
    assert interval_for(heartbeat_s) <= heartbeat_s / 2


# -- the cancel notice listener against bogus notices ------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"{}",
        b'{"actor_name": "flow.cancel_attempt", "kwargs": {}}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["not-json", "not-utf8", "array", "empty-object", "no-dramatiq-fields", "deep"],
)
def test_the_cancel_listener_ignores_a_notice_it_cannot_read(body):
    """Defect: ``CancellationListener.handle`` catches InvalidInput, ValueError, TypeError
    and KeyError, but ``dramatiq.Message.decode`` wraps every failure in
    ``dramatiq.errors.DecodeError`` (an ``Exception``, none of those). One unreadable
    message on the ``<prefix>.cancellations`` fanout exchange raises out of ``handle``,
    out of ``_run``'s loop (which catches only AMQP and OS errors), and ends the listener
    thread for good: every worker process bound to the exchange silently stops hearing
    cancel notices until it is restarted (cancelled activities run on to their end).

    Expected: an unreadable notice is logged and ignored, like one with a bad field, and
    the next notice is still handled."""
    running = RunningAttempts()
    listener = CancellationListener(
        url="amqp://unused", exchange="x.cancellations", activity_queue="x", running=running
    )
    flag = running.start(("wf-1", 0, 1))
    listener.handle(body)  # must not raise
    good = (
        b'{"queue_name": "x.cancellations", "actor_name": "flow.cancel_attempt", "args": [], '
        b'"kwargs": {"workflow_id": "wf-1", "position": 0, "attempt": 1}, "options": {}, '
        b'"message_id": "m-1", "message_timestamp": 0}'
    )
    listener.handle(good)
    assert flag.is_set()


# -- recovery after an embedded restart ---------------------------------------------------


def test_recovery_does_not_resend_an_attempt_and_time_it_out_at_once():
    """Defect: after an embedded restart (the in-process broker lost every message),
    ``recovery.owed`` both re-sends attempt N of a heartbeating activity that was
    ``Started`` (``RunActivity``) and sets its heartbeat timer at the old due time, the
    last heartbeat before the crash plus ``heartbeat_s``. When the restart took longer
    than ``heartbeat_s`` (the usual case: heartbeat_s is meant to be seconds), that timer
    fires as soon as the partition is acquired and fails attempt N ("no heartbeat ...
    its worker died") while the re-sent copy of attempt N has just started: the copy's
    work is thrown away (it is told to stop at its next heartbeat), attempt N+1 runs
    beside it for a while, and a retry is spent (with ``max_attempts: 1`` the workflow
    fails on restart, where the same activity without ``heartbeat_s`` is simply re-run).

    Expected: one or the other, not both: either the attempt is re-sent and its
    heartbeat timer runs from the re-send (so the copy is not failed the moment it is
    sent), or it is not re-sent and the heartbeat timeout retries it (as a RabbitMQ
    redelivery of a heartbeating attempt is skipped, docs/design.md)."""
    state = _heartbeating(IND, statuses=(S.STARTED,), heartbeat_s=10)
    state = decide(state, ActivityHeartbeat(0, 1, at(5), {"done": 3})).state
    due = recovery.owed(state)
    restart = at(100)  # the process came back 95 s after the last heartbeat
    resent = RunActivity(0, 1) in due.runs
    beat_timers = [t for t in due.timers if t.kind == TimerKind.HEARTBEAT and t.attempt == 1]
    if resent and beat_timers and beat_timers[0].due_at <= restart:
        fired = decide(state, TimerFired(TimerKind.HEARTBEAT, 0, 1, restart))
        assert fired.state.activities[0].status is S.STARTED, (
            "attempt 1 was re-sent by the recovery and failed by its heartbeat timer at the same time"
        )
