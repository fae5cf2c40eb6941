"""A rerun from a step on the real deployment (gunicorn, an engine and two workers on
PostgreSQL and RabbitMQ): the rerun's transition replaces the workflow's activity rows in
the engine's fenced group commit (one transaction with the prepared commit statement),
with a map whose items are listed again, on a pinned version. Replay before deploying on
PostgreSQL: ``POST /definitions/{name}/replay``, ``PUT ?check=running`` and ``flow replay
--database --filter --json`` read the running workflows' histories from it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from flow.testing import query
from tests.conftest import wait_for
from tests.embedded.conftest import run_cli
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


HELD: dict[str, Any] = {
    "name": "Held",
    "config": FAST,
    "activities": [{"id": "first", "name": "EchoActivity"}, {"id": "gate", "wait_for": "go"}],
}


def test_replay_and_check_running_read_the_running_workflows_from_postgresql(cluster, pg_url, tmp_path):
    url = cluster["url"]
    assert requests.put(f"{url}/definitions/Held", json=HELD, timeout=5).status_code in (200, 201)
    ids = [
        requests.post(f"{url}/workflows", json={"name": "Held", "input_data": {"tenant": t}}, timeout=5).json()["id"]
        for t in ("acme", "other")
    ]
    waiting = "SELECT count(*) FROM activities WHERE workflow_id = ANY(%s) AND position = 1 AND status = 'Waiting'"
    wait_for(lambda: query(pg_url, waiting, ids)[0][0] == 2, timeout_s=60, what="both workflows waiting")
    broken = {**HELD, "activities": [HELD["activities"][1]]}  # "first" ran: a version without it breaks them
    grown = {**HELD, "activities": [*HELD["activities"], {"id": "after", "name": "EchoActivity"}]}

    report = requests.post(f"{url}/definitions/Held/replay", json=broken, timeout=30).json()
    assert (report["workflows"], report["incompatible"]) == (2, 2), report
    refused = requests.put(f"{url}/definitions/Held", params={"check": "running"}, json=broken, timeout=30)
    assert refused.status_code == 409, refused.text
    assert {v["workflow_id"] for v in refused.json()["workflows"]} == set(ids)
    assert requests.get(f"{url}/definitions/Held", timeout=5).json()["version"] == 1  # nothing registered

    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    env = {**cluster["env"], "FLOW_DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"}  # --database wins
    found = run_cli("replay", str(path), "--database", pg_url, "--json", "--filter", '{"tenant": "acme"}', env=env)
    assert found.returncode == 1, found.stdout + found.stderr
    verdicts = json.loads(found.stdout)["verdicts"]
    assert [(v["workflow_id"], v["compatible"]) for v in verdicts] == [(ids[0], False)]
    assert verdicts[0]["divergences"][0]["change"] == "removed"

    taken = requests.put(f"{url}/definitions/Held", params={"check": "running"}, json=grown, timeout=30)
    assert taken.status_code == 201, taken.text
    for workflow_id in ids:
        requests.post(f"{url}/workflows/{workflow_id}/cancel", timeout=5)
