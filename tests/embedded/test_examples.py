"""Every example definition in examples/workflows runs, and does what the README says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from flow.clock import utcnow
from flow.core.lineage import child_id
from flow.core.timestamps import iso
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from tests.conftest import ROOT, wait_for

EXAMPLES = ROOT / "examples" / "workflows"


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    base: Path = tmp_path_factory.mktemp("examples")
    settings = Settings.from_env(
        {"FLOW_DATABASE_URL": f"sqlite:///{base / 'flow.db'}", "FLOW_DEFINITIONS_DIR": str(EXAMPLES)}, embedded=True
    )
    with EmbeddedFlow(settings) as running:
        yield running


def run(flow: EmbeddedFlow, name: str, input_data: dict | None = None):
    return flow.wait(flow.start(name, input_data or {}), timeout_s=30).state


def test_every_example_is_valid_and_there_is_one_per_topic():
    names = sorted(p.stem for p in EXAMPLES.glob("*.json"))
    assert names == [
        "approval",
        "batches",
        "batches_batch",
        "conditions",
        "data_between_activities",
        "dependencies",
        "event_triggers",
        "heartbeats",
        "independent_and_optional",
        "map",
        "retry_policy",
        "saga",
        "search_attributes",
        "sleeps",
        "sub_workflow",
        "sub_workflow_child",
        "timeouts",
        "worker_pools",
    ]


def test_search_attributes_example(flow):
    attributes = {"customer": "acme", "amount": 120.5, "vip": True, "due": "2026-12-24T00:00:00Z"}
    workflow_id = flow.start("SearchAttributesExample", {}, attributes=attributes)
    assert flow.wait(workflow_id, timeout_s=30).state.status == "Finished"
    assert flow.runtime.store.get(workflow_id).attributes == {**attributes, "stage": "shipped"}


def test_retry_policy_example(flow):
    state = run(flow, "RetryPolicyExample")
    assert state.status == "Finished"
    flaky, never_retried = state.activities
    assert (flaky.status, flaky.attempt, flaky.retry.max_attempts) == ("Succeeded", 3, 4)
    assert (never_retried.status, never_retried.attempt) == ("Failed", 1)


def test_timeouts_example(flow):
    state = run(flow, "TimeoutsExample")
    assert state.status == "Finished"
    quick, slow = state.activities
    assert quick.status == "Succeeded"
    assert (slow.status, slow.attempt) == ("Failed", 2)
    assert "start-to-close timeout" in slow.error


def test_heartbeats_example(flow):
    state = run(flow, "HeartbeatsExample")
    assert state.status == "Finished"
    [sleep] = state.activities
    assert (sleep.status, sleep.attempt) == ("Succeeded", 1)  # its heartbeats kept it alive past heartbeat_s
    assert sleep.heartbeat["slept_s"] >= 1


def test_independent_and_optional_example(flow):
    state = run(flow, "IndependentAndOptionalExample")
    assert state.status == "Finished"
    a, b, optional, last = state.activities
    assert b.started_at < a.finished_at  # ran side by side
    assert optional.status == "Failed" and last.status == "Succeeded"


def test_data_between_activities_example(flow):
    state = run(flow, "DataBetweenActivitiesExample", {"order": 42})
    assert state.status == "Finished"
    echo = state.output["EchoActivity"]
    assert echo["config"] == {"greeting": "hi", "language": "en"}
    assert echo["outputs"] == {"DoSomethingActivity": {"input_keys": ["order"]}}
    assert echo["input_data"] == {"order": 42}
    assert set(state.output) == {"DoSomethingActivity", "EchoActivity"}


def test_dependencies_example(flow):
    state = run(flow, "DependenciesExample")
    assert state.status == "Finished"
    a = {x.id: x for x in state.activities}
    # first_answer ran on the first success (which one is a race: tests/unit/test_graph.py
    # decides it both ways); merge once both had.
    assert a["first_answer"].scheduled_at >= min(a["fetch_a"].finished_at, a["fetch_b"].finished_at)
    assert a["merge"].scheduled_at >= max(a["fetch_a"].finished_at, a["fetch_b"].finished_at)
    assert a["report"].scheduled_at >= max(a["merge"].finished_at, a["first_answer"].finished_at)
    assert a["fetch_b"].attempt == 2
    assert set(state.output) == {"fetch_a", "fetch_b", "first_answer", "merge", "report"}
    assert set(state.output["report"]["outputs"]) == {"fetch_a", "fetch_b", "first_answer", "merge"}


@pytest.mark.parametrize(
    ("input_data", "ran", "skipped"),
    [
        ({"express": True, "gift": True}, {"check", "express", "gift_wrap", "ship"}, {"standard"}),
        ({"express": True}, {"check", "express", "ship"}, {"standard", "gift_wrap"}),
        ({"gift": True}, {"check", "standard", "ship"}, {"express", "gift_wrap"}),
    ],
)
def test_conditions_example(flow, input_data, ran, skipped):
    state = run(flow, "ConditionsExample", input_data)
    assert state.status == "Finished"
    assert {a.id for a in state.activities if a.status == "Succeeded"} == ran
    assert {a.id for a in state.activities if a.status == "Skipped"} == skipped
    reasons = {a.id: a.skip_reason for a in state.activities if a.skip_reason}
    if "express" in skipped:
        assert reasons["express"] == "when 'outputs.check.input_data.express' was null"
        assert reasons["gift_wrap"] == "dependency 'express' was skipped"


def test_map_example(flow):
    images = [f"img{i}.png" for i in range(10)]
    state = run(flow, "MapExample", {"images": images})
    assert state.status == "Finished"
    resize, report = state.definition_activities
    assert resize.status == "Succeeded" and [o["item"] for o in resize.output] == images
    assert [o["index"] for o in resize.output] == list(range(10))
    items = state.activities[2:]
    assert [(a.id, a.status, a.attempt) for a in items] == [(f"resize[{i}]", "Succeeded", 1) for i in range(10)]
    assert report.output["outputs"]["resize"] == resize.output
    assert state.output["resize"] == resize.output and "resize[0]" not in state.output
    # An empty list: the map succeeds with [] and the workflow goes on.
    empty = run(flow, "MapExample", {"images": []})
    assert empty.status == "Finished" and empty.output["resize"] == []


def test_sleeps_example(flow):
    remind_at = utcnow() + timedelta(seconds=1)
    state = run(flow, "SleepsExample", {"remind_at": iso(remind_at)})
    assert state.status == "Finished"
    order, cool_off, until_reminder, remind = state.activities
    assert (cool_off.name, cool_off.status) == ("sleep", "Succeeded")
    # Each woke no earlier than it was told to.
    assert cool_off.finished_at - cool_off.started_at >= timedelta(seconds=0.5)
    assert until_reminder.finished_at >= remind_at and until_reminder.output == {"until": iso(remind_at)}
    assert remind.scheduled_at >= until_reminder.finished_at


def test_approval_example_keeps_an_early_signal(flow):
    workflow_id = flow.start("ApprovalExample", {"order": 7})
    # Sent at once: likely before the wait's turn; kept in the inbox either way.
    flow.runtime.service.signal(workflow_id, "approved", {"choice": "approve", "by": "ana"})
    state = flow.wait(workflow_id, timeout_s=30).state
    assert state.status == "Finished"
    request, approval, ship = state.activities
    assert (approval.name, approval.status, approval.output) == (
        "wait",
        "Succeeded",
        {"choice": "approve", "by": "ana"},
    )
    assert ship.output["outputs"]["approval"] == {"choice": "approve", "by": "ana"}
    # The API's reads leave the inbox out; the engine loads it (its rows).
    assert [s.consumed_by for s in flow.engine.store.load(workflow_id).state.inbox] == [1]


def test_approval_example_rejected_by_its_callback_token_skips_the_shipping(flow):
    """The request activity is handed the wait's callback token (what it would mail to
    an approver); the approver's answer comes back by the token alone."""
    workflow_id = flow.start("ApprovalExample", {"order": 8})
    request = wait_for(
        lambda: (a := flow.runtime.store.get(workflow_id).state.activities[0]).status == "Succeeded" and a,
        timeout_s=30,
        what="the request",
    )
    token = request.output["outputs"]["approval"]["callback_token"]
    service = flow.runtime.service
    assert service.callback(service.callback_target(token), {"choice": "reject"}) == "approved"
    state = flow.wait(workflow_id, timeout_s=30).state
    assert state.status == "Finished" and state.activities[1].output == {"choice": "reject"}
    assert state.activities[2].status == "Skipped"


def test_the_example_schedule_file_is_applied(flow):
    """``schedules/weekday_report.json``: weekdays at 9:00 in Paris, from the file."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    shown = flow.runtime.schedules.get("weekday_report")
    assert (shown.spec.workflow, shown.spec.cron, shown.file_digest is not None) == (
        "DataBetweenActivitiesExample",
        "0 9 * * MON-FRI",
        True,
    )
    next_run = shown.next_tick_at.replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert (next_run.hour, next_run.minute) == (9, 0) and next_run.weekday() < 5


def test_sub_workflow_example(flow):
    state = run(flow, "SubWorkflowExample", {"order": 42})
    assert state.status == "Finished"
    prepare, ship, report = state.activities
    assert ship.spec.kind == "child" and ship.spec.definition == "SubWorkflowChildExample"
    child = flow.runtime.store.get(child_id(state.id, "ship")).state
    assert (child.status, child.parent.workflow_id, child.parent.position) == ("Finished", state.id, 1)
    assert child.input_data == {"order": 42, "prepared": prepare.output}
    assert ship.output == child.output
    assert report.output["outputs"]["ship"]["pack"]["input_data"]["order"] == 42


def test_worker_pools_example(flow):
    """``flow run`` serves every pool: the gpu steps run in this process too."""
    state = run(flow, "WorkerPoolsExample")
    assert state.status == "Finished", state.error
    assert [(a.id, a.queue) for a in state.activities] == [
        ("prepare", None),
        ("train", "gpu"),
        ("shards", "gpu"),
        ("report", None),
        ("shards[0]", "gpu"),
        ("shards[1]", "gpu"),
    ]


def test_batches_example_keeps_each_batch_in_a_child_history(flow):
    state = run(flow, "BatchesExample", {"items": [1, 2, 3, 4, 5, 6]})
    assert state.status == "Finished"
    children = [flow.runtime.store.get(child_id(state.id, a.id)) for a in state.activities]
    assert [len(c.state.activities) for c in children] == [4, 4]  # the map and its 3 items, each
    assert all(c.state.status == "Finished" for c in children)
    parent = flow.runtime.store.get(state.id)
    assert parent.history_length == len(flow.runtime.store.events(state.id, limit=1000)) < 20


def test_event_triggers_example(flow):
    from flow.core.event_triggers import Event

    events = flow.runtime.events
    paid = events.send(Event("order.paid", "example-paid-1", {"order_id": 42, "total": 120.5}))
    [matched] = paid.event.outcome["matched"]
    state = flow.wait(matched["workflow_id"], timeout_s=30).state
    assert state.status == "Finished" and state.input_data == {"order_id": 42, "total": 120.5}
    small = events.send(Event("order.paid", "example-paid-2", {"order_id": 43, "total": 20}))
    assert small.event.outcome["matched"] == [] and "was false" in small.event.outcome["missed"][0]["reason"]
    assert events.send(Event("order.paid", "example-paid-1", {"order_id": 42, "total": 120.5})).duplicate
