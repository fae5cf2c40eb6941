"""A concurrency limit on a whole workflow across two engines, on real PostgreSQL and
RabbitMQ (the group commit's statement, the admitting SQL): at most one workflow per
tenant runs (sampled every 10 ms from the rows, not from the limit's own count), every
workflow finishes, and a queued one says what it waits for; GET /limits counts workflows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from flow.testing import Cluster, check_settled, query
from flow.testing.cluster import fresh_cluster
from flow.testing.sampling import PeakSampler
from tests.conftest import wait_for

pytestmark = pytest.mark.services

TENANTS = ("acme", "globex", "initech")
PER_TENANT = 6
DEFINITIONS = {
    "Import": {
        "name": "Import",
        "concurrency": {"key": "input.tenant", "limit": 1},
        "activities": [
            {"name": "SleepActivity", "config": {"sleep_s": 0.05}},
            {"name": "NoopActivity"},
        ],
    },
    "Newest": {
        "name": "Newest",
        "concurrency": {"limit": 1, "strategy": "cancel_newest"},
        "activities": [{"id": "gate", "wait_for": "go", "timeout_s": 600}],
    },
    "Latest": {
        "name": "Latest",
        "concurrency": {"key": "input.tenant", "limit": 1, "strategy": "cancel_in_progress"},
        "activities": [{"id": "gate", "wait_for": "go", "timeout_s": 600}],
    },
    "Gated": {
        "name": "Gated",
        "concurrency": {"name": "gate", "limit": 1},
        "activities": [{"id": "gate", "wait_for": "go", "timeout_s": 600}],
    },
}
#: Workflows per tenant with a step out of Pending while In Progress: what runs.
RUNNING = """
SELECT w.limit_key, count(DISTINCT w.id) FROM workflows w JOIN activities a ON a.workflow_id = w.id
WHERE w.definition_name = 'Import' AND w.status = 'In Progress' AND a.status <> 'Pending' GROUP BY w.limit_key
"""


@pytest.fixture
def cluster(services, tmp_path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path, DEFINITIONS) as running:
        yield running


def test_one_workflow_per_tenant_runs_across_two_engines(cluster: Cluster):
    cluster.start(engines=2, workers=2)
    started = {}
    with PeakSampler(lambda: dict(query(cluster.pg_url, RUNNING))) as sampler:
        for n in range(PER_TENANT):
            for tenant in TENANTS:
                response = requests.post(
                    f"{cluster.url}/workflows", json={"name": "Import", "input_data": {"tenant": tenant, "n": n}}
                )
                assert response.status_code == 201, response.text
                started[response.json()["id"]] = "Import"
        check_settled(cluster.pg_url, started, {"Import": "Finished"}, timeout_s=180)
    assert sampler.samples > 10, "the sampler hardly ran"
    assert dict(sampler.peak) == dict.fromkeys(TENANTS, 1)
    # No slot is left held: nothing In Progress, no grant left.
    assert query(cluster.pg_url, "SELECT count(*) FROM timers WHERE kind = 'slot'")[0][0] == 0


def test_a_queued_workflow_waits_for_a_named_limit_and_says_so(cluster: Cluster):
    cluster.start(engines=1, workers=1)
    ids = [
        requests.post(f"{cluster.url}/workflows", json={"name": "Gated", "input_data": {}}).json()["id"] for _ in "ab"
    ]
    # Both starts are handled in either order: wait for one let in and the other waiting
    # (the second's queueing may come before the first's).
    usage = wait_for(
        lambda: (u := requests.get(f"{cluster.url}/limits/gate").json())["held"] == 1 and u["waiting"] == 1 and u,
        timeout_s=60,
        what="one workflow let in and one waiting",
    )
    assert usage["limit"] == 1
    views = {i: requests.get(f"{cluster.url}/workflows/{i}").json() for i in ids}
    queued = [v for v in views.values() if v["queued"]]
    assert len(queued) == 1 and queued[0]["waiting_for"] == "waiting for gate: 1 of 1 held"
    for workflow_id in ids:
        wait_for(
            lambda workflow_id=workflow_id: (
                requests.post(f"{cluster.url}/workflows/{workflow_id}/signals/go", json={"payload": 1}).status_code
                == 202
            ),
            timeout_s=30,
        )
    check_settled(cluster.pg_url, dict.fromkeys(ids, "Gated"), {"Gated": "Finished"}, timeout_s=120)


def test_cancel_newest_cancels_the_newcomer_while_the_limit_is_full(cluster: Cluster):
    cluster.start(engines=1, workers=1)
    url = cluster.url
    holder = requests.post(f"{url}/workflows", json={"name": "Newest", "input_data": {}}).json()["id"]
    wait_for(
        lambda: requests.get(f"{url}/workflows/{holder}").json()["activities"][0]["status"] == "Waiting",
        timeout_s=60,
    )
    late = requests.post(f"{url}/workflows", json={"name": "Newest", "input_data": {}}).json()["id"]
    wait_for(lambda: requests.get(f"{url}/workflows/{late}").json()["status"] == "Cancelled", timeout_s=60)
    view = requests.get(f"{url}/workflows/{late}").json()
    assert view["error"] == "cancelled: 1 workflow already runs (cancel_newest)"
    assert requests.get(f"{url}/workflows/{holder}").json()["status"] == "In Progress"
    assert requests.post(f"{url}/workflows/{holder}/signals/go", json={"payload": 1}).status_code == 202
    wait_for(lambda: requests.get(f"{url}/workflows/{holder}").json()["status"] == "Finished", timeout_s=60)
    # No grant nor cancel timer is left behind.
    assert query(cluster.pg_url, "SELECT count(*) FROM timers WHERE kind IN ('slot', 'limit-cancel')")[0][0] == 0


def test_cancel_in_progress_displaces_the_running_one(cluster: Cluster):
    cluster.start(engines=1, workers=1)
    url = cluster.url

    def status(workflow_id: str, position: int | None = None) -> str:
        view = requests.get(f"{url}/workflows/{workflow_id}").json()
        return view["status"] if position is None else view["activities"][position]["status"]

    oldest = requests.post(f"{url}/workflows", json={"name": "Latest", "input_data": {"tenant": "a"}}).json()["id"]
    wait_for(lambda: status(oldest, 0) == "Waiting", timeout_s=60)
    newer = requests.post(f"{url}/workflows", json={"name": "Latest", "input_data": {"tenant": "a"}}).json()["id"]
    wait_for(lambda: status(oldest) == "Cancelled", timeout_s=60)
    assert requests.get(f"{url}/workflows/{oldest}").json()["error"] == (
        "cancelled: a newer workflow with key a started (cancel_in_progress)"
    )
    wait_for(lambda: status(newer, 0) == "Waiting", timeout_s=60)
    assert requests.post(f"{url}/workflows/{newer}/signals/go", json={"payload": 1}).status_code == 202
    wait_for(lambda: status(newer) == "Finished", timeout_s=60)
    assert query(cluster.pg_url, "SELECT count(*) FROM timers WHERE kind IN ('slot', 'limit-cancel')")[0][0] == 0
