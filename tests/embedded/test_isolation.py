"""Faults contained: one workflow's crash, a database outage, many waiting workflows."""

from __future__ import annotations

import dataclasses
import threading

import falcon.testing
import pykka
import pytest

import actors.workflow
from api.app import create_app
from flow.clock import utcnow
from flow.process.embedded import EmbeddedFlow
from flow.process.runtime import Runtime
from flow.settings import Settings
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for


def test_systemexit_in_one_workflows_actor_affects_only_that_workflow(embedded_settings, monkeypatch):
    real_decide = actors.workflow.decide
    exploded = threading.Event()

    def decide(state, event):
        if state.input_data.get("explode") and not exploded.is_set():
            exploded.set()
            raise SystemExit("boom")
        return real_decide(state, event)

    monkeypatch.setattr(actors.workflow, "decide", decide)
    with EmbeddedFlow(embedded_settings) as flow:
        calm = [flow.start("ParallelWorkflow") for _ in range(3)]
        wait_for(lambda: len(pykka.ActorRegistry.get_all()) >= 1)
        victim = flow.start("DummyWorkflow", {"explode": True})
        # The other workflows, and their actors, carry on; the victim's event is retried.
        for workflow_id in calm:
            assert flow.wait(workflow_id, timeout_s=20).state.status == "Finished"
        assert exploded.is_set()
        assert flow.wait(victim, timeout_s=30).state.status == "Finished"


def test_database_down_means_503_and_nothing_half_written(tmp_path, definitions_dir):
    env = embedded_env(tmp_path, definitions_dir, FLOW_DATABASE_URL="postgres://nobody@127.0.0.1:1/nothing")
    runtime = Runtime.build(Settings.from_env(env, embedded=True))
    client = falcon.testing.TestClient(create_app(runtime=runtime))
    for result in (
        client.simulate_post("/workflows", json={"name": "DummyWorkflow"}),
        client.simulate_get("/workflows"),
        client.simulate_get("/workflows/some-id"),
        client.simulate_get("/definitions"),
    ):
        assert result.status_code == 503
        assert result.json["title"] == "Database unavailable"
        assert "retry-after" in result.headers
    assert client.simulate_get("/health").status_code == 503


@pytest.mark.parametrize("waiting", [150])  # 3x the bound; 1,000: python -m bench.embedded_waiting
def test_waiting_workflows_use_a_bounded_number_of_threads(tmp_path, definitions_dir, waiting):
    (definitions_dir / "Waiting.json").write_text(
        '{"name": "Waiting", "activities": [{"name": "SleepActivity", "config": {"sleep_s": 30}}]}'
    )
    settings = dataclasses.replace(
        Settings.from_env(embedded_env(tmp_path, definitions_dir), embedded=True), max_live_actors=50
    )
    with EmbeddedFlow(settings, worker_threads=4) as flow:
        baseline = threading.active_count()
        ids = [flow.start("Waiting") for _ in range(waiting)]
        store = flow.runtime.store
        # Every workflow has scheduled its activity: each has had a live actor at some point.
        wait_for(
            lambda: (
                store.status_counts()["activities"].get("Scheduled", 0)
                + store.status_counts()["activities"].get("Started", 0)
                == waiting
            ),
            timeout_s=120,
        )
        assert len(flow.engine.actors) <= 50
        assert threading.active_count() <= baseline + 50 + 5
        assert all(store.get(i).state.status == "In Progress" for i in ids[:10])


def test_a_start_the_broker_refuses_is_logged_and_the_engine_starts_the_workflow_anyway(
    embedded_settings, caplog, monkeypatch
):
    from datetime import timedelta

    from flow.persistence.models import WorkflowRecord

    with EmbeddedFlow(embedded_settings) as flow:
        broker = flow.runtime.broker
        real_enqueue = broker.enqueue

        def enqueue(message, *, delay=None):
            if message.actor_name == "flow.start_workflow":
                raise ConnectionError("broker unreachable")
            return real_enqueue(message, delay=delay)

        monkeypatch.setattr(broker, "enqueue", enqueue)
        workflow_id = flow.start("DummyWorkflow")  # committed; its start could not be published
        assert "publishing the start of workflow" in caplog.text and "broker unreachable" in caplog.text
        assert flow.runtime.store.get(workflow_id).state.started is False
        # Its engine starts it once it has waited FLOW_OUTBOX_GRACE_S unstarted: make it so now.
        with flow.runtime.store.unit_of_work():
            WorkflowRecord.update(created_at=utcnow() - timedelta(hours=1)).where(
                WorkflowRecord.id == workflow_id
            ).execute()
        assert flow.wait(workflow_id, timeout_s=30).state.status == "Finished"


def test_a_stored_workflow_the_engine_cannot_handle_fails_and_the_others_run(embedded_settings):
    """Invariant 10: rows written by hand (or by a release with other rules) — a timeout
    no schema allows any more, an activity row that is not state — fail their own
    workflow with the reason at the next start; the engine starts and the rest runs."""
    from flow.persistence.models import ActivityRecord, WorkflowRecord

    with EmbeddedFlow(embedded_settings) as flow:
        infinite = flow.start("RetryWorkflow")
        garbled = flow.start("RetryWorkflow")
        store = flow.runtime.store
        for workflow_id in (infinite, garbled):
            flow.wait(workflow_id, timeout_s=30)
        with store.unit_of_work():
            # Back to "running" with data the engine cannot take.
            WorkflowRecord.update(status="In Progress", finished_at=None, output=None).where(
                WorkflowRecord.id.in_([infinite, garbled])
            ).execute()
            WorkflowRecord.update(config={"timeouts": {"workflow_s": 1e300}}).where(
                WorkflowRecord.id == infinite
            ).execute()
            ActivityRecord.update(status="Scheduled").where(ActivityRecord.workflow == infinite).execute()
            ActivityRecord.update(status="Bogus").where(ActivityRecord.workflow == garbled).execute()
    with EmbeddedFlow(embedded_settings) as flow:
        healthy = flow.start("DummyWorkflow")
        assert flow.wait(healthy, timeout_s=30).state.status == "Finished"

        def failed() -> list:
            with flow.runtime.store.unit_of_work():
                return list(
                    WorkflowRecord.select(WorkflowRecord.id, WorkflowRecord.error)
                    .where(WorkflowRecord.id.in_([infinite, garbled]) & (WorkflowRecord.status == "Failed"))
                    .tuples()
                )

        ended = dict(wait_for(lambda: len(failed()) == 2 and failed(), timeout_s=30))
        assert "OverflowError" in ended[infinite] and "the engine cannot" in ended[infinite]
        assert "'Bogus' is not a valid ActivityStatus" in ended[garbled]
