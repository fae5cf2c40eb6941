"""A concurrency limit on a whole workflow, rule by rule: the definition's top-level
``concurrency``, the claim made from the input, and the pure ``decide()`` (a workflow
queues at its start and at each retry-from-failure, a ``slot`` timer with no position
lets its run in, any end gives the slot back)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from flow.core import workflow_limit
from flow.core.commands import CancelTimer, RunActivity, StartTimer
from flow.core.decide import decide
from flow.core.definition import parse
from flow.core.events import (
    ActivityCompleted,
    CancelRequested,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    TimerFired,
    WorkflowStarted,
)
from flow.core.limits import Claim, Waiter, admit, displaced, newest
from flow.core.state import WorkflowState
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from flow.errors import DefinitionError
from tests.unit.test_graph import T0

KNOWN = {"A", "B"}


def body(concurrency: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"name": "g", "activities": [{"name": "A"}, {"name": "B"}]}
    if concurrency is not None:
        found["concurrency"] = concurrency
    if config:
        found["config"] = config
    return found


def problems(concurrency: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        parse(body(concurrency), known_activities=KNOWN)
    return caught.value.problems


class Flow:
    """A workflow of ``body`` driven through decisions, as the engine would."""

    def __init__(self, definition_body: dict[str, Any], tenant: Any = "acme") -> None:
        definition = parse(definition_body, known_activities=KNOWN)
        assert definition.limit is not None
        strategy = workflow_limit.strategy_of(definition_body)
        claim = workflow_limit.claim(definition.limit, {"tenant": tenant}, 3, strategy=strategy)
        assert isinstance(claim, Claim)
        self.state = WorkflowState(
            id="wf",
            name="g",
            definition_version=1,
            status=WorkflowStatus.IN_PROGRESS,
            input_data={"tenant": tenant},
            config=dict(definition.config),
            activities=definition.initial_activities(),
            created_at=T0,
            claim=claim,
        )
        self.clock = 0
        self.decision = self.on(WorkflowStarted(self.now()))

    def now(self):
        self.clock += 1
        return T0 + timedelta(seconds=self.clock)

    def on(self, event):
        self.decision = decide(self.state, event)
        self.state = self.decision.state
        return self.decision

    def grant(self, run: int | None = None):
        return self.on(TimerFired(TimerKind.SLOT, None, self.state.run if run is None else run, occurred_at=self.now()))

    def end(self, position: int, outcome: Outcome = Outcome.SUCCEEDED):
        attempt = self.state.activities[position].attempt
        return self.on(ActivityCompleted(position, attempt, outcome, occurred_at=self.now()))

    def types(self) -> list[str]:
        return [h.type for h in self.decision.history]


LIMITED = {"key": "input.tenant", "limit": 1}


# -- the definition ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("concurrency", "path", "says"),
    [
        ({}, "$.concurrency", "should be non-empty"),
        ({"limit": 0}, "$.concurrency.limit", "less than the minimum"),
        ({"limit": 1, "key": "input.["}, "$.concurrency.key", "not a JMESPath expression"),
        ({"limit": 1, "strategy": "lifo"}, "$.concurrency.strategy", "is not one of"),
        ({"limit": 1, "strategy": "cancel_oldest"}, "$.concurrency.strategy", "is not one of"),
        ({"limit": 1, "per": 2}, "$.concurrency", "Additional properties"),
    ],
)
def test_a_bad_workflow_concurrency_is_refused_at_its_path(concurrency, path, says):
    found = problems(concurrency)
    assert {p for p, _ in found} == {path}
    assert any(says in message for _, message in found)


def test_an_inline_workflow_limit_is_named_after_its_definition_and_a_named_one_shared():
    assert parse(body({"limit": 2, "strategy": "queue"}), known_activities=KNOWN).limit.name == "g"
    named = parse(body({"name": "tenants", "key": "input.tenant"}), known_activities=KNOWN).limit
    assert (named.name, named.shared, named.limit) == ("tenants", True, None)
    assert parse(body(), known_activities=KNOWN).limit is None


def test_the_claim_reads_the_key_over_the_input():
    limit = parse(body(LIMITED), known_activities=KNOWN).limit
    assert workflow_limit.claim(limit, {"tenant": "acme"}, 2) == Claim("g", "acme", 1, 2)
    assert workflow_limit.claim(limit, {}, 3) == Claim("g", "null", 1, 3)
    keyless = parse(body({"limit": 4}), known_activities=KNOWN).limit
    assert workflow_limit.claim(keyless, {"tenant": "x"}, 3) == Claim("g", "", 4, 3)


def test_a_key_that_cannot_be_evaluated_over_the_input_says_why():
    limit = parse(body({"key": "length(input.tenant)", "limit": 1}), known_activities=KNOWN).limit
    why = workflow_limit.claim(limit, {"tenant": 5}, 3)
    assert isinstance(why, str) and why.startswith("concurrency.key")


# -- decide ----------------------------------------------------------------------------


def test_a_limited_workflow_starts_queued_and_schedules_nothing():
    flow = Flow(body(LIMITED, timeouts={"workflow_s": 60}))
    assert flow.state.started and flow.state.queued
    assert flow.state.status is WorkflowStatus.IN_PROGRESS
    assert [a.status for a in flow.state.activities] == [ActivityStatus.PENDING] * 2
    assert flow.types() == [HistoryType.START_WORKFLOW, HistoryType.QUEUE_WORKFLOW]
    assert flow.decision.history[1].data == {"run": 1, "limit": "g", "key": "acme"}
    # Its workflow timeout counts from its start, queued time included.
    assert [type(c) for c in flow.decision.commands] == [StartTimer]


def test_its_grant_lets_the_run_in_and_schedules_its_first_step():
    flow = Flow(body(LIMITED))
    flow.grant()
    assert not flow.state.queued
    assert flow.types() == [HistoryType.TIMER_FIRED, HistoryType.ADMIT_WORKFLOW, HistoryType.SCHEDULE_ACTIVITY]
    assert flow.decision.commands == (RunActivity(0, 1),)


@pytest.mark.parametrize("run", [2, 0])
def test_a_grant_for_another_run_is_stale(run):
    flow = Flow(body(LIMITED))
    flow.grant(run)
    assert flow.state.queued and flow.decision.commands == ()
    assert flow.types() == [HistoryType.TIMER_FIRED, HistoryType.DO_NOTHING]


def test_a_second_grant_once_let_in_is_stale():
    flow = Flow(body(LIMITED))
    flow.grant()
    flow.grant()
    assert flow.types() == [HistoryType.TIMER_FIRED, HistoryType.DO_NOTHING]
    assert flow.decision.commands == ()


def test_a_queued_workflow_paused_and_resumed_still_waits_for_its_grant():
    flow = Flow(body(LIMITED))
    flow.on(PauseRequested(flow.now()))
    flow.on(ResumeRequested(flow.now()))
    assert flow.state.queued and flow.decision.commands == ()
    flow.grant()
    assert flow.decision.commands == (RunActivity(0, 1),)


def test_cancelling_a_queued_workflow_deletes_its_grant():
    flow = Flow(body(LIMITED))
    flow.on(CancelRequested(flow.now()))
    assert flow.state.status is WorkflowStatus.CANCELLED and not flow.state.queued
    assert CancelTimer(TimerKind.SLOT, None, 1) in flow.decision.commands
    flow.grant(1)  # a grant that raced the cancel: stale, and its row is deleted by the commit
    assert flow.types() == [HistoryType.TIMER_FIRED, HistoryType.DO_NOTHING]


def test_a_workflow_timeout_while_queued_fails_it_and_deletes_its_grant():
    flow = Flow(body(LIMITED, timeouts={"workflow_s": 5}))
    flow.on(TimerFired(TimerKind.WORKFLOW, None, 1, occurred_at=flow.now()))
    assert flow.state.status is WorkflowStatus.FAILED and not flow.state.queued
    assert CancelTimer(TimerKind.SLOT, None, 1) in flow.decision.commands


@pytest.mark.parametrize("outcome", [Outcome.SUCCEEDED, Outcome.PERMANENT_FAILURE])
def test_a_run_let_in_ends_holding_nothing_but_its_row(outcome):
    flow = Flow(body(LIMITED))
    flow.grant()
    flow.end(0, outcome)
    if outcome is Outcome.SUCCEEDED:
        flow.end(1)
    ended = flow.state.status
    assert ended in (WorkflowStatus.FINISHED, WorkflowStatus.FAILED)
    # Nothing queued: no grant to delete; its row, no longer In Progress, holds no slot.
    assert not flow.state.queued
    assert not any(isinstance(c, CancelTimer) and c.kind == TimerKind.SLOT for c in flow.decision.commands)


def test_a_retry_from_failure_queues_again_for_its_new_run():
    flow = Flow(body(LIMITED))
    flow.grant()
    flow.end(0, Outcome.PERMANENT_FAILURE)
    assert flow.state.status is WorkflowStatus.FAILED
    flow.on(RetryRequested(occurred_at=flow.now()))
    assert flow.state.status is WorkflowStatus.IN_PROGRESS and flow.state.queued and flow.state.run == 2
    assert flow.types() == [HistoryType.RETRY_REQUESTED, HistoryType.RETRY_WORKFLOW, HistoryType.QUEUE_WORKFLOW]
    assert not any(isinstance(c, RunActivity) for c in flow.decision.commands)
    flow.grant(1)  # the first run's grant: stale
    assert flow.decision.commands == ()
    flow.grant(2)
    assert flow.decision.commands == (RunActivity(0, 2),)


def test_a_workflow_without_a_limit_starts_at_once():
    state = replace(Flow(body(LIMITED)).state, claim=None, queued=False, started=False)
    decision = decide(state, WorkflowStarted(T0))
    assert decision.commands == (RunActivity(0, 1),)


# -- admit: workflows wait beside steps ---------------------------------------------------


def test_admit_lets_queued_workflows_in_by_priority_then_age_fairly_across_keys():
    def wf(key: str, n: int, priority: int = 3) -> Waiter:
        return Waiter(f"{key}-{n}", None, 1, 0, key, 1, priority, T0 + timedelta(seconds=n))

    queue = [wf("acme", 0), wf("acme", 1, priority=1), wf("zeta", 2), wf("omni", 3)]
    granted = admit(queue, held={"omni": 1}, number=None)
    assert [w.workflow_id for w in granted] == ["acme-1", "zeta-2"]


# -- cancel_newest --------------------------------------------------------------------

NEWEST = {"key": "input.tenant", "limit": 3, "strategy": "cancel_newest"}


def test_a_cancel_newest_claim_carries_its_strategy():
    flow = Flow(body(NEWEST))
    assert flow.state.claim.strategy == "cancel_newest" and flow.state.queued


def test_its_limit_cancel_timer_cancels_the_queued_workflow_with_the_reason():
    flow = Flow(body(NEWEST, timeouts={"workflow_s": 60}))
    flow.on(TimerFired(TimerKind.LIMIT_CANCEL, None, 1, occurred_at=flow.now()))
    assert flow.state.status is WorkflowStatus.CANCELLED and not flow.state.queued
    assert flow.state.error == "cancelled: 3 workflows with key acme already run (cancel_newest)"
    assert flow.types() == [HistoryType.TIMER_FIRED, HistoryType.WORKFLOW_CANCELLED]
    assert flow.decision.history[1].data == {"reason": "3 workflows with key acme already run (cancel_newest)"}
    assert {c.kind for c in flow.decision.commands} == {TimerKind.SLOT, TimerKind.WORKFLOW}  # cancelled
    assert [a.status for a in flow.state.activities] == [ActivityStatus.CANCELLED] * 2


def test_a_limit_cancel_for_a_workflow_let_in_or_another_run_is_stale():
    flow = Flow(body(NEWEST))
    flow.on(TimerFired(TimerKind.LIMIT_CANCEL, None, 2, occurred_at=flow.now()))
    assert flow.state.status is WorkflowStatus.IN_PROGRESS
    flow.grant()
    flow.on(TimerFired(TimerKind.LIMIT_CANCEL, None, 1, occurred_at=flow.now()))
    assert flow.state.status is WorkflowStatus.IN_PROGRESS
    assert flow.types() == [HistoryType.TIMER_FIRED, HistoryType.DO_NOTHING]


def test_the_reason_without_a_number_or_a_key():
    flow = Flow(body({"name": "tenants", "strategy": "cancel_newest"}))
    assert workflow_limit.cancel_reason(flow.state, 1) == (
        "as many workflows as the limit allows already run (cancel_newest)"
    )


def test_newest_cancels_what_a_full_key_did_not_let_in_and_only_for_cancel_newest():
    def wf(key: str, n: int, strategy: str = "cancel_newest", max_: int | None = 1) -> Waiter:
        return Waiter(f"{key}-{n}", None, 1, 0, key, max_, 3, T0 + timedelta(seconds=n), strategy=strategy)

    queue = [wf("acme", 0), wf("acme", 1), wf("zeta", 2), wf("omni", 3, "queue"), wf("none", 4, max_=None)]
    let_in = admit(queue, held={"zeta": 1, "omni": 1}, number=None)
    assert [w.workflow_id for w in let_in] == ["acme-0"]
    assert [w.workflow_id for w in newest(queue, let_in, None)] == ["acme-1", "zeta-2"]
    # A number set at run time counts: 0 lets nothing in, and everything is cancelled.
    assert [w.workflow_id for w in newest(queue, [], 0)] == ["acme-0", "acme-1", "zeta-2", "none-4"]


# -- cancel_in_progress ---------------------------------------------------------------

IN_PROGRESS = {"key": "input.tenant", "limit": 1, "strategy": "cancel_in_progress"}


def test_a_limit_cancel_timer_cancels_a_running_workflow_displaced_by_a_newer_one():
    flow = Flow(body(IN_PROGRESS))
    flow.grant()
    assert flow.state.activities[0].status is ActivityStatus.SCHEDULED
    flow.on(TimerFired(TimerKind.LIMIT_CANCEL, None, 1, occurred_at=flow.now()))
    assert flow.state.status is WorkflowStatus.CANCELLED
    assert flow.state.error == "cancelled: a newer workflow with key acme started (cancel_in_progress)"
    assert flow.types() == [HistoryType.TIMER_FIRED, HistoryType.WORKFLOW_CANCELLED]
    # Its attempt in flight is told to stop, as a requested cancel tells it.
    assert [type(c).__name__ for c in flow.decision.commands] == ["CancelAttempt"]


def test_a_limit_cancel_for_a_queued_cancel_in_progress_workflow_or_another_run_is_stale():
    flow = Flow(body(IN_PROGRESS))
    flow.on(TimerFired(TimerKind.LIMIT_CANCEL, None, 1, occurred_at=flow.now()))
    assert flow.state.status is WorkflowStatus.IN_PROGRESS and flow.state.queued
    flow.grant()
    flow.on(TimerFired(TimerKind.LIMIT_CANCEL, None, 2, occurred_at=flow.now()))
    assert flow.state.status is WorkflowStatus.IN_PROGRESS
    assert flow.types() == [HistoryType.TIMER_FIRED, HistoryType.DO_NOTHING]


def _wf(key: str, n: int, strategy: str = "cancel_in_progress", max_: int | None = 1) -> Waiter:
    return Waiter(f"{key}-{n}", None, 1, 0, key, max_, 3, T0 + timedelta(seconds=n), strategy=strategy)


def test_displaced_picks_the_oldest_holders_one_per_newcomer_not_let_in():
    waiters = [_wf("acme", 10), _wf("acme", 11), _wf("zeta", 12)]
    holders = [_wf("acme", 2), _wf("acme", 1), _wf("zeta", 3), _wf("omni", 0)]
    chosen = displaced(waiters, [], holders, {}, 2)
    assert [h.workflow_id for h in chosen] == ["acme-1", "acme-2", "zeta-3"]


def test_displaced_counts_the_cancels_already_on_their_way_and_lets_in_first():
    waiters = [_wf("acme", 10), _wf("acme", 11)]
    holders = [_wf("acme", 1), _wf("acme", 2)]
    # One holder was told already: one more for the second newcomer.
    assert [h.workflow_id for h in displaced(waiters, [], holders, {"acme": 1}, None)] == ["acme-1"]
    # A newcomer let in (a slot was free) displaces nobody.
    assert displaced(waiters, waiters, holders, {}, None) == []
    # Queue strategy waiters displace nobody, nor does a key with no number or 0.
    assert displaced([_wf("acme", 10, "queue")], [], holders, {}, None) == []
    assert displaced(waiters, [], holders, {}, 0) == []
    assert displaced([_wf("acme", 10, max_=None)], [], holders, {}, None) == []
