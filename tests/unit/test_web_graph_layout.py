"""The web page's graph drawing (api/static/app.js graphLayout), run in Node: the
arrows say what each activity waits for. Skipped without node, except in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

NODE = shutil.which("node")


@pytest.fixture(autouse=True)
def _node():
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed")
        pytest.skip("node is not installed: the graph drawing is not checked")


# Loads graphLayout from app.js (the page itself needs a DOM) and prints the edges it
# draws for the activities given as argv[1] (each with its id, as the API gives it).
_SCRIPT = r"""
const src = require("fs").readFileSync(process.argv[1], "utf8");
function extract(name) {
  const start = src.indexOf(`function ${name}(`);
  let i = src.indexOf("{", start), depth = 0;
  for (; i < src.length; i++) { if (src[i] === "{") depth++; else if (src[i] === "}" && --depth === 0) break; }
  return src.slice(start, i + 1);
}
const parts = ["graphLayout"].map(extract).join("\n");
const graphLayout = new Function(parts + "\nreturn graphLayout;")();
console.log(JSON.stringify(graphLayout(JSON.parse(process.argv[2])).edges));
"""


def edges(activities: list[dict]) -> set[tuple[int, int]]:
    with_ids = [{"id": a["name"], **a} for a in activities]  # the API gives every step its id
    out = subprocess.run(
        [NODE, "-e", _SCRIPT, str(ROOT / "api" / "static" / "app.js"), json.dumps(with_ids)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return {tuple(edge) for edge in json.loads(out)}


def waits_for(activities: list[dict], edge_set: set[tuple[int, int]], i: int) -> set[int]:
    """What activity ``i`` waits for according to the drawing: everything an arrow path
    leads from, where a path through a one_succeeded node does not carry "ended"."""
    preds = {to: {f for f, t in edge_set if t == to} for to in range(len(activities))}
    found: set[int] = set()
    stack = list(preds[i])
    while stack:
        node = stack.pop()
        if node in found:
            continue
        found.add(node)
        if activities[node].get("trigger") != "one_succeeded":
            stack.extend(preds[node])
    return found


def test_review_a_positional_activity_after_a_one_succeeded_join_keeps_its_arrows():
    """Review (fixed): graphLayout drops the positional arrow j -> i when an activity k
    between them depends on j ("implied by another path"), but a one_succeeded k may
    start, and end, before j has: D waits for A, B and C, and is drawn waiting for C only."""
    activities = [
        {"name": "A", "independent": True},
        {"name": "B", "independent": True},
        {"name": "C", "depends_on": ["A", "B"], "trigger": "one_succeeded"},
        {"name": "D"},
    ]
    drawn = edges(activities)
    assert {(0, 2), (1, 2), (2, 3)} <= drawn
    assert waits_for(activities, drawn, 3) == {0, 1, 2}


def test_review_control_the_harness_reads_the_drawing():
    """Holds: a positional activity after an all_succeeded one needs no arrow from the
    dependency (the path through B implies it)."""
    activities = [{"name": "A"}, {"name": "B", "depends_on": ["A"]}, {"name": "C"}]
    assert edges(activities) == {(0, 1), (1, 2)}


def test_a_dependency_on_a_child_workflow_step_is_drawn_by_the_id_the_api_gives_it():
    activities = [{"name": "A"}, {"name": "Child", "kind": "child"}, {"name": "B", "depends_on": ["Child"]}]
    assert edges(activities) == {(0, 1), (1, 2)}
