"""Heartbeats and cancellation against a hostile review: unit tests on ``decide()`` and the
worker's pieces. Each test fails on the code it was written against (264af75) and says
in its docstring what is wrong and what should happen instead."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flow.core import recovery
from flow.core.commands import CancelAttempt, RunActivity, StartTimer
from flow.core.decide import decide
from flow.core.definition import parse
from flow.core.events import ActivityCompleted, ActivityHeartbeat, CancelRequested, RetryRequested, TimerFired
from flow.core.policy import Timeouts
from flow.core.vocabulary import ActivityStatus, Outcome, TimerKind, WorkflowStatus
from flow.errors import DefinitionError
from flow.worker.cancellations import CancellationListener
from flow.worker.heartbeats import interval_for
from flow.worker.running import RunningAttempts
from tests.unit.test_decide import IND, at, make_state, with_statuses

S = ActivityStatus


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
