"""Issue 24's hostile batch: a filter that matches everything, over 10,000 workflows.
``POST /batches`` answers without reading them (nothing matched yet), the API keeps
answering and a workflow started meanwhile runs to its end while the batch is worked
through, the batch goes no faster than ``FLOW_BATCH_RATE``, and it stops when cancelled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import falcon.testing
import pytest

from api.app import create_app
from flow.clock import utcnow
from flow.core.timestamps import parse_iso
from flow.persistence.models import WorkflowRecord
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

ECHO = {"name": "Echo", "activities": [{"name": "EchoActivity"}]}
COUNT = 10_000
RATE_PER_S = 100


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("batch_flood"), {"Echo": ECHO}, FLOW_BATCH_RATE=str(RATE_PER_S)) as running:
        store = running.runtime.store
        then = utcnow() - timedelta(days=1)
        partitions = store.partitions() or 1
        rows = [
            {
                "id": f"seed-{n:05d}",
                "definition_name": "Echo",
                "definition_version": 1,
                "partition": n % partitions,
                "status": "Finished",
                "started": True,
                "input_data": {"n": n},
                "config": {},
                "created_at": then + timedelta(milliseconds=n),
                "updated_at": then,
                "finished_at": then,
            }
            for n in range(COUNT)
        ]
        with store.unit_of_work():
            for first in range(0, COUNT, 500):  # SQLite's bound on one statement's variables
                WorkflowRecord.insert_many(rows[first : first + 500]).execute()
        yield running


def test_a_batch_over_everything_is_paced_leaves_the_api_free_and_stops_when_cancelled(flow):
    client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
    started = client.simulate_post("/batches", json={"operation": "cancel", "filter": {}})
    assert started.status_code == 202, started.text
    assert started.json["matched"] == 0  # the request read no workflow: the engine matches them
    batch_id = started.json["id"]

    def progress() -> dict:
        return client.simulate_get(f"/batches/{batch_id}").json

    wait_for(lambda: progress()["matched"] >= 200, timeout_s=60, what="the batch to be under way")
    # Meanwhile the API answers and a new workflow runs to its end.
    start = client.simulate_post("/workflows", json={"name": "Echo"})
    assert start.status_code == 201, start.text
    workflow_id = start.json["id"]
    ended = flow.wait(workflow_id, timeout_s=60)
    assert ended.state.status == "Finished"
    assert client.simulate_get("/workflows", params={"limit": 1}).status_code == 200

    cancelled = client.simulate_post(f"/batches/{batch_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    stopped = wait_for(lambda: (b := progress())["status"] == "cancelled" and b, timeout_s=60, what="it to stop")
    handled = stopped["done"] + stopped["failed"] + stopped["skipped"]
    assert stopped["matched"] == handled and handled < COUNT, stopped
    # Every seeded workflow had ended: nothing to cancel, each skipped with its reason.
    assert stopped["done"] == 0 and stopped["skipped"] == handled, stopped
    took_s = (parse_iso(stopped["updated_at"]) - parse_iso(stopped["created_at"])).total_seconds()
    # Paced: at most the rate over its life, plus one pass's window of allowance.
    assert handled <= RATE_PER_S * (took_s + 1), (handled, took_s)
    assert progress() == stopped  # nothing more once it stopped
