"""Bulk operations on the embedded engine, through the API: a batch retries 200 failed
workflows once each and counts them; a batch cancelled half way stops; an engine
stopped mid-batch and started again goes on where it stopped, handling no workflow
twice (tests/embedded/test_batches_restart.py); bodies are checked field by field."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.core.timestamps import parse_iso
from flow.core.vocabulary import HistoryType, WorkflowStatus
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

REFUSED = {"name": "Refused", "activities": [{"id": "refuse", "name": "RefusingActivity"}]}
ECHO = {"name": "Echo", "activities": [{"name": "EchoActivity"}]}
DEFINITIONS = {"Refused": REFUSED, "Echo": ECHO}


def failed_workflows(flow: EmbeddedFlow, count: int, **input_data: object) -> list[str]:
    """``count`` workflows of ``Refused``, each waited for until it failed."""
    ids = [flow.start("Refused", {"n": n, **input_data}) for n in range(count)]
    store = flow.runtime.store
    wait_for(
        lambda: all(store.get(i).state.status is WorkflowStatus.FAILED for i in ids),
        timeout_s=120,
        what=f"{count} workflows to fail",
    )
    return ids


def retries_of(flow: EmbeddedFlow, workflow_ids: list[str]) -> Counter[str]:
    """How many retries each workflow's history records."""
    store = flow.runtime.store
    return Counter(
        {
            i: sum(1 for e in store.events(i, limit=10_000) if e["type"] == HistoryType.RETRY_WORKFLOW.value)
            for i in workflow_ids
        }
    )


def batch(client: falcon.testing.TestClient, batch_id: str) -> dict:
    response = client.simulate_get(f"/batches/{batch_id}")
    assert response.status_code == 200, response.text
    return response.json


def start_batch(client: falcon.testing.TestClient, body: dict) -> dict:
    response = client.simulate_post("/batches", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/batches/{response.json['id']}"
    return response.json


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("batches"), DEFINITIONS, FLOW_BATCH_RATE="50") as running:
        yield running


@pytest.fixture(scope="module")
def client(flow: EmbeddedFlow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


@pytest.fixture(scope="module")
def failed(flow: EmbeddedFlow) -> list[str]:
    """200 failed workflows of ``Refused`` (a retried one fails again: they stay Failed)."""
    return failed_workflows(flow, 200, set="shared")


def all_failed(flow: EmbeddedFlow, ids: list[str]) -> None:
    store = flow.runtime.store
    wait_for(
        lambda: all(store.get(i).state.status is WorkflowStatus.FAILED for i in ids),
        timeout_s=60,
        what="the retried workflows to fail again",
    )


def finished(client: falcon.testing.TestClient, batch_id: str, *, ended: str = "finished") -> dict:
    return wait_for(
        lambda: (b := batch(client, batch_id))["status"] == ended and b, timeout_s=60, what=f"the batch {ended}"
    )


def test_a_batch_retries_every_failed_workflow_once_and_counts_them(flow, client, failed):
    all_failed(flow, failed)
    before = retries_of(flow, failed)
    flow.start("Echo")  # not matched: another definition
    body = {"operation": "retry", "filter": {"status": "Failed", "name": "Refused", "input": {"set": "shared"}}}
    started = start_batch(client, body)
    assert started["status"] == "running" and started["operation"] == "retry"
    assert started["filter"] == body["filter"] and started["matched"] == 0

    done = finished(client, started["id"])
    assert (done["matched"], done["done"], done["failed"], done["skipped"], done["pending"]) == (200, 200, 0, 0, 0)
    assert done["problems"] == [] and done["finished_at"]
    # Throttled: at 50 a second, after the first pass's allowance (0.4 s: 20), 180 take 3.6 s at least.
    took_s = (parse_iso(done["finished_at"]) - parse_iso(done["created_at"])).total_seconds()
    assert took_s >= (200 - 20) / 50, took_s
    # Each retried workflow fails again (its activity always refuses): one retry each.
    wanted = Counter({i: before[i] + 1 for i in failed})
    wait_for(lambda: retries_of(flow, failed) == wanted, timeout_s=60, what="one more retry of each")
    listed = client.simulate_get("/batches", params={"status": "finished"}).json["items"]
    assert started["id"] in [b["id"] for b in listed]


def test_a_batch_cancelled_half_way_stops_and_skips_the_rest(flow, client, failed):
    all_failed(flow, failed)
    before = retries_of(flow, failed)
    started = start_batch(client, {"operation": "retry", "filter": {"status": "Failed", "input": {"set": "shared"}}})
    wait_for(lambda: batch(client, started["id"])["done"] >= 20, timeout_s=30, what="20 retries sent")
    cancelled = client.simulate_post(f"/batches/{started['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json["status"] in ("cancelling", "cancelled")

    stopped = finished(client, started["id"], ended="cancelled")
    assert 20 <= stopped["done"] < 200, stopped
    assert stopped["matched"] == stopped["done"] + stopped["failed"] + stopped["skipped"]

    # Nothing more is sent after the batch stopped: the retries are the ones it counted.
    def retried() -> int:
        return sum((retries_of(flow, failed) - before).values())

    wait_for(lambda: retried() == stopped["done"], timeout_s=30, what="the retries the batch sent")
    all_failed(flow, failed)  # nothing in flight any more
    assert retried() == stopped["done"]
    again = client.simulate_post(f"/batches/{started['id']}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json["description"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"filter": {}}, "$.operation"),
        ({"operation": "delete", "filter": {}}, "$.operation"),
        ({"operation": "retry"}, "$.filter"),
        ({"operation": "retry", "filter": {"status": "Broken"}}, "$.filter.status"),
        ({"operation": "retry", "filter": {"colour": "red"}}, "$.filter.colour"),
        ({"operation": "retry", "filter": {"created_after": "yesterday"}}, "$.filter.created_after"),
        ({"operation": "retry", "filter": {"input": [1]}}, "$.filter.input"),
        ({"operation": "retry", "filter": {"input": {"a": list(range(40))}}}, "$.filter.input"),
        ({"operation": "cancel", "filter": {}, "rerun": {"from": "a"}}, "$.rerun"),
        ({"operation": "rerun", "filter": {}}, "$.rerun"),
        ({"operation": "rerun", "filter": {}, "rerun": {"version": 2}}, "$.rerun.from"),
    ],
)
def test_a_wrong_batch_is_refused_naming_the_field_and_stores_nothing(client, body, path):
    def stored() -> int:
        return len(client.simulate_get("/batches", params={"limit": 500}).json["items"])

    before = stored()
    response = client.simulate_post("/batches", json=body)
    assert response.status_code == 422, response.text
    assert response.json["errors"][0]["path"] == path, response.json
    assert stored() == before


def test_a_rerun_batch_reruns_each_workflow_from_its_step_and_fails_those_without_it(flow, client):
    ids = failed_workflows(flow, 5, set="rerun")
    store = flow.runtime.store
    match = {"input": {"set": "rerun"}}
    done = finished(
        client, start_batch(client, {"operation": "rerun", "filter": match, "rerun": {"from": "refuse"}})["id"]
    )
    assert (done["matched"], done["done"], done["failed"]) == (5, 5, 0)

    def reruns() -> list[int]:
        return [[e["type"] for e in store.events(i, limit=10_000)].count(HistoryType.RERUN_WORKFLOW.value) for i in ids]

    # Done is "sent": the engine reruns each a moment later, once.
    wait_for(lambda: reruns() == [1] * 5, timeout_s=30, what="one rerun of each")
    all_failed(flow, ids)
    missing = start_batch(client, {"operation": "rerun", "filter": match, "rerun": {"from": "ship"}})
    refused = finished(client, missing["id"])
    assert (refused["matched"], refused["done"], refused["failed"]) == (5, 0, 5)
    assert {p["workflow_id"] for p in refused["problems"]} == set(ids)
    assert all("has no step 'ship'" in p["reason"] for p in refused["problems"]), refused["problems"]


def test_an_unknown_batch_is_404(client):
    assert client.simulate_get("/batches/6d3f1f5e-0000-4000-8000-000000000000").status_code == 404
    assert client.simulate_get("/batches/not-a-batch").status_code == 404
    assert client.simulate_post("/batches/not-a-batch/cancel").status_code == 404
