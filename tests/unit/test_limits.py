"""Concurrency limits, rule by rule: the definition's ``concurrency``, the pure ``decide()``
(a step queues for its slot, a ``slot`` timer lets it in, every ending gives the slot back
by ending the step) and :func:`flow.core.limits.admit` (who is let in, in which order)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from flow.core.commands import CancelTimer, RunActivity, StartTimer
from flow.core.events import ActivityStarted, CancelRequested, RetryRequested, TimerFired
from flow.core.limits import Claim, Gcra, Waiter, admit, key_text, pace
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from tests.unit.test_graph import T0, Run, problems, state_of

S = ActivityStatus


def limited(key: str | None = None, limit: int | None = 2, **extra: Any) -> dict[str, Any]:
    concurrency: dict[str, Any] = {}
    if key is not None:
        concurrency["key"] = key
    if limit is not None:
        concurrency["limit"] = limit
    return {"name": "A", "id": "pay", "concurrency": concurrency, **extra}


def run_of(*activities: dict[str, Any], tenant: Any = "acme", priority: int = 3) -> Run:
    state = state_of(*activities, input_data={"tenant": tenant, "items": [1, 2, 3]})
    return Run(replace(state, priority=priority))


def let_in(run: Run, activity_id: str) -> None:
    step = run.activity(activity_id)
    run.decision = run._decide(TimerFired(TimerKind.SLOT, step.position, step.attempt + 1, occurred_at=run._now()))


# -- the definition ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("concurrency", "path", "says"),
    [
        ({}, "$.activities[0].concurrency", "should be non-empty"),
        ({"key": "input.tenant"}, "$.activities[0].concurrency", "is not valid under any of the given schemas"),
        ({"limit": 0}, "$.activities[0].concurrency.limit", "less than the minimum"),
        ({"limit": 2, "key": "input.["}, "$.activities[0].concurrency.key", "not a JMESPath expression"),
        ({"name": "bad name"}, "$.activities[0].concurrency.name", "does not match"),
        ({"limit": 2, "per": 1}, "$.activities[0].concurrency", "Additional properties"),
    ],
)
def test_a_bad_concurrency_is_refused_at_its_path(concurrency, path, says):
    found = problems({"name": "A", "concurrency": concurrency})
    assert {p for p, _ in found} == {path}
    assert any(says in message for _, message in found)


def test_only_steps_with_attempts_take_a_limit():
    found = problems({"id": "nap", "sleep_s": 1, "concurrency": {"limit": 1}})
    assert found == [
        (
            "$.activities[0].concurrency",
            "applies to activities, maps (their items) and child workflows, not this step",
        )
    ]


def test_an_inline_limit_is_named_after_its_definition_and_step():
    run = run_of(limited(key="input.tenant"))
    assert run.activity("pay").limit.name == "g:pay"
    assert run.activity("pay").limit.shared is False


# -- decide: queued, let in, given back ----------------------------------------------


def test_a_limited_step_queues_for_its_slot_instead_of_running():
    run = run_of(limited(key="input.tenant"), priority=2)
    step = run.activity("pay")
    assert step.status is S.QUEUED
    assert step.claim == Claim("g:pay", "acme", 2, priority=2)
    assert run.scheduled() == []
    assert [h.type for h in run.decision.history][-1] is HistoryType.QUEUE_ACTIVITY
    assert run.decision.history[-1].data == {"attempt": 1, "limit": "g:pay", "key": "acme"}


def test_a_slot_timer_schedules_the_attempt_with_its_schedule_to_start_timer():
    run = run_of(limited(config={"timeouts": {"schedule_to_start_s": 5}}))
    let_in(run, "pay")
    assert run.status("pay") is S.SCHEDULED
    assert run.activity("pay").attempt == 1
    assert RunActivity(0, 1) in run.decision.commands
    assert any(isinstance(c, StartTimer) and c.kind == TimerKind.SCHEDULE_TO_START for c in run.decision.commands)


def test_a_slot_timer_for_a_step_no_longer_queued_is_stale():
    run = run_of(limited())
    let_in(run, "pay")
    before = run.state
    let_in_again = TimerFired(TimerKind.SLOT, 0, 1, occurred_at=run._now())  # the same grant, twice
    decision = run._decide(let_in_again)
    assert decision.state == before
    assert decision.commands == ()


@pytest.mark.parametrize("outcome", [Outcome.SUCCEEDED, Outcome.PERMANENT_FAILURE])
def test_the_attempts_end_leaves_the_step_out_of_flight(outcome):
    """What holds a slot is a step in flight: its end is the slot's return."""
    run = run_of(limited(), {"name": "B"})
    let_in(run, "pay")
    run.end("pay", outcome)
    assert not run.status("pay").in_flight
    assert run.status("pay") is not S.QUEUED


def test_a_retry_queues_again_with_the_same_claim():
    run = run_of(limited(key="input.tenant", config={"retry": {"max_attempts": 3, "initial_delay_ms": 10}}))
    let_in(run, "pay")
    run.end("pay", Outcome.TEMPORARY_FAILURE)
    assert run.status("pay") is S.WAITING_RETRY
    run.decision = run._decide(TimerFired(TimerKind.RETRY, 0, 2, occurred_at=run._now()))
    assert run.status("pay") is S.QUEUED
    assert run.activity("pay").claim.key == "acme"
    let_in(run, "pay")
    assert run.status("pay") is S.SCHEDULED and run.activity("pay").attempt == 2


def test_a_timeout_gives_the_slot_back_by_ending_the_attempt():
    """A worker that died holding a slot: its attempt times out, which ends it."""
    run = run_of(limited(config={"timeouts": {"start_to_close_s": 5}, "retry": {"max_attempts": 1}}), {"name": "B"})
    let_in(run, "pay")
    run.decision = run._decide(ActivityStarted(0, 1, occurred_at=run._now()))
    assert run.status("pay") is S.STARTED
    run.decision = run._decide(TimerFired(TimerKind.START_TO_CLOSE, 0, 1, occurred_at=run._now()))
    assert run.status("pay") is S.FAILED
    assert "start-to-close timeout" in run.activity("pay").error


def test_cancelling_a_queued_step_deletes_its_grant():
    run = run_of(limited())
    decision = run._decide(CancelRequested(occurred_at=run._now()))
    assert decision.state.activities[0].status is S.CANCELLED
    assert CancelTimer(TimerKind.SLOT, 0, 1) in decision.commands


def timed(state: Any, workflow_s: float) -> Run:
    """A run whose workflow times out ``workflow_s`` after its start."""
    return Run(replace(state, config={"timeouts": {"workflow_s": workflow_s}}))


@pytest.mark.parametrize(
    ("entries", "queued"),
    [
        ([limited()], ["pay"]),  # its turn came at the start
        ([{"name": "B"}, limited()], []),  # its turn comes later
        ([{"name": "A", "id": "each", "map": {"over": "input.items"}, "concurrency": {"limit": 1}}], ["each[0]"]),
    ],
)
def test_the_workflow_timeout_counts_from_the_start_queued_time_included(entries, queued):
    """A workflow timeout is a deadline on the whole workflow: time a step spends queued for
    a slot counts. The timer is set at the start, whatever waits for a slot afterwards."""
    run = timed(state_of(*entries, input_data={"tenant": "acme", "items": [1, 2, 3]}), 30)
    assert StartTimer(TimerKind.WORKFLOW, 30_000, None, 1) in run.decision.commands
    assert [a.id for a in run.state.activities if a.status is S.QUEUED][: len(queued)] == queued
    if not queued:
        run.end("B")  # the limited step's turn: it queues; no timer is set or moved for it
        assert run.status("pay") is S.QUEUED
        assert not any(isinstance(c, StartTimer) and c.kind == TimerKind.WORKFLOW for c in run.decision.commands)
    waiting = [a for a in run.state.activities if a.status is S.QUEUED]
    run.decision = run._decide(TimerFired(TimerKind.WORKFLOW, None, 1, occurred_at=run._now()))
    assert run.state.status is WorkflowStatus.FAILED
    assert run.state.error == "workflow timed out: not ended within 30 s"
    # Each queued step's grant (if one raced the timeout) is deleted: the slot goes back.
    for step in waiting:
        assert run.status(step.id) is S.SKIPPED
        assert CancelTimer(TimerKind.SLOT, step.position, step.attempt + 1) in run.decision.commands


def test_a_retry_from_failure_gives_its_new_run_a_whole_timeout_queued_time_included():
    run = timed(state_of(limited(), input_data={"tenant": "acme"}), 30)
    run.decision = run._decide(TimerFired(TimerKind.WORKFLOW, None, 1, occurred_at=run._now()))
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.status("pay") is S.QUEUED
    assert StartTimer(TimerKind.WORKFLOW, 30_000, None, 2) in run.decision.commands


def test_a_slot_granted_after_the_workflow_ended_is_stale():
    run = run_of(limited())
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    let_in(run, "pay")
    assert run.decision.commands == ()
    assert run.state.status is WorkflowStatus.CANCELLED


def test_a_retry_from_failure_queues_again():
    run = run_of(limited(), {"name": "B"})
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.status("pay") is S.QUEUED


def test_a_key_without_a_value_fails_the_step_before_it_runs():
    run = run_of(limited(key="abs(input.tenant)"), tenant={"not": "a number"})
    assert run.status("pay") is S.FAILED
    assert "concurrency.key" in run.activity("pay").error


def test_a_maps_items_each_claim_with_their_own_key():
    run = run_of(
        {
            "name": "A",
            "id": "each",
            "map": {"over": "input.items"},
            "concurrency": {"key": "join('-', [input.tenant, to_string(item)])", "limit": 1},
        }
    )
    items = [a for a in run.state.activities if a.parent is not None]
    assert [a.status for a in items] == [S.QUEUED] * 3
    assert [a.claim.key for a in items] == ["acme-1", "acme-2", "acme-3"]
    let_in(run, "each[1]")
    assert run.status("each[1]") is S.SCHEDULED


def test_a_failing_item_skips_the_queued_ones_and_deletes_their_grants():
    run = run_of({"name": "A", "id": "each", "map": {"over": "input.items"}, "concurrency": {"limit": 1}})
    let_in(run, "each[0]")
    run.end("each[0]", Outcome.PERMANENT_FAILURE)
    assert run.status("each[1]") is S.SKIPPED
    assert CancelTimer(TimerKind.SLOT, run.activity("each[1]").position, 1) in run.decision.commands


# -- admit: who is let in, in which order ----------------------------------------------


def waiter(key: str, n: int, *, priority: int = 3, max_: int | None = 2) -> Waiter:
    return Waiter(f"wf-{key}-{n}", 0, 1, 0, key, max_, priority, T0 + timedelta(seconds=n))


def names(granted: list[Waiter]) -> list[str]:
    return [w.workflow_id for w in granted]


def test_admit_lets_in_up_to_the_limit_per_key_round_robin_between_keys():
    big = [waiter("big", n) for n in range(100)]
    small = [waiter("small", n + 50) for n in range(3)]
    granted = admit(big + small, held={}, number=None)
    assert names(granted) == ["wf-big-0", "wf-small-50", "wf-big-1", "wf-small-51"]


def test_admit_takes_a_key_by_priority_then_age():
    queue = [waiter("k", 0, priority=5), waiter("k", 1, priority=1), waiter("k", 2, priority=1)]
    assert names(admit(queue, held={}, number=2)) == ["wf-k-1", "wf-k-2"]


def test_admit_counts_what_is_held_and_a_lowered_limit_lets_nothing_in():
    queue = [waiter("k", n) for n in range(5)]
    assert names(admit(queue, held={"k": 1}, number=3)) == ["wf-k-0", "wf-k-1"]
    assert admit(queue, held={"k": 4}, number=3) == []


def test_admit_uses_the_number_set_at_run_time_over_the_definitions():
    queue = [waiter("k", n, max_=1) for n in range(5)]
    assert len(admit(queue, held={}, number=None)) == 1
    assert len(admit(queue, held={}, number=4)) == 4


def test_a_named_limit_without_a_number_lets_nothing_in():
    assert admit([waiter("k", 0, max_=None)], held={}, number=None) == []


def test_a_long_key_is_kept_as_its_digest():
    assert key_text("a" * 10) == "a" * 10
    assert key_text({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert key_text("x" * 500).startswith("sha256:")
    assert key_text("x" * 500) != key_text("x" * 499 + "y")


# -- rate limits ---------------------------------------------------------------------


def rate_waiter(key: str, n: int, *, per_s: float | None = 10, burst: int | None = 2, priority: int = 3) -> Waiter:
    return Waiter(f"wf-{key}-{n}", 0, 1, 0, key, None, priority, T0 + timedelta(seconds=n), per_s, burst)


def test_a_rate_limit_lets_a_burst_in_then_one_per_interval():
    queue = [rate_waiter("k", n) for n in range(5)]
    granted, tats, next_at = pace(queue, {}, T0)
    assert names(granted) == ["wf-k-0", "wf-k-1"]  # burst 2
    assert tats == {"k": T0 + timedelta(seconds=0.2)}
    assert next_at == T0 + timedelta(seconds=0.1)  # tat - tolerance
    granted, tats, next_at = pace(queue[2:], tats, next_at)
    assert names(granted) == ["wf-k-2"]
    assert next_at == T0 + timedelta(seconds=0.2)


def test_a_rate_limit_over_any_window_lets_in_at_most_burst_plus_the_rate():
    """Drive pace() as the admission loop does (at each next_at) over 3 simulated seconds."""
    queue = [rate_waiter("k", n) for n in range(100)]
    tats: dict[str, Any] = {}
    now, starts = T0, []
    while queue and now < T0 + timedelta(seconds=3):
        granted, changed, next_at = pace(queue, tats, now)
        tats.update(changed)
        starts += [now] * len(granted)
        queue = [w for w in queue if w not in granted]
        now = next_at
    for first in starts:
        window = [s for s in starts if first <= s < first + timedelta(seconds=1)]
        assert len(window) <= 10 + 2
    assert len(starts) == 2 + 29  # the burst at 0 s, then one every 0.1 s until 2.9 s


def test_a_gcra_admits_its_burst_at_once_then_one_per_interval_and_says_how_long_to_wait():
    rate = Gcra(4, burst=4)
    assert (rate.interval_s, rate.tolerance_s) == (0.25, 0.75)
    tat = None
    for n in range(4):  # a burst of 4 at t=100
        tat = rate.take(tat, 100.0)
        assert tat == 100.0 + 0.25 * (n + 1)
    assert rate.take(tat, 100.0) is None  # the fifth waits for the next interval
    assert rate.wait_s(tat, 100.0) == 0.25
    assert rate.take(tat, 100.25) == 101.25
    assert rate.wait_s(None, 100.0) == 0.0 and rate.take(None, 7.0) == 7.25
    assert rate.take(101.25, 500.0) == 500.25  # idle: an old arrival time counts as now


@pytest.mark.parametrize(("per_s", "burst"), [(10, 10), (2, 2), (0.5, 1), (400, 400)])
def test_a_gcra_over_any_window_admits_at_most_burst_plus_rate_times_the_window(per_s, burst):
    """Tries every millisecond for 5 simulated seconds, as a flood would."""
    rate, tat, admitted = Gcra(per_s, burst=burst), None, []
    for ms in range(5000):
        taken = rate.take(tat, ms / 1000)
        if taken is not None:
            tat = taken
            admitted.append(ms / 1000)
    # Admissions i..j (j - i + 1 of them, within admitted[j] - admitted[i] seconds) for
    # every pair: (j - per_s * a[j]) - (i - per_s * a[i]) <= burst - 1.
    lowest = float("inf")
    for j, at in enumerate(admitted):
        lowest = min(lowest, j - per_s * at)
        assert j - per_s * at - lowest <= burst - 1 + 1e-6
    assert len(admitted) >= burst + per_s * 4.99 - 1  # and it does admit the rate


def test_each_key_has_its_own_rate_and_the_run_time_rate_overrides():
    queue = [rate_waiter("a", 0), rate_waiter("a", 1), rate_waiter("a", 2), rate_waiter("b", 3)]
    assert names(pace(queue, {}, T0)[0]) == ["wf-a-0", "wf-a-1", "wf-b-3"]
    assert names(pace(queue, {}, T0, per_s=1, burst=1)[0]) == ["wf-a-0", "wf-b-3"]


def test_a_rate_limit_without_a_rate_lets_nothing_in():
    assert pace([rate_waiter("k", 0, per_s=None)], {}, T0) == ([], {}, None)


def test_a_step_takes_a_concurrency_limit_or_a_rate_limit_not_both():
    found = problems({"name": "A", "concurrency": {"limit": 1}, "rate_limit": {"per_s": 1}})
    assert found == [("$.activities[0].rate_limit", "a step takes a concurrency limit or a rate limit, not both")]


@pytest.mark.parametrize(
    ("rate_limit", "path"),
    [
        ({"per_s": 0}, "$.activities[0].rate_limit.per_s"),
        ({"per_s": 1, "burst": 0}, "$.activities[0].rate_limit.burst"),
        ({"burst": 2}, "$.activities[0].rate_limit"),
    ],
)
def test_a_bad_rate_limit_is_refused_at_its_path(rate_limit, path):
    assert {p for p, _ in problems({"name": "A", "rate_limit": rate_limit})} == {path}


def test_a_rate_limited_step_queues_with_a_rate_claim():
    run = run_of({"name": "A", "id": "mail", "rate_limit": {"key": "input.tenant", "per_s": 10, "burst": 5}})
    step = run.activity("mail")
    assert step.status is S.QUEUED
    assert step.claim == Claim("g:mail", "acme", None, 3, per_s=10, burst=5, rate=True)
    let_in(run, "mail")
    assert run.status("mail") is S.SCHEDULED


def test_a_retry_from_failure_marks_a_sent_attempt_of_the_run_before_which_holds_no_slot_until_it_starts():
    """The cancel gave back the slot of the attempt sent and not started; the new run keeps
    the attempt in flight, marked as the run before's (``attempt == attempts_before``: the
    stores' hold rule counts it only once it is reported started), and its 'cancelled
    before it started' report queues the step for a slot again."""
    run = run_of(limited(), {"name": "B", "independent": True})
    let_in(run, "pay")
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    step = run.activity("pay")
    assert step.status is S.SCHEDULED and step.attempt == step.attempts_before == 1
    run.end("pay", Outcome.CANCELLED)
    assert run.status("pay") is S.QUEUED and run.scheduled() == []


def test_an_attempt_a_worker_did_not_start_for_a_forgotten_notice_queues_for_a_slot_again():
    """Reported Cancelled by a worker that forgot notices sent after it (flow.worker.running):
    the run goes on, so the step waits for a slot again, and no attempt counts against it."""
    run = run_of(limited(config={"retry": {"max_attempts": 1}}))
    let_in(run, "pay")
    run.end("pay", Outcome.CANCELLED)
    step = run.activity("pay")
    assert step.status is S.QUEUED and step.attempts_before == 1
    let_in(run, "pay")
    assert run.status("pay") is S.SCHEDULED and RunActivity(0, 2) in run.decision.commands
