"""Sub-workflows, rule by rule: the decision (table tests), the child's report, its input,
validation (with JSON paths), recursion, and what a transition owes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from flow.core.commands import CancelAttempt, CancelChild, RunActivity, RunChild
from flow.core.decide import decide
from flow.core.definition import parse
from flow.core.events import ActivityCompleted, CancelRequested, RetryRequested, TimerFired, WorkflowStarted
from flow.core.kinds import child as children
from flow.core.kinds.child import Child
from flow.core.lineage import ParentLink, child_id
from flow.core.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus
from flow.core.strict_json import json_path
from flow.core.vocabulary import HistoryType, Outcome, TimerKind
from flow.engine.planning import Routes, plan
from flow.errors import DefinitionError, WorkflowNotFound
from flow.persistence.mapping import _graph_fields, graph_column
from flow.service.children import start_child
from flow.wire.messages import AttemptResult, CancelWorkflow, StartChild

T0 = datetime(2026, 1, 1, 12, 0, 0)
S, P, H = ActivityStatus, WorkflowStatus, HistoryType


def at(seconds: float = 1) -> datetime:
    return T0 + timedelta(seconds=seconds)


def parent_state(*statuses: ActivityStatus, attempt: int = 1, status: WorkflowStatus = P.IN_PROGRESS) -> WorkflowState:
    """A parent: activity 0 is a class, activity 1 runs the child workflow ``Child``."""
    first = ActivityState(position=0, name="A", independent=False, required=True, config={}, id="a")
    second = ActivityState(
        position=1,
        name="Child",
        independent=False,
        required=True,
        config={},
        id="child",
        spec=Child("Child", 2, "{n: input.n, a: outputs.a}"),
    )
    activities = tuple(
        replace(a, status=s, attempt=0 if s is S.PENDING else attempt)
        for a, s in zip((first, second), statuses or (S.PENDING, S.PENDING), strict=True)
    )
    return WorkflowState(
        id="parent-1",
        name="Parent",
        definition_version=1,
        status=status,
        input_data={"n": 7},
        config={},
        activities=activities,
        created_at=T0,
        started=bool(statuses),
    )


def child_result(outcome: Outcome, attempt: int = 1) -> ActivityCompleted:
    return ActivityCompleted(1, attempt, outcome, occurred_at=at(5), output={"done": True}, error="boom")


# -- the decision -------------------------------------------------------------------------


def test_a_child_activity_is_scheduled_like_any_other():
    started = decide(parent_state(), WorkflowStarted(at()))
    assert started.commands == (RunActivity(0, 1),)
    then = decide(started.state, ActivityCompleted(0, 1, Outcome.SUCCEEDED, at(2), output={"x": 1}))
    assert then.commands == (RunChild(1, 1),)
    assert then.state.activities[1].status is S.SCHEDULED


@pytest.mark.parametrize(
    ("statuses", "commands"),
    [
        ((S.SUCCEEDED, S.SCHEDULED), (CancelChild(1),)),
        ((S.SUCCEEDED, S.STARTED), (CancelChild(1),)),
        # A class activity in flight is told to stop (flow.core.kinds.activity), not cancelled as a child.
        ((S.SCHEDULED, S.PENDING), (CancelAttempt(0, 1),)),
        ((S.SUCCEEDED, S.SUCCEEDED), ()),
    ],
)
def test_cancelling_the_parent_cancels_the_children_in_flight(statuses, commands):
    decision = decide(parent_state(*statuses), CancelRequested(at(3), reason="no"))
    assert decision.state.status is P.CANCELLED
    assert decision.commands == commands
    # The child activity stays in flight: its child's end is recorded when it comes.
    assert decision.state.activities[1].status is (S.CANCELLED if statuses[1] is S.PENDING else statuses[1])


def timed_out(state: WorkflowState, seconds: float = 3):
    """The parent's workflow timeout fires: the parent fails."""
    return decide(state, TimerFired(TimerKind.WORKFLOW, None, state.run, occurred_at=at(seconds)))


@pytest.mark.parametrize(
    ("statuses", "commands"),
    [
        ((S.SUCCEEDED, S.SCHEDULED), (CancelChild(1),)),
        ((S.SUCCEEDED, S.STARTED), (CancelChild(1),)),
        # Its own attempt in flight is told to stop at once, not at its next heartbeat.
        ((S.STARTED, S.PENDING), (CancelAttempt(0, 1),)),
        ((S.SUCCEEDED, S.SUCCEEDED), ()),
    ],
)
def test_a_parent_that_fails_cancels_its_children_and_stops_its_attempts_in_flight(statuses, commands):
    decision = timed_out(parent_state(*statuses))
    assert decision.state.status is P.FAILED
    assert decision.commands == commands


@pytest.mark.parametrize(
    "late",
    [
        child_result(Outcome.PERMANENT_FAILURE),  # the child, cancelled by the parent's failure
        ActivityCompleted(1, 1, Outcome.PERMANENT_FAILURE, at(5), error="not started: the parent failed"),
    ],
    ids=["cancelled-child", "child-never-created"],
)
def test_a_parent_retried_before_its_cancelled_childs_result_runs_the_child_again(late):
    failed = timed_out(parent_state(S.SUCCEEDED, S.STARTED)).state
    retried = decide(failed, RetryRequested(at(4))).state
    assert retried.status is P.IN_PROGRESS and retried.activities[1].status is S.STARTED
    decision = decide(retried, replace(late, occurred_at=at(6)))
    assert decision.state.status is P.IN_PROGRESS
    assert decision.commands == (RunChild(1, 2),)
    step = decision.state.activities[1]
    assert (step.status, step.attempt, step.attempt - step.attempts_before) == (S.SCHEDULED, 2, 1)
    # The child's run 2 answers attempt 2: its failure now is the parent's failure.
    assert decide(decision.state, child_result(Outcome.PERMANENT_FAILURE, attempt=2)).state.status is P.FAILED


def test_a_child_of_the_retried_run_that_fails_still_fails_the_parent():
    state = parent_state(S.SUCCEEDED, S.STARTED)
    retried = decide(timed_out(state).state, RetryRequested(at(4)))
    after = decide(retried.state, child_result(Outcome.SUCCEEDED))
    assert after.state.activities[1].status is S.SUCCEEDED  # a late success is taken


@pytest.mark.parametrize(
    ("outcome", "recorded"),
    [(Outcome.PERMANENT_FAILURE, S.FAILED), (Outcome.SUCCEEDED, S.SUCCEEDED)],
)
def test_a_child_finishing_after_the_parent_was_cancelled_is_recorded_and_ignored(outcome, recorded):
    cancelled = decide(parent_state(S.SUCCEEDED, S.STARTED), CancelRequested(at(3))).state
    late = decide(cancelled, child_result(outcome))
    assert late.state.status is P.CANCELLED
    assert late.commands == ()
    assert late.state.activities[1].status is recorded
    assert [h.type for h in late.history] == [H.ACTIVITY_RESULT, H.DO_NOTHING]
    assert late.history[-1].data == {"reason": "workflow Cancelled"}


def test_a_stale_child_result_changes_nothing():
    state = parent_state(S.SUCCEEDED, S.STARTED, attempt=2)
    decision = decide(state, child_result(Outcome.SUCCEEDED, attempt=1))
    assert decision.state == state
    assert decision.history[0].data["stale"] is True


def test_a_child_failure_fails_the_required_activity_and_the_parent():
    decision = decide(parent_state(S.SUCCEEDED, S.STARTED), child_result(Outcome.PERMANENT_FAILURE))
    assert decision.state.status is P.FAILED
    assert decision.state.activities[1].status is S.FAILED


def test_retry_from_failure_runs_a_failed_child_again_and_not_a_succeeded_one():
    failed = replace(parent_state(S.SUCCEEDED, S.FAILED, attempt=1), status=P.FAILED)
    again = decide(failed, RetryRequested(at(6)))
    assert again.commands == (RunChild(1, 2),)
    succeeded = replace(parent_state(S.FAILED, S.SUCCEEDED), status=P.FAILED)
    assert RunActivity(1, 2) not in decide(succeeded, RetryRequested(at(6))).commands


@pytest.mark.parametrize(
    ("run", "becomes", "reason"),
    [
        (None, 2, None),
        (3, 3, None),
        (1, 1, "run 1 was started already"),
    ],
)
def test_a_retry_names_the_run_it_starts_and_a_retry_for_a_started_run_is_stale(run, becomes, reason):
    state = replace(parent_state(S.SUCCEEDED, S.FAILED), status=P.FAILED)
    decision = decide(state, RetryRequested(at(6), run=run))
    assert decision.state.run == becomes
    if reason:
        assert decision.state.status is P.FAILED
        assert decision.history[-1].data == {"reason": reason}


# -- the child's side -------------------------------------------------------------------------


def child_state(status: WorkflowStatus, *, run: int = 1, attempt: int = 1) -> WorkflowState:
    return WorkflowState(
        id=child_id("parent-1", "child"),
        name="Child",
        definition_version=2,
        status=status,
        input_data={},
        config={},
        activities=(),
        created_at=T0,
        started=True,
        run=run,
        output={"out": 1} if status is P.FINISHED else None,
        error=None if status is P.FINISHED else "required activity x failed",
        finished_at=at(9),
        parent=ParentLink("parent-1", 1, attempt),
    )


def test_the_child_id_is_the_same_for_every_attempt_and_fits_a_workflow_id():
    assert child_id("p", "a") == child_id("p", "a") != child_id("p", "b")
    assert len(child_id("x" * 36, "y" * 128)) == 36


def test_a_parent_link_maps_runs_to_attempts():
    link = ParentLink("p", 3, attempt=2)
    assert [link.attempt_of_run(r) for r in (1, 2, 3)] == [2, 3, 4]
    assert link.run_of_attempt(4) == 3


@pytest.mark.parametrize(
    ("status", "run", "outcome", "attempt"),
    [
        (P.FINISHED, 1, Outcome.SUCCEEDED, 1),
        (P.FAILED, 1, Outcome.PERMANENT_FAILURE, 1),
        (P.CANCELLED, 2, Outcome.PERMANENT_FAILURE, 2),
    ],
)
def test_an_ended_child_reports_to_the_attempt_its_run_answers(status, run, outcome, attempt):
    parent_id, result = children.report(child_state(status, run=run))
    assert (parent_id, result.position, result.attempt, result.outcome) == ("parent-1", 1, attempt, outcome)
    if outcome is Outcome.SUCCEEDED:
        assert result.output == {"out": 1} and result.error is None
    else:
        assert status.lower() in result.error and "required activity x failed" in result.error


def test_a_running_child_or_a_workflow_without_parent_reports_nothing():
    assert children.report(child_state(P.IN_PROGRESS)) is None
    assert children.report(replace(child_state(P.FINISHED), parent=None)) is None


@pytest.mark.parametrize(
    ("expression", "expected", "error"),
    [
        (None, {"n": 7}, None),
        ("{n: input.n, a: outputs.a}", {"n": 7, "a": {"x": 1}}, None),
        ("input.n", None, "gave int, not a JSON object"),
        ("length(input.n)", None, "could not be evaluated"),
        # What no door lets in: infinity from to_number, a lone surrogate from a literal.
        ("{big: to_number('1.5e999')}", None, "not JSON every client reads"),
        ('{text: `"\\ud800"`}', None, "not JSON every client reads"),
    ],
)
def test_the_child_input_is_an_expression_over_input_and_outputs(expression, expected, error):
    state = parent_state(S.SUCCEEDED, S.SCHEDULED)
    state = replace(state, activities=(replace(state.activities[0], output={"x": 1}), state.activities[1]))
    activity = replace(state.activities[1], spec=Child("Child", input=expression))
    value, why = children.child_input(state, activity)
    assert value == expected
    assert (why is None) if error is None else (error in why)


# -- what a transition owes -----------------------------------------------------------------


def owed(state: WorkflowState, commands=(), ended=()):
    return plan(
        state,
        [(c, at()) for c in commands],
        Routes(
            partition=3,
            reply_to="flow.engine.3",
            activity_queue="flow.activities",
            engine_queue="flow.engine",
            queue_of=lambda wid: f"queue-of-{wid}",
        ),
        send_after=at(),
        ended=ended,
    ).owed


def test_a_child_attempt_is_a_start_on_the_engine_queue():
    state = parent_state(S.SUCCEEDED, S.SCHEDULED)
    state = replace(state, activities=(replace(state.activities[0], output={"x": 1}), state.activities[1]))
    (start,) = owed(state, [RunChild(1, 1)])
    assert (start.queue_name, start.partition) == ("flow.engine", 3)
    message = StartChild.from_kwargs(start.kwargs)
    assert message == StartChild(
        workflow_id="parent-1",
        position=1,
        attempt=1,
        child_id=child_id("parent-1", "child"),
        definition="Child",
        version=2,
        input_data={"n": 7, "a": {"x": 1}},
        reply_to="flow.engine.3",
    )


def test_a_child_input_that_is_no_object_fails_the_attempt_at_once():
    state = parent_state(S.SUCCEEDED, S.SCHEDULED)
    state = replace(
        state, activities=(state.activities[0], replace(state.activities[1], spec=Child("C", input="input.n")))
    )
    (result,) = owed(state, [RunChild(1, 1)])
    assert result.queue_name == "flow.engine.3"
    message = AttemptResult.from_kwargs(result.kwargs)
    assert (message.outcome, message.attempt) == (Outcome.PERMANENT_FAILURE, 1)
    assert "not a JSON object" in message.error


def test_cancel_child_is_a_cancel_on_the_child_partition_queue():
    (cancel,) = owed(parent_state(S.SUCCEEDED, S.STARTED), [CancelChild(1)])
    child = child_id("parent-1", "child")
    assert cancel.queue_name == f"queue-of-{child}"
    assert CancelWorkflow.from_kwargs(cancel.kwargs).workflow_id == child


def test_a_transition_that_ends_a_child_owes_its_parent_the_result():
    ended = child_state(P.FINISHED, run=2)
    (report,) = owed(ended, ended=[ended])
    assert report.queue_name == "queue-of-parent-1"
    message = AttemptResult.from_kwargs(report.kwargs)
    assert (message.workflow_id, message.position, message.attempt) == ("parent-1", 1, 2)
    assert (message.outcome, message.output) == (Outcome.SUCCEEDED, {"out": 1})
    assert owed(replace(ended, parent=None), ended=[replace(ended, parent=None)]) == []


def test_the_child_spec_round_trips_through_the_graph_column():
    activity = parent_state().activities[1]
    column = graph_column(activity)
    assert json.loads(column) == {
        "id": "child",
        "workflow": {"name": "Child", "version": 2, "input": "{n: input.n, a: outputs.a}"},
    }
    assert _graph_fields(json.loads(column))["spec"] == activity.spec


# -- validation ------------------------------------------------------------------------------


def problems(body) -> list[tuple[str, str]]:
    try:
        parse(body, known_activities={"NoopActivity"})
    except DefinitionError as e:
        return e.problems
    return []


@pytest.mark.parametrize(
    ("activity", "path", "words"),
    [
        ({"workflow": "C", "name": "NoopActivity"}, "$.activities[0]", "name and workflow cannot be used together"),
        ({"id": "x"}, "$.activities[0]", "needs a name: a step is an activity"),
        ({"name": "NoopActivity", "version": 2}, "$.activities[0].version", "child workflow activity"),
        ({"name": "NoopActivity", "input": "input"}, "$.activities[0].input", "child workflow activity"),
        ({"workflow": "C", "input": "{a: "}, "$.activities[0].input", "not a JMESPath expression"),
        ({"workflow": "C", "config": {}}, "$.activities[0].config", "takes no config"),
        ({"workflow": "not a name"}, "$.activities[0].workflow", "does not match"),
        ({"workflow": "C", "version": 0}, "$.activities[0].version", "minimum"),
    ],
)
def test_invalid_child_activities_are_refused_naming_the_json_path(activity, path, words):
    found = problems({"name": "P", "activities": [activity]})
    assert any(p == path and words in m for p, m in found), found


def test_a_child_activity_defaults_its_id_to_its_definition_name_and_pins_the_newest_version():
    definition = parse(
        {"name": "P", "activities": [{"workflow": "C"}, {"workflow": "D", "version": 4}]}, known_activities=()
    )
    first, second = definition.initial_activities({"C": 3, "D": 9})
    assert (first.id, first.name, first.spec) == ("C", "C", Child("C", 3))
    assert second.spec == Child("D", 4)  # pinned by the definition: kept
    assert first.timeouts.start_to_close_s is None


def path(index: int, *keys) -> str:
    return json_path(["activities", index, *keys])


def body(name: str, *children_: str | tuple[str, int]) -> dict:
    entries = [{"workflow": c} if isinstance(c, str) else {"workflow": c[0], "version": c[1]} for c in children_] or [
        {"name": "NoopActivity"}
    ]
    return {"name": name, "activities": [{"name": "NoopActivity"}, *entries]}


def registry(*bodies: dict, versions: dict | None = None):
    newest = {b["name"]: b for b in bodies}

    def lookup(name, version):
        if version is not None:
            return (versions or {}).get((name, version))
        return newest.get(name)

    return lookup


@pytest.mark.parametrize(
    ("checked", "others", "words"),
    [
        (body("A", "A"), [], "reaches itself through child workflows: A -> A"),
        (body("A", "B"), [body("B", "C"), body("C", "A")], "reaches itself through child workflows: A -> B -> C -> A"),
        (body("A", "B"), [body("B", "C"), body("C", "B")], "reaches a recursion: A -> B -> C -> B"),
        (body("A", "Nope"), [], "unknown workflow definition 'Nope'"),
    ],
)
def test_a_definition_that_reaches_itself_through_children_is_refused(checked, others, words):
    found = children.cycle_problems(checked, registry(*others), path)
    assert found and found[0][0] == "$.activities[1].workflow", found
    assert words in found[0][1], found


def test_a_child_pinned_to_a_version_is_followed_in_that_version():
    older_b = body("B", "A")  # B v1 runs A: reaching A again
    found = children.cycle_problems(body("A", ("B", 1)), registry(body("B")), path)
    assert found == [("$.activities[1].workflow", "unknown workflow definition 'B' version 1: register it first")]
    found = children.cycle_problems(body("A", ("B", 1)), registry(body("B"), versions={("B", 1): older_b}), path)
    assert "A -> B v1 -> A" in found[0][1]


def test_children_that_do_not_reach_the_definition_pass_and_unknowns_can_be_allowed():
    lookup = registry(body("B", "C"), body("C"))
    assert children.cycle_problems(body("A", "B", "C"), lookup, path) == []
    assert children.cycle_problems(body("A", "Nope"), lookup, path, check_unknown=False) == []


# -- the start, on the starting side ------------------------------------------------------------


class _Store:
    """The parent (failed, or gone once the child exists) and the child it creates."""

    def __init__(self, parent: WorkflowState, *, deleted_after_create: bool = False) -> None:
        self.workflows = {parent.id: parent}
        self.deleted_after_create = deleted_after_create

    def get(self, workflow_id: str):
        if workflow_id not in self.workflows:
            raise WorkflowNotFound(workflow_id)
        return SimpleNamespace(state=self.workflows[workflow_id])

    def create_workflow(self, definition, version, input_data, *, workflow_id, parent, priority=3, **_):
        child = replace(child_state(P.IN_PROGRESS), id=workflow_id, parent=parent, started=False, priority=priority)
        self.workflows[workflow_id] = child
        if self.deleted_after_create:
            del self.workflows[parent.workflow_id]
        return child, True


class _Service:
    def __init__(self, store: _Store) -> None:
        self.store = store
        self.broker = SimpleNamespace(enqueue=lambda message: self.sent.append(message))
        self.sent: list = []
        self.cancelled: list[tuple[str, str]] = []

    def definition(self, name, version=None):
        return parse({"name": name, "activities": [{"name": "A"}]}, known_activities={"A"}), 2

    def child_versions(self, definition):
        return {}

    def namespace_of(self, name):
        return None  # a name nobody holds: the default namespace's

    def check_input(self, input_data):
        pass

    def partition_of(self, workflow_id):
        return 0

    def send_start(self, workflow_id):
        pass

    def cancel(self, workflow_id, reason=None):
        self.cancelled.append((workflow_id, reason))


def _start_request() -> StartChild:
    return StartChild(
        workflow_id="parent-1",
        position=1,
        attempt=1,
        child_id=child_id("parent-1", "child"),
        definition="Child",
        input_data={},
        reply_to="flow.engine.0",
    )


def test_a_child_is_not_created_for_a_parent_that_failed_and_the_attempt_is_told_why():
    service = _Service(_Store(replace(parent_state(S.SUCCEEDED, S.SCHEDULED), status=P.FAILED)))
    start_child(service, _start_request())
    assert child_id("parent-1", "child") not in service.store.workflows
    (sent,) = service.sent
    result = AttemptResult.from_kwargs(sent.kwargs)
    assert result.outcome is Outcome.PERMANENT_FAILURE and "its parent parent-1 failed" in result.error


@pytest.mark.parametrize("priority", [1, 3, 5])
def test_a_child_is_created_with_its_parents_priority(priority):
    service = _Service(_Store(replace(parent_state(S.SUCCEEDED, S.SCHEDULED), priority=priority)))
    start_child(service, _start_request())
    assert service.store.workflows[child_id("parent-1", "child")].priority == priority


def test_a_child_whose_parent_was_deleted_while_it_was_created_is_cancelled():
    service = _Service(_Store(parent_state(S.SUCCEEDED, S.SCHEDULED), deleted_after_create=True))
    start_child(service, _start_request())
    assert service.cancelled == [(child_id("parent-1", "child"), "its parent parent-1 was deleted")]
