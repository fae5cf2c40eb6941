"""Retention on the real deployment (gunicorn, an engine and two workers on PostgreSQL
and RabbitMQ): the engine prunes what is past retention, and a late message for a
workflow deleted through the API is consumed and dropped, not dead-lettered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.core.partitions import partition_of, partition_queue
from flow.core.vocabulary import Outcome
from flow.testing import AMQP_URL, query, queue_depth
from flow.wire import messages
from tests.conftest import wait_for
from tests.integration.conftest import start_cluster, wait_ended

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def retaining(pg_url, queue_prefix, http_server, tmp_path_factory) -> Iterator[dict]:
    """The cluster with a retention of one day, checked every half second."""
    yield from start_cluster(
        tmp_path_factory.mktemp("retaining"),
        pg_url,
        queue_prefix,
        http_server,
        FLOW_RETENTION_DAYS="1",
        FLOW_RETENTION_INTERVAL_S="0.5",
    )


def finished_workflow(url: str) -> str:
    workflow_id = requests.post(f"{url}/workflows", json={"name": "DummyWorkflow"}, timeout=5).json()["id"]
    assert wait_ended(url, workflow_id)["status"] == "Finished"
    return workflow_id


def test_the_engine_prunes_workflows_past_retention(retaining, pg_url):
    url = retaining["url"]
    old, recent = finished_workflow(url), finished_workflow(url)
    query(pg_url, "UPDATE workflows SET finished_at = finished_at - interval '2 days' WHERE id = %s", old)
    wait_for(
        lambda: requests.get(f"{url}/workflows/{old}", timeout=5).status_code == 404,
        timeout_s=30,
        what="the engine to prune the old workflow",
    )
    assert query(pg_url, "SELECT count(*) FROM events WHERE workflow_id = %s", old) == [(0,)]
    assert requests.get(f"{url}/workflows/{recent}", timeout=5).json()["status"] == "Finished"
    assert "retention: deleted 1 workflows" in retaining["procs"].log("engine")


def test_a_late_result_for_a_deleted_workflow_is_dropped_not_dead_lettered(retaining, pg_url):
    url, prefix = retaining["url"], retaining["prefix"]
    workflow_id = finished_workflow(url)
    assert requests.delete(f"{url}/workflows/{workflow_id}", timeout=5).status_code == 204

    queue = partition_queue(prefix, partition_of(workflow_id, 16))
    broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)
    try:
        broker.declare_queue(queue)
        late = messages.AttemptResult(workflow_id=workflow_id, position=0, attempt=1, outcome=Outcome.SUCCEEDED)
        for _ in range(2):  # the actor's cached state first, then no state at all
            broker.enqueue(late.to_message(queue))
    finally:
        broker.close()

    def dropped() -> int:
        return sum(workflow_id in line for line in retaining["procs"].log("engine").splitlines() if "dropping" in line)

    wait_for(lambda: dropped() == 2, timeout_s=30, what="both late results to be dropped")
    assert queue_depth(queue) == 0 and queue_depth(f"{queue}.XQ") == 0
    assert query(pg_url, "SELECT count(*) FROM workflows WHERE id = %s", workflow_id) == [(0,)]
    assert query(pg_url, "SELECT coalesce(sum(refused_commits), 0) FROM engines") == [(0,)]
    assert finished_workflow(url)
