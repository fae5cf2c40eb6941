"""A batch of 2,000 reruns (issue 24) on real PostgreSQL and RabbitMQ, its engine SIGKILLed
half way: the restarted engine takes the batch's partition back and goes on, every
workflow is rerun exactly once (one ``rerun-workflow`` decision each; a control sent
again by the next owner changes nothing), and the batch ends ``finished`` with all of
them done. Does not restart PostgreSQL or RabbitMQ."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from flow.testing import Cluster, query
from flow.testing.cluster import fresh_cluster
from tests.faults.conftest import report, wait_for

pytestmark = [pytest.mark.services, pytest.mark.faults]

COUNT = 2000
#: ``switch`` fails for an input that says ``refuse``; the batch reruns it from there
#: with an input that does not, so each rerun finishes (and a second one would show).
DEFINITIONS = {
    "Rerunnable": {
        "name": "Rerunnable",
        "activities": [{"id": "first", "name": "NoopActivity"}, {"id": "switch", "name": "SwitchActivity"}],
    }
}


@pytest.fixture
def cluster(services, tmp_path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path, DEFINITIONS) as running:
        yield running


def count_of(cluster: Cluster, status: str) -> int:
    return query(cluster.pg_url, "SELECT count(*) FROM workflows WHERE status = %s", status)[0][0]


def settled(cluster: Cluster) -> None:
    """Every workflow ended, nothing in flight, nothing owed."""
    unsettled = """SELECT (SELECT count(*) FROM workflows WHERE status IN ('In Progress', 'Compensating'))
        + (SELECT count(*) FROM activities WHERE status IN ('Queued', 'Scheduled', 'Started', 'Waiting Retry'))
        + (SELECT count(*) FROM outbox)"""
    wait_for(lambda: query(cluster.pg_url, unsettled)[0][0] == 0, timeout_s=240, what="the reruns to settle")


def start_all(cluster: Cluster) -> dict[str, str]:
    """``COUNT`` workflows that fail at ``switch``, started through the API 8 at a time."""

    def start(n: int) -> str:
        with requests.Session() as session:
            body = {"name": "Rerunnable", "input_data": {"refuse": True, "n": n}}
            response = session.post(f"{cluster.url}/workflows", json=body, timeout=30)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        return {workflow_id: "Rerunnable" for workflow_id in pool.map(start, range(COUNT))}


def test_a_batch_of_2000_reruns_with_its_engine_killed_half_way_reruns_each_once(cluster: Cluster):
    t0 = time.monotonic()
    cluster.start(workers=2, engine_env={"FLOW_BATCH_RATE": "400"})
    started = start_all(cluster)
    wait_for(lambda: count_of(cluster, "Failed") == COUNT, timeout_s=240, what=f"{COUNT} failed workflows")

    body = {"operation": "rerun", "filter": {"name": "Rerunnable", "status": "Failed"},
            "rerun": {"from": "switch", "input_data": {}}}  # fmt: skip
    response = requests.post(f"{cluster.url}/batches", json=body, timeout=30)
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]

    def progress() -> dict[str, Any]:
        return requests.get(f"{cluster.url}/batches/{batch_id}", timeout=30).json()

    wait_for(lambda: progress()["done"] >= COUNT // 2, timeout_s=120, what="half the batch")
    [child] = wait_for(lambda: cluster.booted_children("engine"), what="a booted engine process")
    os.kill(child, signal.SIGKILL)
    killed_at = progress()["done"]
    wait_for(lambda: cluster.restarts["engine-0"] >= 1, what="the engine to be restarted")

    done = wait_for(lambda: (b := progress())["status"] == "finished" and b, timeout_s=240, what="the batch to end")
    assert killed_at < COUNT, "the batch was over before the kill: the scenario proved nothing"
    assert (done["matched"], done["done"], done["failed"], done["skipped"]) == (COUNT, COUNT, 0, 0), done
    # The batch is done once its controls are sent: the last reruns may still be on their way.
    wait_for(lambda: count_of(cluster, "Finished") == COUNT, timeout_s=240, what="every rerun to finish")
    settled(cluster)
    # check_settled's invariants, but a rerun workflow ends twice (its failed run, then the rerun).
    twice = query(
        cluster.pg_url,
        """SELECT workflow_id, position, data::jsonb->>'attempt', type, count(*) FROM events
           WHERE type = 'schedule-activity' OR (type = 'activity-result'
                 AND NOT coalesce((data::jsonb->>'stale')::boolean, false))
           GROUP BY 1, 2, 3, 4 HAVING count(*) > 1 LIMIT 5""",
    )
    assert twice == [], f"attempts scheduled or completed twice: {twice}"
    counts = query(
        cluster.pg_url,
        """SELECT w.id, w.run, count(e.id) FILTER (WHERE e.type = 'rerun-workflow'),
                  count(e.id) FILTER (WHERE e.type = 'rerun-requested')
           FROM workflows w LEFT JOIN events e ON e.workflow_id = w.id GROUP BY w.id, w.run""",
    )
    assert {workflow_id for workflow_id, *_ in counts} == set(started)  # none lost, none more
    assert {(run, reruns) for _, run, reruns, _ in counts} == {(2, 1)}, "a workflow was rerun twice, or not at all"
    asked_again = sum(requested - 1 for _, _, _, requested in counts)
    switched = query(
        cluster.pg_url, "SELECT count(*) FROM activities WHERE position = 1 AND attempt = 2 AND status = 'Succeeded'"
    )[0][0]
    assert switched == COUNT  # each switch ran once more, on the rerun's input
    print(
        f"\nBATCH {COUNT} reruns, engine SIGKILLed at done={killed_at}: each rerun once; "
        f"{asked_again} controls sent again by the next owner changed nothing"
    )
    figures = {"workflows": COUNT, "lost": 0, "stuck": 0, "duplicated": 0}
    report("batch of 2,000 reruns, engine SIGKILL half way", figures, 1, t0)
