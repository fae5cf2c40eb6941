"""Rerun from a step: the set a rerun resets by the graph rules (table tests on
:func:`flow.core.rerun.downstream`), and the rerun decided by the pure ``decide()``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flow.core import rerun
from flow.core.decide import decide
from flow.core.events import RerunRequested
from flow.core.lineage import ParentLink
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, WorkflowStatus
from tests.unit.test_graph import T0, Run, state_of

S = ActivityStatus


def a(name: str, **keys: Any) -> dict[str, Any]:
    return {"name": "A", "id": name, **keys}


LINEAR = (a("x"), a("y"), a("z"))
#: ``x`` -> ``y`` -> ``w``; ``v`` on its own; ``z`` positional after all of them.
GRAPH = (
    a("x", independent=True),
    a("v", independent=True),
    a("y", depends_on=["x"], required=False),
    a("w", depends_on=["y"], trigger="all_done"),
    a("z"),
)
BRANCHES = (a("x", independent=True), a("y", independent=True), a("z", depends_on=["y"]))
INDEPENDENT_TAIL = (a("x"), a("y"), a("z", independent=True))
CHILD = (a("x"), {"workflow": "Other", "id": "kid"}, a("z", depends_on=["x"]))


@pytest.mark.parametrize(
    ("steps", "start", "expected"),
    [
        (LINEAR, "x", {"x", "y", "z"}),
        (LINEAR, "y", {"y", "z"}),
        (LINEAR, "z", {"z"}),
        (GRAPH, "x", {"x", "y", "w", "z"}),
        (GRAPH, "v", {"v", "z"}),  # independent, but z (positional) waits for it
        (GRAPH, "y", {"y", "w", "z"}),
        (GRAPH, "w", {"w", "z"}),
        (BRANCHES, "x", {"x"}),  # nothing depends on x
        (BRANCHES, "y", {"y", "z"}),
        (INDEPENDENT_TAIL, "x", {"x", "y"}),  # an independent step waits for nothing
        (CHILD, "x", {"x", "kid", "z"}),  # a child step is a step like any other
        (CHILD, "kid", {"kid"}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_the_downstream_set_follows_the_graph_rules(steps, start, expected):
    state = state_of(*steps)
    positions = rerun.downstream(state, rerun.position_of(state, start))
    assert {state.activities[p].id for p in positions} == expected


def ended_run(*steps: dict[str, Any], fail: str | None = None, items: list[Any] | None = None) -> Run:
    """Run every step to success (``fail``: that one fails permanently, failing the workflow)."""
    run = Run(state_of(*steps, input_data={"items": items or []}))
    while not run.state.status.ended:
        waiting = [x for x in run.state.activities if x.status.in_flight]
        step = waiting[0]
        run.end(step.id, Outcome.PERMANENT_FAILURE if step.id == fail else Outcome.SUCCEEDED, output=step.id)
    return run


def rerun_from(run: Run, step: str) -> Any:
    run.decision = run._decide(RerunRequested(run._now(), step, by="ops"))
    return run.decision


def test_a_rerun_of_a_map_resets_every_item_and_from_an_item_resets_its_map_and_what_follows():
    run = ended_run(a("x"), a("each", map={"over": "input.items"}), a("z"), items=[1, 2])
    state = run.state
    ids = lambda ps: {state.activities[p].id for p in ps}  # noqa: E731
    assert ids(rerun.downstream(state, rerun.position_of(state, "each"))) == {"each", "each[0]", "each[1]", "z"}
    assert ids(rerun.downstream(state, rerun.position_of(state, "each[1]"))) == {"each", "each[0]", "each[1]", "z"}
    assert ids(rerun.downstream(state, rerun.position_of(state, "z"))) == {"z"}


def test_a_rerun_of_a_finished_workflow_runs_the_step_and_what_follows_and_keeps_the_rest():
    run = ended_run(*LINEAR)
    assert run.state.status is WorkflowStatus.FINISHED
    decision = rerun_from(run, "y")
    assert run.state.status is WorkflowStatus.IN_PROGRESS and run.state.run == 2
    assert run.scheduled() == ["y"]
    assert run.status("x") is S.SUCCEEDED and run.activity("x").output == "x"
    assert run.status("z") is S.PENDING and run.activity("z").output is None
    types = [h.type for h in decision.history]
    assert types[:2] == [HistoryType.RERUN_REQUESTED, HistoryType.RERUN_WORKFLOW]
    assert dict(decision.history[0].data) == {"from": "y", "by": "ops"}
    assert decision.history[1].data["reset"] == ["y", "z"]
    run.end("y", output="y2")
    run.end("z", output="z2")
    assert run.state.status is WorkflowStatus.FINISHED
    assert run.state.output == {"x": "x", "y": "y2", "z": "z2"}
    assert run.activity("y").attempt == 2  # attempts go on: a late result of the first is stale


def test_a_rerun_of_a_failed_workflow_from_the_failed_step_runs_only_it_and_what_follows():
    run = ended_run(*LINEAR, fail="y")
    assert run.state.status is WorkflowStatus.FAILED and run.status("z") is S.SKIPPED
    rerun_from(run, "y")
    assert run.scheduled() == ["y"] and run.status("x") is S.SUCCEEDED
    run.end("y")
    assert run.scheduled() == ["z"]


def test_what_the_failure_left_undone_runs_again_even_outside_the_downstream_set():
    run = ended_run(*BRANCHES, fail="y")  # y failed: z skipped by the failure
    assert run.state.status is WorkflowStatus.FAILED
    rerun_from(run, "x")  # x succeeded; y and z are not downstream of it
    assert sorted(run.scheduled()) == ["x", "y"]
    assert run.activity("x").attempt == 2


def test_a_rerun_of_a_map_runs_its_items_again():
    run = ended_run(a("x"), a("each", map={"over": "input.items"}), a("z"), items=[1, 2])
    rerun_from(run, "each")
    assert run.status("x") is S.SUCCEEDED
    assert sorted(run.scheduled()) == ["each[0]", "each[1]"]


@pytest.mark.parametrize(
    ("status", "step", "reason"),
    [
        (WorkflowStatus.IN_PROGRESS, "x", "only a Failed, Finished or Cancelled workflow can be rerun"),
        (WorkflowStatus.FINISHED, "nope", "no step 'nope'"),
    ],
)
def test_a_rerun_that_cannot_apply_changes_nothing_and_says_why(status, step, reason):
    run = ended_run(*LINEAR) if status.ended else Run(state_of(*LINEAR))
    before = run.state
    decision = rerun_from(run, step)
    assert decision.state == before and not decision.commands
    assert decision.history[-1].type is HistoryType.DO_NOTHING and reason in decision.history[-1].data["reason"]


def test_a_reset_child_step_reruns_its_child_and_a_parents_rerun_of_its_child_resets_every_step():
    run = ended_run(*CHILD)
    rerun_from(run, "kid")
    assert run.activity("kid").spec.fresh  # its next attempt reruns its child
    child = replace(ended_run(*LINEAR).state, parent=ParentLink("p", 1, 1))
    assert "rerun its parent" in rerun.refusal(child)
    decision = decide(child, RerunRequested(T0, rerun.EVERY_STEP, by="parent p", run=2))
    assert decision.state.run == 2 and decision.history[1].data["reset"] == ["x", "y", "z"]
    stale = decide(decision.state, RerunRequested(T0, rerun.EVERY_STEP, run=2))
    assert stale.history[-1].data["reason"] == "run 2 was started already"


@pytest.mark.parametrize(
    ("body", "path", "says"),
    [
        ({"from": ""}, "$.from", "must be the id of a step of the workflow"),
        ({"from": "x" * 201}, "$.from", "must be the id of a step of the workflow"),
        ({"from": "ship", "version": 0}, "$.version", "must be a version of the workflow's definition"),
        ({"from": "ship", "input_data": []}, "$.input_data", "must be a JSON object"),
        ({"from": "ship", "by": "a b"}, "$.by", "must be who asks"),
    ],
    ids=["empty-from", "long-from", "version-0", "input-not-object", "by-with-space"],
)
def test_a_wrong_rerun_body_is_refused_with_a_message_that_reads_as_the_rule(body, path, says):
    """The validator writes "must be <description>": a description must read that way
    (the rerun's read "must be The id of the step ... to rerun from: it and every ...")."""
    from api.resources.rerun import BODY_SCHEMA
    from flow.core import validation
    from flow.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        validation.check(validation.validator(BODY_SCHEMA), body)
    assert refused.value.path == path
    assert refused.value.message.startswith(says), refused.value.message
