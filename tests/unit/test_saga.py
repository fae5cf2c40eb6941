"""Compensation and failure handlers, rule by rule, on ``decide()`` (flow.core.saga): which
undos run and in which order, one at a time, the chain stopped by an undo's failure, the
failure handler after them with the failure as its input, and the refusals at validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from flow.core import saga
from flow.core.commands import CancelAttempt, RunActivity, RunChild
from flow.core.decide import decide
from flow.core.definition import parse
from flow.core.events import (
    ActivityCompleted,
    CancelRequested,
    Event,
    RerunRequested,
    RetryRequested,
    TimerFired,
    WorkflowStarted,
)
from flow.core.kinds import spec_from_json, spec_to_json
from flow.core.kinds.child import cycle_problems
from flow.core.kinds.on_failure import unknown_handler
from flow.core.lineage import child_id
from flow.core.recovery import owed
from flow.core.state import WorkflowState
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from flow.errors import DefinitionError
from flow.wire.attempts import AttemptRequest

T0 = datetime(2026, 1, 1, 12, 0, 0)
S, P, H = ActivityStatus, WorkflowStatus, HistoryType
OK, TEMP, PERM = Outcome.SUCCEEDED, Outcome.TEMPORARY_FAILURE, Outcome.PERMANENT_FAILURE
KNOWN = {"ChargeCard", "RefundPayment", "ReserveStock", "ReleaseStock", "Ship", "NotifyOps", "Audit"}


def order(*, config: dict[str, Any] | None = None, independent_audit: bool = False) -> WorkflowState:
    """charge (undo: RefundPayment), reserve (undo: ReleaseStock), ship; with an
    ``audit`` (no undo) running beside them when asked."""
    steps: list[dict[str, Any]] = [
        {"id": "charge", "name": "ChargeCard", "compensate": {"name": "RefundPayment", "config": {"why": "saga"}}},
        {"id": "reserve", "name": "ReserveStock", "compensate": {"name": "ReleaseStock"}},
        {"id": "ship", "name": "Ship", "config": {"retry": {"max_attempts": 1}}},
    ]
    if independent_audit:
        steps.append({"id": "audit", "name": "Audit", "independent": True})
    body = {"name": "Order", "config": config or {}, "activities": steps}
    definition = parse(body, known_activities=KNOWN)
    return WorkflowState(
        id="wf-1",
        name="Order",
        definition_version=1,
        status=P.IN_PROGRESS,
        input_data={"order": 7},
        config=definition.config,
        activities=definition.initial_activities(),
        created_at=T0,
    )


def done(position: int, outcome: Outcome = OK, *, at: int, attempt: int = 1, **kw: Any) -> ActivityCompleted:
    return ActivityCompleted(position, attempt, outcome, T0 + timedelta(seconds=at), **kw)


def play(state: WorkflowState, *events: Event) -> tuple[WorkflowState, list[Any]]:
    """Every decision of ``events`` in turn: the last state and every decision."""
    decisions = []
    for event in events:
        decision = decide(state, event)
        decisions.append(decision)
        state = decision.state
    return state, decisions


def ids(state: WorkflowState, status: ActivityStatus | None = None) -> list[str]:
    return [a.id for a in state.activities[state.size :] if status is None or a.status is status]


def charged_and_reserved(state: WorkflowState) -> WorkflowState:
    state, _ = play(state, WorkflowStarted(T0), done(0, at=1, output={"charge": 12}), done(1, at=2))
    return state


def test_a_failed_run_undoes_what_succeeded_latest_first_one_at_a_time():
    state = charged_and_reserved(order())
    decision = decide(state, done(2, PERM, at=3, error="no truck"))
    after = decision.state
    assert after.status is P.COMPENSATING and after.finished_at is None
    assert ids(after) == ["undo(reserve)", "undo(charge)"]
    assert decision.commands == (RunActivity(3, 1),)  # one at a time: the latest completion first
    assert [h.type for h in decision.history] == [H.ACTIVITY_RESULT, H.START_COMPENSATION, H.SCHEDULE_ACTIVITY]
    assert saga.compensation(after) == "running"

    second = decide(after, done(3, at=4))
    assert second.commands == (RunActivity(4, 1),)
    last = decide(second.state, done(4, at=5))
    assert last.state.status is P.FAILED and last.state.finished_at == T0 + timedelta(seconds=5)
    assert last.state.error == "required activity ship (position 2) failed permanently: no truck"
    assert saga.compensation(last.state) == "done"
    assert [h.type for h in last.history] == [H.ACTIVITY_RESULT, H.END_COMPENSATION, H.WORKFLOW_FAILURE]
    assert last.history[-1].data["compensation"] == "done"


def test_the_order_is_the_order_of_completion_not_of_the_definition():
    state = order()
    both = replace(state.activities[1], independent=True)
    state = replace(state, activities=(state.activities[0], both, state.activities[2]))
    # reserve (independent) completes before charge: charge is undone first.
    state, _ = play(state, WorkflowStarted(T0), done(1, at=1), done(0, at=2))
    after = decide(state, done(2, PERM, at=3)).state
    assert ids(after) == ["undo(charge)", "undo(reserve)"]


@pytest.mark.parametrize(
    ("events", "undone"),
    [
        ([], []),  # the first activity failed: nothing succeeded, nothing is undone
        ([done(0, at=1)], ["undo(charge)"]),  # reserve failed: only charge is undone
    ],
)
def test_only_activities_that_succeeded_are_undone(events, undone):
    state, _ = play(order(), WorkflowStarted(T0), *events)
    failing = len(events)
    after = decide(state, done(failing, PERM, at=5)).state
    assert ids(after) == undone
    assert after.status is (P.COMPENSATING if undone else P.FAILED)


def test_a_skipped_activity_is_not_undone():
    state = order()
    skipped = replace(state.activities[0], when="input.never")
    state = replace(state, activities=(skipped, *state.activities[1:]))
    state, _ = play(state, WorkflowStarted(T0), done(1, at=1))
    assert state.activities[0].status is S.SKIPPED
    assert ids(decide(state, done(2, PERM, at=2)).state) == ["undo(reserve)"]


def _timed_out_reserve(config: dict[str, Any]) -> WorkflowState:
    """charge succeeded; reserve's only attempt started and timed out (its outcome unknown)."""
    state = order(config={"retry": {"max_attempts": 1}, "timeouts": {"start_to_close_s": 5}, **config})
    state, _ = play(state, WorkflowStarted(T0), done(0, at=1))
    state = replace(
        state, activities=tuple(replace(a, status=S.STARTED) if a.position == 1 else a for a in state.activities)
    )
    return state


@pytest.mark.parametrize(
    ("config", "undone"),
    [({}, ["undo(charge)"]), ({"compensate_unknown": True}, ["undo(reserve)", "undo(charge)"])],
)
def test_an_activity_whose_attempt_timed_out_is_undone_only_with_compensate_unknown(config, undone):
    state = _timed_out_reserve(config)
    after = decide(state, TimerFired(TimerKind.START_TO_CLOSE, 1, 1, T0 + timedelta(seconds=9))).state
    assert after.activities[1].status is S.FAILED
    assert ids(after) == undone


@pytest.mark.parametrize(
    ("config", "undone"),
    [({}, ["undo(charge)"]), ({"compensate_unknown": True}, ["undo(reserve)", "undo(charge)"])],
)
def test_an_activity_in_flight_when_the_run_fails_has_an_unknown_outcome(config, undone):
    state = order(config=config, independent_audit=True)
    state, _ = play(state, WorkflowStarted(T0), done(0, at=1))  # reserve and audit are in flight
    after = decide(state, done(3, PERM, at=2)).state  # audit fails the run
    assert after.activities[1].status is S.SCHEDULED
    assert ids(after) == undone  # the one in flight counts as the latest


@pytest.mark.parametrize(("config", "status"), [({}, P.CANCELLED), ({"compensate_on_cancel": True}, P.COMPENSATING)])
def test_a_cancel_compensates_only_with_compensate_on_cancel(config, status):
    state = charged_and_reserved(order(config=config))
    decision = decide(state, CancelRequested(T0 + timedelta(seconds=3), reason="customer"))
    assert decision.state.status is status
    if status is P.CANCELLED:
        assert ids(decision.state) == []
        return
    assert ids(decision.state) == ["undo(reserve)", "undo(charge)"]
    assert CancelAttempt(2, 1) in decision.commands  # ship, in flight, is told to stop as any cancel tells it
    end = play(decision.state, done(3, at=4), done(4, at=5))[0]
    assert end.status is P.CANCELLED and saga.compensation(end) == "done"


def test_an_undo_that_fails_for_good_stops_the_chain_and_is_reported():
    state = charged_and_reserved(order(config={"retry": {"max_attempts": 2, "initial_delay_ms": 100}}))
    state = decide(state, done(2, PERM, at=3)).state
    retried = decide(state, done(3, TEMP, at=4, error="stock service down"))
    assert retried.state.activities[3].status is S.WAITING_RETRY  # its own retry policy
    state = decide(retried.state, TimerFired(TimerKind.RETRY, 3, 2, T0 + timedelta(seconds=5))).state
    last = decide(state, done(3, PERM, at=6, attempt=2, error="gone"))
    assert last.state.status is P.FAILED
    assert last.state.activities[4].status is S.SKIPPED and last.state.activities[4].skip_reason == saga.CHAIN_STOPPED
    assert last.commands == ()  # undo(charge) never runs
    assert saga.compensation(last.state) == "failed"
    assert [h.type for h in last.history] == [
        H.ACTIVITY_RESULT,
        H.SKIP_ACTIVITY,
        H.END_COMPENSATION,
        H.WORKFLOW_FAILURE,
    ]


def test_the_failure_handler_runs_after_the_undos_with_the_failure_as_input():
    state = charged_and_reserved(order(config={"on_failure": {"name": "NotifyOps", "config": {"channel": "#ops"}}}))
    state, decisions = play(state, done(2, PERM, at=3, error="no truck"), done(3, at=4), done(4, at=5))
    assert ids(state) == ["undo(reserve)", "undo(charge)", "on_failure(NotifyOps)"]
    assert state.status is P.COMPENSATING  # the handler runs
    assert decisions[-1].commands == (RunActivity(5, 1),)
    assert [h.type for h in decisions[-1].history][-3:] == [
        H.END_COMPENSATION,
        H.START_FAILURE_HANDLER,
        H.SCHEDULE_ACTIVITY,
    ]
    request = AttemptRequest.of(state, 5, 1, reply_to="q")
    assert request.activity == "NotifyOps" and request.config == {"channel": "#ops"}
    assert request.input_data == {
        "failed_activity": "ship",
        "error": "required activity ship (position 2) failed permanently: no truck",
        "outputs": {"charge": {"charge": 12}},
        "compensation": "done",
    }
    # Its failure is recorded; the workflow ends Failed with its own error either way.
    end = decide(state, done(5, PERM, at=6, error="pager down")).state
    assert end.status is P.FAILED and end.activities[5].status is S.FAILED
    assert end.error == "required activity ship (position 2) failed permanently: no truck"


def test_a_failure_handler_alone_runs_when_nothing_is_undone():
    state = order(config={"on_failure": {"name": "NotifyOps"}})
    after = play(state, WorkflowStarted(T0), done(0, PERM, at=1))[0]
    assert ids(after) == ["on_failure(NotifyOps)"] and after.status is P.COMPENSATING
    assert saga.compensation(after) is None


def test_a_cancel_runs_no_failure_handler():
    state = charged_and_reserved(order(config={"on_failure": {"name": "NotifyOps"}}))
    assert decide(state, CancelRequested(T0 + timedelta(seconds=3))).state.status is P.CANCELLED


def test_a_failure_handler_that_names_a_definition_runs_as_a_child_workflow():
    state = order(config={"on_failure": {"workflow": "Cleanup", "version": 2}})
    decision = play(state, WorkflowStarted(T0), done(0, PERM, at=1, error="declined"))[1][-1]
    assert decision.commands == (RunChild(3, 1),)
    handler = decision.state.activities[3]
    assert handler.spec.input_of(decision.state)["failed_activity"] == "charge"
    assert spec_from_json(spec_to_json(handler.spec)) == handler.spec  # stored and read back alike


def test_while_compensating_the_run_is_over_for_the_definitions_steps():
    state = order(config={"compensate_unknown": False}, independent_audit=True)
    state, _ = play(state, WorkflowStarted(T0), done(0, at=1), done(3, PERM, at=2))
    assert state.status is P.COMPENSATING
    late = decide(state, done(1, TEMP, at=3))  # reserve's late failure: recorded, not retried
    assert late.commands == () and late.state.activities[1].status is S.FAILED
    assert decide(state, CancelRequested(T0 + timedelta(seconds=3))).state == state  # the undos run to their end
    assert decide(state, RetryRequested(T0 + timedelta(seconds=3))).state == state
    # After a restart only the undo in flight is owed, not reserve's attempt told to stop.
    assert [r.position for r in owed(state).runs] == [4]


def test_a_compensated_workflow_is_not_retried():
    state = charged_and_reserved(order())
    state, _ = play(state, done(2, PERM, at=3), done(3, at=4), done(4, at=5))
    retry = decide(state, RetryRequested(T0 + timedelta(seconds=6)))
    assert retry.state == state
    assert "compensation ran" in retry.history[-1].data["reason"]


@pytest.mark.parametrize(("from_step", "refused"), [("ship", True), ("reserve", True), ("charge", False)])
def test_a_rerun_of_a_compensated_workflow_must_run_every_undone_step_again(from_step, refused):
    state = charged_and_reserved(order())
    state, _ = play(state, done(2, PERM, at=3), done(3, at=4), done(4, at=5))
    rerun = decide(state, RerunRequested(T0 + timedelta(seconds=6), from_step))
    if refused:
        assert rerun.state == state
        assert "undone by the compensation" in rerun.history[-1].data["reason"]
        return
    assert rerun.state.status is P.IN_PROGRESS and rerun.commands == (RunActivity(0, 2),)
    assert ids(rerun.state) == [] and saga.compensation(rerun.state) is None  # the old ending is dropped


def test_an_undo_sees_the_activity_it_undoes():
    state = charged_and_reserved(order())
    state = play(state, done(2, PERM, at=3), done(3, at=4))[0]
    request = AttemptRequest.of(state, 4, 1, reply_to="q")
    assert request.activity == "RefundPayment" and request.config == {"why": "saga"}
    assert request.compensating == {"activity": "charge", "input": {"order": 7}, "config": {}, "output": {"charge": 12}}
    assert AttemptRequest.of(state, 0, 1, reply_to="q").compensating is None


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        (lambda b: b["activities"][0]["compensate"].update(name="Nope"), "$.activities[0].compensate.name", "Nope"),
        (lambda b: b["config"].update(on_failure={"name": "Nope"}), "$.config.on_failure.name", "Nope"),
        (lambda b: b["config"].update(on_failure={}), "$.config.on_failure", "name one"),
        (lambda b: b["config"].update(on_failure={"workflow": "Order"}), "$.config.on_failure.workflow", "its own"),
        (
            lambda b: b["activities"][1].update(config={"on_failure": {"name": "NotifyOps"}}),
            "$.activities[1].config.on_failure",
            "workflow's",
        ),
        (
            lambda b: b["activities"].append({"sleep_s": 1, "compensate": {"name": "RefundPayment"}}),
            "$.activities[2].compensate",
            "activity",
        ),
    ],
)
def test_validation_refuses_an_unknown_undo_or_handler_naming_it(change, path, says):
    body: dict[str, Any] = {
        "name": "Order",
        "config": {},
        "activities": [{"name": "ChargeCard", "compensate": {"name": "RefundPayment"}}, {"name": "Ship"}],
    }
    change(body)
    with pytest.raises(DefinitionError) as raised:
        parse(body, known_activities=KNOWN)
    assert any(p == path and says in message for p, message in raised.value.problems), raised.value.problems


@pytest.mark.parametrize(
    ("handler", "registered", "found"),
    [
        ({"workflow": "Cleanup"}, {("Cleanup", None)}, []),
        ({"workflow": "Cleanup"}, set(), ["unknown workflow definition 'Cleanup': register it first"]),
        ({"workflow": "Cleanup", "version": 2}, {("Cleanup", None)}, ["'Cleanup' version 2: register it first"]),
        ({"name": "NotifyOps"}, set(), []),  # a class: checked against the activities by parse
        (None, set(), []),
    ],
)
def test_a_failure_handler_workflow_must_exist_as_a_child_definition_must(handler, registered, found):
    body = {"name": "Order", "config": {"on_failure": handler} if handler else {}, "activities": [{"name": "Ship"}]}
    problems = unknown_handler(body, lambda name, version: {} if (name, version) in registered else None)
    assert [path for path, _ in problems] == ["$.config.on_failure.workflow"] * len(found)
    assert all(said.endswith(end) for (_, said), end in zip(problems, found, strict=True)), problems
    # The same words as a child step's unknown definition.
    child = {
        "name": "Order",
        "activities": [{"workflow": "Cleanup", **({"version": 2} if "version" in (handler or {}) else {})}],
    }
    if found:
        [(_, said)] = cycle_problems(child, lambda name, version: None, lambda index, *keys: f"$[{index}]")
        assert said == problems[0][1]


def test_a_retried_workflow_that_fails_again_runs_its_failure_handler_again_after_that_runs_undos():
    """Once per failure, not once per workflow: a retry is a new run, and its failure is
    one an operator must hear of (or clean up after) too. The first run's handler keeps
    its outcome; the second is a step of its own, after the second run's undos."""
    state = order(config={"on_failure": {"name": "NotifyOps"}})
    state, _ = play(state, WorkflowStarted(T0), done(0, PERM, at=1, error="declined"), done(3, at=2))
    assert (state.status, ids(state)) == (P.FAILED, ["on_failure(NotifyOps)"])  # nothing to undo: no refusal
    state, _ = play(state, RetryRequested(T0 + timedelta(seconds=3)), done(0, at=4, attempt=2))
    failed = decide(state, done(1, PERM, at=5, error="no stock")).state
    assert ids(failed) == ["on_failure(NotifyOps)", "undo(charge)", "on_failure(NotifyOps, run 2)"]
    first, undo, again = failed.activities[3:]
    assert (first.status, undo.status) == (S.SUCCEEDED, S.SCHEDULED)  # the undo first, the handler after it
    assert again.status is S.PENDING and again.spec.failed_activity == "reserve"
    ended = play(failed, done(4, at=6), done(5, at=7))[0]
    assert ended.status is P.FAILED and [a.status for a in ended.activities[3:]] == [S.SUCCEEDED] * 3
    assert len({a.id for a in ended.activities}) == len(ended.activities)  # ids stay unique


def test_a_retried_workflows_second_failure_handler_workflow_is_a_child_of_its_own():
    state = order(config={"on_failure": {"workflow": "Cleanup"}})
    state, _ = play(state, WorkflowStarted(T0), done(0, PERM, at=1))
    state, _ = play(state, done(3, at=2), RetryRequested(T0 + timedelta(seconds=3)))
    decision = decide(state, done(0, PERM, at=4, attempt=2))
    assert decision.commands == (RunChild(4, 1),)
    first, again = decision.state.activities[3:]
    assert child_id(state.id, first.id) != child_id(state.id, again.id)
