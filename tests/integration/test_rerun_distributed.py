"""A rerun from a step on the real deployment (gunicorn, an engine and two workers on
PostgreSQL and RabbitMQ): the rerun's transition replaces the workflow's activity rows in
the engine's fenced group commit (one transaction with the prepared commit statement),
with a map whose items are listed again, on a pinned version."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from flow.testing import query
from tests.conftest import wait_for
from tests.integration.conftest import start_cluster, wait_ended

pytestmark = pytest.mark.services

FAST = {"retry": {"max_attempts": 1}}


def shipping(last: str) -> dict[str, Any]:
    return {
        "name": "Shipping",
        "config": FAST,
        "activities": [
            {"id": "list", "name": "EchoActivity"},
            {"id": "each", "name": "EchoActivity", "map": {"over": "input.parcels"}},
            {"id": "ship", "name": last},
        ],
    }


@pytest.fixture(scope="module")
def cluster(pg_url, queue_prefix, http_server, tmp_path_factory):
    yield from start_cluster(tmp_path_factory.mktemp("rerun"), pg_url, queue_prefix, http_server)


def test_a_failed_workflow_reruns_from_its_map_on_a_pinned_version(cluster, pg_url):
    url = cluster["url"]
    assert requests.put(f"{url}/definitions/Shipping", json=shipping("RefusingActivity"), timeout=5).status_code == 201
    started = requests.post(f"{url}/workflows", json={"name": "Shipping", "input_data": {"parcels": [1, 2]}}, timeout=5)
    workflow_id = started.json()["id"]
    assert wait_ended(url, workflow_id)["status"] == "Failed"
    fixed = requests.put(f"{url}/definitions/Shipping", json=shipping("NoopActivity"), timeout=5).json()["version"]

    body = {"from": "each", "version": fixed, "input_data": {"parcels": [1, 2, 3]}, "by": "ops"}
    reply = requests.post(f"{url}/workflows/{workflow_id}/rerun", json=body, timeout=5)
    assert reply.status_code == 202, reply.text

    def finished():
        shown = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()
        return shown if shown["status"] == "Finished" else None

    done = wait_for(finished, timeout_s=30, every_s=0.2, what="the rerun to finish")
    steps = {a["id"]: (a["status"], a["attempt"]) for a in done["activities"]}
    # list kept its outcome; the map listed its items again, from the new input.
    assert steps == {
        "list": ("Succeeded", 1),
        "each": ("Succeeded", 0),  # a map makes no attempts of its own
        "each[0]": ("Succeeded", 1),
        "each[1]": ("Succeeded", 1),
        "each[2]": ("Succeeded", 1),
        "ship": ("Succeeded", 2),
    }
    assert done["definition_version"] == fixed and done["input_data"] == {"parcels": [1, 2, 3]}
    assert [o["item"] for o in done["output"]["each"]] == [1, 2, 3]
    rows = query(pg_url, "SELECT position, name FROM activities WHERE workflow_id = %s ORDER BY position", workflow_id)
    assert [name for _, name in rows] == ["EchoActivity", "EchoActivity", "NoopActivity", *["EchoActivity"] * 3]
    assert query(pg_url, "SELECT definition_version FROM workflows WHERE id = %s", workflow_id) == [(fixed,)]
