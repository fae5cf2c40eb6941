"""Durable sleeps (``sleep_s``, ``sleep_until``), decided by the pure ``decide()`` and
recovered from the state alone, rule by rule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flow.core.commands import CancelTimer, StartTimer
from flow.core.decide import decide
from flow.core.events import CancelRequested, RetryRequested, TimerFired, WorkflowStarted
from flow.core.recovery import owed
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from tests.unit.test_graph import T0, Run, problems, state_of

S = ActivityStatus


def run_of(*activities: dict[str, Any], **input_data: Any) -> Run:
    return Run(state_of(*activities, input_data=input_data))


def timers(run: Run) -> list[StartTimer]:
    return [c for c in run.decision.commands if isinstance(c, StartTimer)]


def fire(run: Run, position: int, attempt: int = 1, kind: TimerKind = TimerKind.SLEEP) -> None:
    run.decision = run._decide(TimerFired(kind, position, attempt, occurred_at=run._now()))


# -- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        ({"id": "nap"}, "$.activities[0]", "needs a name"),
        ({"name": "A", "sleep_s": 3}, "$.activities[0]", "name and sleep_s cannot be used together"),
        ({"sleep_s": 3, "sleep_until": "input.at"}, "$.activities[0]", "sleep_s and sleep_until cannot"),
        ({"sleep_until": "input.[", "id": "x"}, "$.activities[0].sleep_until", "not a JMESPath expression"),
        ({"sleep_s": 3, "map": {"over": "input.x"}}, "$.activities[0].map", "it needs a name"),
    ],
)
def test_a_step_is_an_activity_or_a_sleep(entry, path, message):
    found = problems(entry)
    assert any(p == path and message in m for p, m in found), found


@pytest.mark.parametrize("seconds", [0, -1, 366 * 24 * 3600 + 1])
def test_sleep_s_is_bounded(seconds):
    assert [p for p, _ in problems({"sleep_s": seconds})] == ["$.activities[0].sleep_s"]


def test_sleeps_without_ids_are_named_sleep():
    run = run_of({"sleep_s": 1}, {"sleep_s": 2})
    assert [a.id for a in run.state.activities] == ["sleep.1", "sleep"]
    assert [a.name for a in run.state.activities] == ["sleep", "sleep"]


# -- decisions ------------------------------------------------------------------------


def test_a_sleep_waits_for_its_timer_then_the_next_activity_runs():
    run = run_of({"id": "nap", "sleep_s": 90}, {"name": "B"})
    nap = run.activity("nap")
    assert nap.status is S.WAITING and not S.WAITING.in_flight and not S.WAITING.ended
    assert timers(run) == [StartTimer(TimerKind.SLEEP, 90_000, 0, 1)] and run.scheduled() == []
    woke = nap.started_at + timedelta(seconds=90)
    assert nap.output == {"until": woke.isoformat() + "Z"}
    assert [h.type for h in run.decision.history][-1] is HistoryType.START_SLEEP
    fire(run, 0)
    assert run.status("nap") is S.SUCCEEDED and run.scheduled() == ["B"]
    run.end("B")
    assert run.state.status is WorkflowStatus.FINISHED


def test_sleep_until_a_time_from_the_input_and_a_past_time_wakes_at_once():
    run = run_of({"id": "at", "sleep_until": "input.at"}, at="2026-01-01T13:00:00+01:00")
    # T0 is 12:00 UTC; the clock of the start event is 1 s later; 13:00+01:00 is 12:00 UTC.
    assert timers(run) == [StartTimer(TimerKind.SLEEP, 0, 0, 1)]
    later = run_of({"id": "at", "sleep_until": "input.at"}, at="2026-01-01T12:10:01Z")
    assert timers(later) == [StartTimer(TimerKind.SLEEP, 600_000, 0, 1)]
    assert later.activity("at").output == {"until": "2026-01-01T12:10:01Z"}


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (None, "gave null, not an ISO 8601 time"),
        ("tomorrow", 'gave "tomorrow", not an ISO 8601 time'),
        ("2030-01-01T00:00:00Z", "more than 366 days ahead"),
    ],
)
def test_sleep_until_without_a_usable_time_fails_the_step(at, reason):
    run = run_of({"id": "at", "sleep_until": "input.at", "required": False}, {"name": "B"}, at=at)
    assert run.status("at") is S.FAILED and reason in run.activity("at").error
    assert timers(run) == [] and run.scheduled() == ["B"]


def test_a_timer_of_another_attempt_or_a_second_firing_is_stale():
    run = run_of({"id": "nap", "sleep_s": 5}, {"name": "B"})
    fire(run, 0, attempt=2)
    assert run.status("nap") is S.WAITING and run.decision.history[0].data["stale"] is True
    fire(run, 0)
    fire(run, 0)  # fired again (a redelivery): recorded, nothing more
    assert run.decision.history[0].data["stale"] is True and run.decision.commands == ()


def test_cancel_cancels_the_sleep_and_its_timer_and_retry_sleeps_again():
    run = run_of({"id": "nap", "sleep_s": 5}, {"name": "B"})
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    assert run.status("nap") is S.CANCELLED
    assert CancelTimer(TimerKind.SLEEP, 0, 1) in run.decision.commands
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.status("nap") is S.WAITING and timers(run) == [StartTimer(TimerKind.SLEEP, 5000, 0, 2)]


def test_a_failing_workflow_cancels_the_timer_of_a_sleep_beside_it():
    run = run_of({"id": "nap", "sleep_s": 5, "independent": True}, {"name": "B", "independent": True})
    run.end("B", Outcome.PERMANENT_FAILURE)
    assert run.state.status is WorkflowStatus.FAILED and run.status("nap") is S.SKIPPED
    assert CancelTimer(TimerKind.SLEEP, 0, 1) in run.decision.commands


def test_recovery_finds_the_sleeps_timer_at_the_same_time():
    run = run_of({"id": "nap", "sleep_s": 30})
    [due] = owed(run.state).timers
    assert (due.kind, due.position, due.attempt) == (TimerKind.SLEEP, 0, 1)
    assert due.due_at == T0 + timedelta(seconds=1 + 30)


# -- a time at the edge of the calendar ----------------------------------------------------


@pytest.mark.parametrize(
    "at",
    [
        # Valid ISO 8601 times with an offset, whose UTC equivalent is outside years 1-9999:
        # ``astimezone(UTC)`` raises OverflowError, which ``_parse`` does not catch (it
        # catches ValueError only). The exception escapes ``decide()``; the engine's safety
        # net dead-letters the event and marks the workflow Failed with "the engine cannot
        # handle this workflow: OverflowError" and its activities left Pending (not Skipped),
        # and a retry from failure crashes the same way. The README promises "anything but
        # a time ... fails the step" (with a reason naming sleep_until); a past time "wakes
        # it at once".
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_sleep_until_a_time_at_the_edge_of_the_calendar_fails_or_wakes_instead_of_crashing_decide(at):
    state = state_of({"id": "nap", "sleep_until": "input.at"}, {"name": "B"}, input_data={"at": at})
    decision = decide(state, WorkflowStarted(T0))  # raised OverflowError: date value out of range
    nap = decision.state.activities[0]
    assert decision.state.status is WorkflowStatus.FAILED or nap.status in (S.WAITING, S.SUCCEEDED)
    if nap.status is S.FAILED:
        assert "sleep_until" in nap.error
