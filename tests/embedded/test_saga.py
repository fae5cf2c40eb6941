"""A saga end to end in one process (examples/workflows/saga.json): the undos of what
succeeded run once each, latest first, then the failure handler; and an engine restart
between two undos runs each undo once, in order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import falcon.testing

from api.app import create_app
from flow.clock import utcnow
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind
from flow.loops import poll_until
from flow.persistence.models import TimerRecord
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from tests.conftest import ROOT

SAGA = ROOT / "examples" / "workflows" / "saga.json"


def settings_with(tmp_path: Path, *definitions: dict) -> Settings:
    folder = tmp_path / "definitions"
    folder.mkdir()
    shutil.copy(SAGA, folder / "saga.json")
    for body in definitions:
        (folder / f"{body['name']}.json").write_text(json.dumps(body))
    env = {"FLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'flow.db'}", "FLOW_DEFINITIONS_DIR": str(folder)}
    return Settings.from_env(env, embedded=True)


def succeeded(events: list[dict], position: int) -> int:
    return sum(
        1
        for e in events
        if e["type"] == HistoryType.ACTIVITY_RESULT
        and e["position"] == position
        and e["data"]["outcome"] == Outcome.SUCCEEDED
        and not e["data"].get("stale")
    )


def test_the_saga_example_undoes_the_charge_and_the_reservation_then_tells_ops(tmp_path):
    with EmbeddedFlow(settings_with(tmp_path)) as flow:
        shipped = flow.wait(flow.start("SagaExample", {"amount": 30, "sku": "X", "address": "Rue 1"}), timeout_s=20)
        failed_id = flow.start("SagaExample", {"amount": 30, "sku": "X"})
        state = flow.wait(failed_id, timeout_s=20).state
        events = flow.runtime.store.events(failed_id)
    assert shipped.state.status == "Finished" and len(shipped.state.activities) == 3  # nothing to undo
    assert state.status == "Failed" and "no address to ship to" in state.error
    charge, reserve, ship, release, refund, notify = state.activities
    assert [a.id for a in (release, refund, notify)] == ["undo(reserve)", "undo(charge)", "on_failure(NotifyOps)"]
    assert release.output == {"undid": reserve.output["reservation"], "activity": "reserve"}
    assert refund.output == {"undid": charge.output["payment"], "activity": "charge"}
    assert release.finished_at <= refund.scheduled_at and refund.finished_at <= notify.scheduled_at  # one at a time
    assert notify.output["channel"] == "#orders" and notify.output["message"].startswith("ship failed")
    assert [succeeded(events, p) for p in (3, 4, 5)] == [1, 1, 1]
    types = [e["type"] for e in events]
    assert types.count(HistoryType.START_COMPENSATION) == 1 and types.count(HistoryType.WORKFLOW_FAILURE) == 1
    assert [e["data"] for e in events if e["type"] == HistoryType.END_COMPENSATION] == [{"outcome": "done"}]


def test_an_engine_restart_between_two_undos_runs_each_undo_once_in_order(tmp_path):
    # The refund (the second undo) is unavailable on its first attempt: its retry is due
    # an hour later, so the first engine cannot run it however slow the machine is (a
    # 1.5 s delay ran out under load before the checks below, which then saw the workflow
    # Failed); the engine stops, its stored timer is made due, the next engine fires it.
    body = json.loads(SAGA.read_text())
    body["name"] = "SagaRestart"
    body["concurrency"] = {"limit": 1}  # a Compensating workflow holds its slot
    hour_ms = 3_600_000
    body["activities"][0]["compensate"]["config"] = {
        "fail_attempts": 1,
        "retry": {"max_attempts": 3, "initial_delay_ms": hour_ms, "max_delay_ms": hour_ms, "jitter": 0},
    }
    settings = settings_with(tmp_path, body)
    with EmbeddedFlow(settings) as first:
        workflow_id = first.start("SagaRestart", {"amount": 5})

        def refund_waits() -> bool:
            steps = first.runtime.store.get(workflow_id).state.activities
            return len(steps) > 4 and steps[4].status is ActivityStatus.WAITING_RETRY

        poll_until(
            refund_waits,
            timeout_s=20,
            what="the refund to wait for its retry",
        )
        assert first.runtime.store.get(workflow_id).state.status == "Compensating"
        queued_id = first.start("SagaRestart", {"amount": 1, "address": "Rue 1"})
        api = falcon.testing.TestClient(create_app(runtime=first.runtime))
        listed = api.simulate_get("/workflows", params={"status": "Compensating"}).json["items"]
        assert [w["id"] for w in listed] == [workflow_id]
        assert api.simulate_post(f"/workflows/{workflow_id}/cancel").status_code == 409  # the undos run to their end
        assert api.simulate_delete(f"/workflows/{workflow_id}").status_code == 409  # not ended: kept
        assert refund_waits()  # still between the two undos as the engine stops
    # The engine was down past the retry's due time.
    with first.runtime.store.unit_of_work():
        retry = TimerRecord.select().where((TimerRecord.workflow == workflow_id) & (TimerRecord.position == 4))
        assert [(t.kind, t.attempt) for t in retry] == [(TimerKind.RETRY, 2)]  # the refund's second attempt
        TimerRecord.update(due_at=utcnow()).where(TimerRecord.id == retry[0].id).execute()
    with EmbeddedFlow(settings) as second:
        state = second.wait(workflow_id, timeout_s=30).state
        events = second.runtime.store.events(workflow_id)
        queued = second.wait(queued_id, timeout_s=30).state
        admitted = [e for e in second.runtime.store.events(queued_id) if e["type"] == HistoryType.ADMIT_WORKFLOW]
    assert queued.status == "Finished" and admitted[0]["occurred_at"] >= state.finished_at
    assert state.status == "Failed"
    release, refund = state.activities[3:5]
    assert (release.status, release.attempt, refund.status, refund.attempt) == ("Succeeded", 1, "Succeeded", 2)
    assert release.finished_at <= refund.scheduled_at
    assert [succeeded(events, p) for p in (3, 4, 5)] == [1, 1, 1]
    scheduled = [e["position"] for e in events if e["type"] == HistoryType.SCHEDULE_ACTIVITY and e["position"] >= 3]
    assert scheduled == [3, 4, 4, 5]  # the release once, the refund's two attempts, then the handler
    assert [e["type"] for e in events].count(HistoryType.START_COMPENSATION) == 1


def test_an_unknown_undo_or_failure_handler_is_refused_with_422_naming_it(client):
    def put(body: dict):
        return client.simulate_put(f"/definitions/{body['name']}", json=body)

    undo = {"name": "Bad", "activities": [{"name": "EchoActivity", "compensate": {"name": "NoSuchUndo"}}]}
    response = put(undo)
    assert response.status_code == 422
    assert "$.activities[0].compensate.name" in response.text and "NoSuchUndo" in response.text
    handler = {
        "name": "Bad",
        "config": {"on_failure": {"workflow": "NoSuchFlow"}},
        "activities": [{"name": "EchoActivity"}],
    }
    response = put(handler)
    assert response.status_code == 422
    assert "$.config.on_failure.workflow" in response.text and "NoSuchFlow" in response.text
    handler["config"]["on_failure"]["workflow"] = "DummyWorkflow"  # a registered one
    assert put(handler).status_code == 201


def test_a_rerun_that_would_keep_an_undone_step_is_refused_at_the_door(tmp_path):
    with EmbeddedFlow(settings_with(tmp_path)) as flow:
        client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
        workflow_id = flow.start("SagaExample", {"amount": 30, "sku": "X"})  # no address: ship fails, undone
        flow.wait(workflow_id, timeout_s=20)
        kept = client.simulate_post(f"/workflows/{workflow_id}/rerun", json={"from": "ship"})
        assert kept.status_code == 409 and "undone by the compensation" in kept.json["description"]
        assert client.simulate_post(f"/workflows/{workflow_id}/rerun", json={"from": "charge"}).status_code == 202
