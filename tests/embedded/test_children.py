"""Sub-workflows end to end in one process (SQLite, the in-process broker): a child that
succeeds, fails, is cancelled with its parent, is not run again by its parent's retry once
it succeeded, and is started once however often its start is delivered."""

from __future__ import annotations

import json
from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.clock import utcnow
from flow.core.lineage import child_id
from flow.persistence.models import WorkflowRecord
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env
from flow.wire import messages
from tests.conftest import wait_for

ONCE = {"retry": {"max_attempts": 1}}

DEFINITIONS = {
    "Child": {"name": "Child", "activities": [{"name": "EchoActivity"}]},
    "Parent": {
        "name": "Parent",
        "activities": [
            {"id": "first", "name": "NoopActivity"},
            {"id": "child", "workflow": "Child", "input": "{n: input.n}"},
            {"id": "last", "name": "EchoActivity"},
        ],
    },
    # Fails in its first run (attempt 1), succeeds in its second (attempt 2).
    "FlakyChild": {
        "name": "FlakyChild",
        "config": ONCE,
        "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 2}}],
    },
    "ParentOfFlaky": {"name": "ParentOfFlaky", "activities": [{"id": "child", "workflow": "FlakyChild"}]},
    "SlowChild": {"name": "SlowChild", "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.5}}]},
    "ParentOfSlow": {
        "name": "ParentOfSlow",
        "activities": [{"id": "child", "workflow": "SlowChild"}, {"name": "NoopActivity"}],
    },
    # A child and an attempt of its own still run when the parent fails (at about 3 s).
    "LongChild": {"name": "LongChild", "activities": [{"name": "SleepActivity", "config": {"sleep_s": 60}}]},
    "FailsBesideChild": {
        "name": "FailsBesideChild",
        "activities": [
            {"id": "child", "workflow": "LongChild", "independent": True},
            {"id": "sleep", "name": "SleepActivity", "config": {"sleep_s": 60}, "independent": True},
            {"id": "pause", "sleep_s": 3, "independent": True},
            {"id": "boom", "name": "RefusingActivity", "depends_on": ["pause"]},
        ],
    },
    "ParentOfLong": {"name": "ParentOfLong", "activities": [{"id": "child", "workflow": "LongChild"}]},
    # The child succeeds; the activity after it fails once, so the parent fails once.
    "ThenFlaky": {
        "name": "ThenFlaky",
        "activities": [
            {"id": "child", "workflow": "Child"},
            {"name": "FlakyActivity", "config": {"succeed_on_attempt": 2, **ONCE}},
        ],
    },
}


@pytest.fixture
def flow(tmp_path, definitions_dir) -> Iterator[EmbeddedFlow]:
    for name, body in DEFINITIONS.items():
        (definitions_dir / f"{name}.json").write_text(json.dumps(body))
    settings = Settings.from_env(embedded_env(tmp_path, definitions_dir), embedded=True)
    with EmbeddedFlow(settings) as running:
        yield running


@pytest.fixture
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def ended(flow: EmbeddedFlow, workflow_id: str):
    return flow.wait(workflow_id, timeout_s=60).state


def state(flow: EmbeddedFlow, workflow_id: str):
    return flow.runtime.store.get(workflow_id).state


def children_of(flow: EmbeddedFlow, parent_id: str) -> list:
    return flow.runtime.store.list_workflows(parent_id=parent_id)


def test_a_child_that_succeeds_gives_the_activity_its_output(flow, client):
    parent = ended(flow, flow.start("Parent", {"n": 5, "other": True}))
    assert parent.status == "Finished"
    first, activity, last = parent.activities
    child = state(flow, child_id(parent.id, "child"))
    assert (child.status, child.input_data, child.name) == ("Finished", {"n": 5}, "Child")
    assert (child.parent.workflow_id, child.parent.position, child.parent.attempt) == (parent.id, 1, 1)
    assert activity.output == child.output == {"EchoActivity": child.output["EchoActivity"]}
    assert last.output["outputs"]["child"] == child.output
    assert [w.state.id for w in children_of(flow, parent.id)] == [child.id]

    shown = client.simulate_get(f"/workflows/{parent.id}").json
    assert shown["activities"][1]["workflow"] == {"name": "Child", "version": 1, "input": "{n: input.n}"}
    assert shown["activities"][1]["child_id"] == child.id
    assert shown["parent_id"] is None
    shown_child = client.simulate_get(f"/workflows/{child.id}").json
    assert (shown_child["parent_id"], shown_child["parent_position"]) == (parent.id, 1)
    listed = client.simulate_get("/workflows", params={"parent_id": parent.id}).json
    assert [w["id"] for w in listed["items"]] == [child.id]
    assert listed["items"][0]["parent_id"] == parent.id


def test_a_failing_child_fails_the_activity_and_a_retry_of_the_parent_retries_it(flow, client):
    parent = ended(flow, flow.start("ParentOfFlaky", {}))
    assert parent.status == "Failed"
    (activity,) = parent.activities
    child = state(flow, child_id(parent.id, "child"))
    assert child.status == "Failed"
    assert activity.status == "Failed" and "child workflow FlakyChild" in activity.error
    assert "flaky on attempt 1" in activity.error

    refused = client.simulate_post(f"/workflows/{child.id}/retry")
    assert refused.status_code == 409 and "retry its parent" in refused.json["description"]

    assert client.simulate_post(f"/workflows/{parent.id}/retry").status_code == 202
    wait_for(lambda: state(flow, parent.id).run == 2, what="the parent's retry")
    parent = ended(flow, parent.id)
    assert parent.status == "Finished"
    (activity,) = parent.activities
    child = state(flow, child_id(parent.id, "child"))
    assert (child.status, child.run) == ("Finished", 2)  # the same child, run again
    assert activity.attempt == 2 and activity.output == child.output
    assert len(children_of(flow, parent.id)) == 1


def test_cancelling_the_parent_cancels_its_running_child(flow, client):
    parent_id = flow.start("ParentOfSlow", {})
    child = wait_for(lambda: children_of(flow, parent_id), what="the child").pop().state
    client.simulate_post(f"/workflows/{parent_id}/cancel", json={"reason": "stop"})
    assert ended(flow, parent_id).status == "Cancelled"
    child = ended(flow, child.id)
    assert child.status == "Cancelled" and f"its parent {parent_id} was cancelled" in child.error
    # The child's end arrives after the parent's: recorded on the activity, nothing more.
    wait_for(lambda: state(flow, parent_id).activities[0].status == "Failed", what="the late result")
    parent = state(flow, parent_id)
    assert parent.status == "Cancelled" and parent.activities[1].status == "Cancelled"
    events = client.simulate_get(f"/workflows/{parent_id}/events").json["items"]
    assert events[-1]["type"] == "do-nothing" and events[-1]["data"] == {"reason": "workflow Cancelled"}

    # A retry of the parent retries the cancelled child (the same one) and finishes.
    client.simulate_post(f"/workflows/{parent_id}/retry")
    wait_for(lambda: state(flow, parent_id).run == 2, what="the parent's retry")
    assert ended(flow, parent_id).status == "Finished"
    assert (state(flow, child.id).status, state(flow, child.id).run) == ("Finished", 2)


def test_a_failing_parent_cancels_its_child_and_stops_its_own_attempts_at_once(flow, client):
    """Temporal's default parent-close policy: the parent's failure cancels its running
    child; its own running attempt gets its cancel notice with the failure, not at its
    next heartbeat (the worker sends one at most every 30 s here)."""
    parent_id = flow.start("FailsBesideChild", {})
    parent = ended(flow, parent_id)
    assert parent.status == "Failed" and "boom" in parent.error
    child = wait_for(
        lambda: (c := state(flow, child_id(parent_id, "child"))).status.ended and c,
        timeout_s=15,
        what="the child's cancel",
    )
    assert child.status == "Cancelled" and f"its parent {parent_id} failed" in child.error
    sleep = wait_for(
        lambda: (a := state(flow, parent_id).activities[1]).status.ended and a,
        timeout_s=15,
        what="the parent's own attempt to stop",
    )
    assert sleep.status == "Cancelled", sleep.error
    assert state(flow, parent_id).status == "Failed"


def test_a_parent_is_not_deleted_while_a_child_of_it_runs(flow, client):
    """Deleted under a running child, the parent would leave it reporting to nobody and
    unretryable (a child is retried only through its parent): the delete is refused,
    naming the child, until the child has ended."""
    parent_id = flow.start("ParentOfLong", {})
    child = wait_for(lambda: children_of(flow, parent_id), what="the child").pop().state
    # Nothing more comes to the parent until the child ends, once its start is recorded.
    wait_for(lambda: state(flow, parent_id).activities[0].status == "Started", what="the child's start")
    # A parent ended while its child still runs: the cancel its end owes is on its way,
    # or it ended under a release that did not cancel children.
    with flow.runtime.store.unit_of_work():
        WorkflowRecord.update(status="Failed", finished_at=utcnow()).where(WorkflowRecord.id == parent_id).execute()
    refused = client.simulate_delete(f"/workflows/{parent_id}")
    assert refused.status_code == 409, refused.text
    assert child.id in refused.json["description"] and "child workflows in progress" in refused.json["description"]
    assert state(flow, parent_id) is not None

    assert client.simulate_post(f"/workflows/{child.id}/cancel").status_code == 202
    ended(flow, child.id)
    wait_for(lambda: client.simulate_delete(f"/workflows/{parent_id}").status_code == 204, what="the delete")


def test_retry_from_failure_does_not_run_a_child_that_succeeded(flow):
    parent = ended(flow, flow.start("ThenFlaky", {}))
    assert parent.status == "Failed"
    child = state(flow, child_id(parent.id, "child"))
    assert child.status == "Finished"
    flow.runtime.service.retry(parent.id)
    wait_for(lambda: state(flow, parent.id).run == 2, what="the parent's retry")
    parent = ended(flow, parent.id)
    assert parent.status == "Finished"
    assert parent.activities[0].attempt == 1  # not run again
    assert state(flow, child.id).run == 1
    assert len(children_of(flow, parent.id)) == 1


def test_a_redelivered_start_makes_no_second_child(flow):
    parent = ended(flow, flow.start("Parent", {"n": 1}))
    child = state(flow, child_id(parent.id, "child"))
    start = messages.StartChild(
        workflow_id=parent.id,
        position=1,
        attempt=1,
        child_id=child.id,
        definition="Child",
        input_data={"n": 1},
        reply_to=flow.runtime.service.queue_of(parent.id),
    )
    for _ in range(3):  # what a redelivery, or a re-send from the outbox, does
        flow.runtime.service.start_child(start)
    stale = wait_for(
        lambda: (
            [
                e
                for e in flow.runtime.store.events(parent.id)
                if e["type"] == "activity-result" and e["data"].get("stale")
            ]
            if len(_results(flow, parent.id)) >= 4
            else None
        ),
        what="the re-sent results",
    )
    assert len(stale) == 3
    assert len(children_of(flow, parent.id)) == 1
    assert state(flow, parent.id).status == "Finished"
    assert state(flow, child.id).run == 1


def _results(flow, workflow_id):
    return [e for e in flow.runtime.store.events(workflow_id) if e["type"] == "activity-result" and e["position"] == 1]


def test_a_definition_that_reaches_itself_through_children_is_refused(client):
    bodies = [
        ("Loop", {"activities": [{"workflow": "Loop"}]}),
        ("Ping", {"activities": [{"workflow": "Parent"}, {"workflow": "Ping"}]}),
    ]
    for name, body in bodies:
        response = client.simulate_put(f"/definitions/{name}", json=body)
        assert response.status_code == 422, response.text
        problems = response.json["errors"]
        assert any("reaches itself" in p["message"] for p in problems), problems
    unknown = client.simulate_put("/definitions/Orphan", json={"activities": [{"workflow": "Nobody"}]})
    assert unknown.status_code == 422
    assert unknown.json["errors"][0]["path"] == "$.activities[0].workflow"
    checked = client.simulate_post("/definitions/validate", json={"name": "Loop", "activities": [{"workflow": "Loop"}]})
    assert checked.status_code == 422
