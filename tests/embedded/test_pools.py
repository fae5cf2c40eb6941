"""Worker pools on the embedded flow: one process serves every pool, and a workflow read
back from the store still routes each attempt to its pool."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import falcon.testing
import pytest

from api.app import create_app
from flow.core.commands import RunActivity
from flow.engine.planning import Routes, run_message
from flow.process.embedded import EmbeddedFlow
from tests.embedded.conftest import flow_of

DEFINITIONS = {
    "GpuWork": {
        "name": "GpuWork",
        "activities": [
            {"id": "train", "name": "EchoActivity", "queue": "gpu"},
            {"id": "each", "name": "EchoActivity", "queue": "big-mem", "map": {"over": "`[1, 2, 3]`"}},
            {"id": "report", "name": "EchoActivity"},
        ],
    }
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("pools"), DEFINITIONS) as running:
        yield running


def test_the_embedded_flow_runs_the_activities_of_every_pool(flow):
    workflow_id = flow.start("GpuWork")
    ended = flow.wait(workflow_id, timeout_s=60)
    assert ended.state.status == "Finished", ended.state.error
    assert [a.status for a in ended.state.activities] == ["Succeeded"] * 6
    assert [a.queue for a in ended.state.activities] == ["gpu", "big-mem", None, "big-mem", "big-mem", "big-mem"]


def test_a_workflow_read_back_from_the_store_routes_each_attempt_to_its_pool(flow):
    """What an engine that restarts (or takes the partition over) reads: the rows."""
    workflow_id = flow.start("GpuWork")
    flow.wait(workflow_id, timeout_s=60)
    state = flow.runtime.store.get(workflow_id).state
    routes = Routes(partition=0, reply_to="r", activity_queue=flow.settings.activity_queue)
    queues = [
        run_message(state, RunActivity(a.position, 1), routes, send_after=datetime(2026, 1, 1)).queue_name
        for a in state.activities
        if a.id != "each"  # the map itself runs no attempt
    ]
    base = flow.settings.activity_queue
    assert queues == [f"{base}.gpu", base, f"{base}.big-mem", f"{base}.big-mem", f"{base}.big-mem"]


def test_get_pools_lists_the_pools_the_definitions_name_with_their_backlog(flow):
    client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
    flow.wait(flow.start("GpuWork"), timeout_s=60)
    body = client.simulate_get("/pools").json
    base = flow.settings.activity_queue
    assert body == {
        "items": [
            {"name": "default", "queue": base, "queued": 0, "definitions": ["GpuWork"]},
            {"name": "big-mem", "queue": f"{base}.big-mem", "queued": 0, "definitions": ["GpuWork"]},
            {"name": "gpu", "queue": f"{base}.gpu", "queued": 0, "definitions": ["GpuWork"]},
        ]
    }
    steps = client.simulate_get(f"/workflows/{flow.start('GpuWork')}").json["activities"]
    assert [(s["queue"], s["kind"]) for s in steps[:3]] == [("gpu", "activity"), ("big-mem", "map"), (None, "activity")]
