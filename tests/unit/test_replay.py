"""Replay before deploying: the verdict of :func:`flow.core.replay.check` for each kind of
change, on histories built by the pure ``decide()``."""

from __future__ import annotations

from typing import Any

import pytest

from flow.core import replay, rerun
from flow.core.vocabulary import Outcome
from tests.unit.test_graph import Run, definition, state_of


def a(step_id: str, **keys: Any) -> dict[str, Any]:
    return {"name": "A", "id": step_id, **keys}


#: The running workflow: x and y succeeded, z runs, w waits.
OLD = (a("x"), a("y"), a("z"), a("w"))


def running(*steps: dict[str, Any], input_data: dict[str, Any] | None = None, ended: int = 2) -> Run:
    run = Run(state_of(*steps, input_data=input_data))
    for _ in range(ended):
        step = next(s for s in run.state.activities if s.status.in_flight)
        run.end(step.id, output={"ok": True})
    return run


def verdict(new: tuple[dict[str, Any], ...], old: tuple[dict[str, Any], ...] = OLD, **keys: Any) -> replay.Verdict:
    return replay.check(running(*old, **keys).state, definition(*new).initial_activities())


@pytest.mark.parametrize(
    ("new", "changes"),
    [
        (OLD, set()),  # the same definition
        ((*OLD, a("v")), set()),  # a step added at the end
        ((a("x"), a("y"), a("z"), a("v"), a("w")), set()),  # added where nothing decided waits for it
        ((a("x"), a("y"), a("z")), set()),  # a pending step removed
        ((a("x"), a("y"), a("z"), {**a("w"), "name": "B"}), set()),  # a pending step changed
        ((a("y"), a("z"), a("w")), {"removed"}),  # a decided step removed
        ((a("x"), a("v"), a("y"), a("z"), a("w")), {"dependency"}),  # a decided step waits for a new one
        ((a("x"), a("z"), a("y"), a("w")), {"order", "dependency"}),  # decided steps swapped
        (
            (a("x"), a("y", depends_on=["w"]), a("z"), a("w", independent=True)),
            {"dependency"},
        ),  # now waits for a pending one
        ((a("x"), {**a("y"), "name": "B"}, a("z"), a("w")), {"class"}),  # another class for a step that ran
        ((a("x"), {"id": "y", "sleep_s": 5}, a("z"), a("w")), {"kind"}),  # another kind
        ((a("x"), a("y", when="input.go"), a("z"), a("w")), {"condition"}),  # a new when skips a step that ran
        ((a("x"), a("y", when="outputs.x.ok"), a("z"), a("w")), set()),  # ... or agrees with it
        ((a("x"), a("y"), a("z"), a("w")), set()),
    ],
    ids=[
        "same",
        "added-at-end",
        "added-before-pending",
        "pending-removed",
        "pending-changed",
        "decided-removed",
        "new-dependency",
        "changed-order",
        "depends-on-pending",
        "changed-class",
        "changed-kind",
        "when-skips",
        "when-agrees",
        "same-again",
    ],
)
def test_each_kind_of_change_gets_its_verdict(new, changes):
    found = verdict(new)
    assert {d.change for d in found.divergences} == changes, found
    assert found.compatible is (not changes)
    assert all(d.reason for d in found.divergences)


def test_a_changed_kind_says_what_the_step_was_and_is_now():
    [divergence] = verdict((a("x"), {"id": "y", "sleep_s": 5}, a("z"), a("w"))).divergences
    assert divergence.reason == "y ran as a step of kind 'activity', and is now of kind 'sleep'"  # not "a activity"


def test_a_changed_map_source_is_a_divergence_once_the_map_listed_its_items():
    old = (a("x"), a("each", map={"over": "input.items"}), a("z"))
    new = (a("x"), a("each", map={"over": "input.others"}), a("z"))
    listed = verdict(new, old, input_data={"items": [1, 2]}, ended=2)  # x, then the first item
    assert [d.change for d in listed.divergences] == ["map-source"]
    assert "input.items" in listed.divergences[0].reason and "input.others" in listed.divergences[0].reason
    assert verdict(new, old, input_data={"items": [1]}, ended=0).compatible  # x runs: the map is not listed yet


def test_a_step_that_failed_while_optional_cannot_become_required():
    old = (a("x", required=False), a("y"), a("z"))
    run = Run(state_of(*old))
    run.end("x", Outcome.PERMANENT_FAILURE)
    new = definition(a("x"), a("y"), a("z")).initial_activities()
    assert [d.change for d in replay.check(run.state, new).divergences] == ["required"]


def test_a_rerun_checks_only_what_it_keeps_and_a_step_in_flight_must_keep_its_position():
    run = running(*OLD)  # x, y succeeded; z runs
    state = run.state
    without_y = definition(a("x"), a("z"), a("w")).initial_activities()
    # Rerun from y: y, z and w are reset, so y's removal breaks nothing that is kept ...
    assert rerun.divergences(state, 1, without_y).compatible
    # ... but from x nothing is kept either; from w, y's removal is a divergence.
    assert not rerun.divergences(state, 3, without_y).compatible
    assert verdict((a("x"), a("y"), a("z"), a("w")), OLD).to_json() == {
        "workflow_id": "wf",
        "compatible": True,
        "divergences": [],
    }
