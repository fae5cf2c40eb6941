"""A batch on real PostgreSQL and RabbitMQ across two engines: the engine driving it is
SIGKILLed half way, the batch goes on on the engine that takes its partition over (or
the restarted one), and every failed workflow is retried exactly once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import requests

from flow.persistence.leases import engine_host_pid
from flow.testing import Cluster, query
from flow.testing.cluster import fresh_cluster
from tests.conftest import wait_for

pytestmark = pytest.mark.services

COUNT = 60
DEFINITIONS = {"Refused": {"name": "Refused", "activities": [{"name": "RefusingActivity"}]}}


@pytest.fixture
def cluster(services, tmp_path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path, DEFINITIONS) as running:
        yield running


def failed_count(cluster: Cluster) -> int:
    return query(cluster.pg_url, "SELECT count(*) FROM workflows WHERE status = 'Failed'")[0][0]


def test_a_batch_whose_engine_is_killed_half_way_retries_each_workflow_exactly_once(cluster: Cluster):
    cluster.start(engines=2, workers=1, engine_env={"FLOW_BATCH_RATE": "15"})
    for n in range(COUNT):
        response = requests.post(f"{cluster.url}/workflows", json={"name": "Refused", "input_data": {"n": n}})
        assert response.status_code == 201, response.text
    wait_for(lambda: failed_count(cluster) == COUNT, timeout_s=120, what=f"{COUNT} failed workflows")

    response = requests.post(f"{cluster.url}/batches", json={"operation": "retry", "filter": {"status": "Failed"}})
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]

    def progress() -> dict:
        return requests.get(f"{cluster.url}/batches/{batch_id}", timeout=5).json()

    wait_for(lambda: progress()["done"] >= COUNT // 4, timeout_s=60, what="a quarter of the batch")
    # The engine holding the batch's partition drives it: kill that one, mid-batch.
    (owner,) = query(
        cluster.pg_url,
        "SELECT l.owner FROM partition_leases l JOIN batches b ON b.partition = l.partition WHERE b.id = %s",
        batch_id,
    )[0]
    os.kill(engine_host_pid(owner)[1], signal.SIGKILL)
    killed_at = progress()["done"]

    done = wait_for(lambda: (b := progress())["status"] == "finished" and b, timeout_s=120, what="the batch")
    assert killed_at < COUNT
    assert (done["matched"], done["done"], done["failed"], done["skipped"]) == (COUNT, COUNT, 0, 0), done

    def retries() -> list[tuple[str, int]]:
        return query(
            cluster.pg_url,
            "SELECT w.id, count(e.id) FROM workflows w LEFT JOIN events e ON e.workflow_id = w.id "
            "AND e.type = 'retry-workflow' GROUP BY w.id",
        )

    wait_for(lambda: {count for _, count in retries()} == {1}, timeout_s=60, what="one retry of each")
    wait_for(lambda: failed_count(cluster) == COUNT, timeout_s=120, what="the retried workflows to fail again")
    assert {count for _, count in retries()} == {1}, retries()
    print(f"\nBATCH 2 engines, {COUNT} workflows, owner killed at done={killed_at}: each retried once")
