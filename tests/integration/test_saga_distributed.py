"""A saga on PostgreSQL and RabbitMQ, the API, an engine and a worker as processes: the
undos run in reverse order of completion, once each, then the failure handler, as a
class and as a child workflow; the workflow is Compensating meanwhile."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
import requests

from flow.testing import Processes, free_port, migrate, wait_http
from tests.conftest import ROOT, wait_for
from tests.integration.conftest import cluster_env

pytestmark = pytest.mark.services

CHILD_HANDLER = {
    "name": "SagaWithCleanup",
    "config": {"on_failure": {"workflow": "Cleanup"}},
    "activities": [
        {"id": "charge", "name": "ChargeCard", "compensate": {"name": "RefundPayment"}},
        {"id": "ship", "name": "Ship", "config": {"retry": {"max_attempts": 1}}},
    ],
}
CLEANUP = {"name": "Cleanup", "activities": [{"id": "tidy", "name": "EchoActivity"}]}


@pytest.fixture(scope="module")
def api(pg_url, queue_prefix, tmp_path_factory):
    base = tmp_path_factory.mktemp("saga")
    definitions = base / "workflows"
    definitions.mkdir()
    shutil.copy(ROOT / "examples" / "workflows" / "saga.json", definitions / "saga.json")
    for body in (CHILD_HANDLER, CLEANUP):
        (definitions / f"{body['name']}.json").write_text(json.dumps(body))
    procs = Processes(base, cluster_env(pg_url, queue_prefix, definitions, partitions=4))
    migrate(procs.env)
    port = free_port()
    procs.gunicorn("api", port, workers=1)
    procs.dramatiq("engine", f"{queue_prefix}.engine")
    procs.dramatiq("worker", f"{queue_prefix}.activities")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health")
    yield url
    procs.stop_all(sig=signal.SIGKILL)  # the test is over: no need to wait for graceful shutdowns


def ended(url: str, workflow_id: str) -> dict:
    def check() -> dict | None:
        body = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()
        return body if body["status"] in ("Finished", "Failed", "Cancelled") else None

    return wait_for(check, timeout_s=60, every_s=0.2, what=f"workflow {workflow_id} to end")


def start(url: str, name: str, input_data: dict) -> str:
    response = requests.post(f"{url}/workflows", json={"name": name, "input_data": input_data}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_saga_undoes_latest_first_then_runs_its_failure_handler_as_a_class_or_a_child(api):
    saga = start(api, "SagaExample", {"amount": 30, "sku": "X"})
    with_child = start(api, "SagaWithCleanup", {"amount": 5})
    body = ended(api, saga)
    assert body["status"] == "Failed" and body["compensation"] == "done"
    steps = body["activities"]
    assert [(s["id"], s["kind"], s["status"]) for s in steps[3:]] == [
        ("undo(reserve)", "compensation", "Succeeded"),
        ("undo(charge)", "compensation", "Succeeded"),
        ("on_failure(NotifyOps)", "on_failure", "Succeeded"),
    ]
    assert steps[3]["compensates"] == "reserve" and steps[4]["output"]["undid"] == steps[0]["output"]["payment"]
    events = requests.get(f"{api}/workflows/{saga}/events", params={"limit": 500}, timeout=5).json()["items"]
    results = [e["position"] for e in events if e["type"] == "activity-result" and e["position"] >= 3]
    assert results == [3, 4, 5]  # once each, in order
    assert [e["type"] for e in events].count("start-compensation") == 1

    body = ended(api, with_child)
    assert body["status"] == "Failed" and body["compensation"] == "done"
    handler = body["activities"][-1]
    assert (handler["kind"], handler["status"], handler["handles"]) == ("on_failure", "Succeeded", "ship")
    child = requests.get(f"{api}/workflows/{handler['child_id']}", timeout=5).json()
    assert child["status"] == "Finished" and child["name"] == "Cleanup"
    assert child["input_data"]["failed_activity"] == "ship" and child["input_data"]["compensation"] == "done"
