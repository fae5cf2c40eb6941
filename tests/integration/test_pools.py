"""Worker pools on real RabbitMQ and PostgreSQL: an activity that names the gpu pool runs
only in the gpu worker's process, and waits, visibly, while no worker serves its pool."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from flow.testing import Cluster, new_database, new_queue_prefix
from flow.testing.processes import VENV_BIN, child_pids
from tests.conftest import wait_for

pytestmark = pytest.mark.services

DEFINITIONS: dict[str, dict[str, Any]] = {
    # EchoActivity outputs its worker process's pid.
    "Train": {
        "name": "Train",
        "activities": [
            {"id": "prepare", "name": "EchoActivity"},
            {"id": "train", "name": "EchoActivity", "queue": "gpu"},
            {"id": "shards", "name": "EchoActivity", "queue": "gpu", "map": {"over": "`[1, 2, 3]`"}},
            {"id": "report", "name": "EchoActivity"},
        ],
    },
    # No gpu worker: its attempt is never started, and the schedule-to-start timeout fails it.
    "TrainOrGiveUp": {
        "name": "TrainOrGiveUp",
        "config": {"retry": {"max_attempts": 1}, "timeouts": {"schedule_to_start_s": 4}},
        "activities": [{"id": "train", "name": "EchoActivity", "queue": "gpu"}],
    },
}


@pytest.fixture
def cluster(services, tmp_path) -> Iterator[Cluster]:
    with new_database() as pg_url, new_queue_prefix() as prefix:
        running = Cluster(tmp_path, pg_url, prefix, DEFINITIONS)
        try:
            running.start(engines=1, workers=1)
            yield running
        finally:
            running.stop()


def get(cluster: Cluster, path: str) -> Any:
    with urllib.request.urlopen(cluster.url + path, timeout=10) as response:  # noqa: S310 - the cluster's own API
        return json.load(response)


def start(cluster: Cluster, name: str) -> str:
    return next(iter(cluster.start_batch([name], 1)))


def ended(cluster: Cluster, workflow_id: str) -> dict[str, Any] | None:
    workflow = get(cluster, f"/workflows/{workflow_id}")
    return workflow if workflow["status"] != "In Progress" else None


def test_a_gpu_activity_waits_without_a_gpu_worker_and_runs_only_on_one(cluster):
    prefix = cluster.prefix
    # A default-only cluster: the gpu attempt stays Scheduled, says so, and is failed by
    # its schedule-to-start timeout.
    waiting = start(cluster, "TrainOrGiveUp")

    def scheduled_and_queued() -> dict[str, Any] | None:
        step = get(cluster, f"/workflows/{waiting}")["activities"][0]
        return (
            step
            if step["status"] == "Scheduled" and step["waiting_for"] == "waiting for a worker on gpu (1 queued)"
            else None
        )

    step = wait_for(scheduled_and_queued, timeout_s=60, what="the gpu attempt to wait, counted in its queue")
    assert step["queue"] == "gpu"
    pools = {p["name"]: p for p in get(cluster, "/pools")["items"]}
    assert pools["gpu"]["queue"] == f"{prefix}.activities.gpu"
    assert pools["gpu"]["definitions"] == ["Train", "TrainOrGiveUp"]
    failed = wait_for(lambda: ended(cluster, waiting), timeout_s=60, what="the schedule-to-start timeout")
    assert failed["status"] == "Failed"
    assert "schedule-to-start timeout: no worker started attempt 1 within 4" in failed["activities"][0]["error"]

    # A gpu worker joins, started by `flow worker --pool gpu` (which becomes the Dramatiq
    # master); every gpu attempt (the map's items too) runs in its process, every other
    # one in the default worker's.
    flow = str(VENV_BIN / "flow")
    cluster.procs.start("worker-gpu", flow, "worker", "--pool", "gpu", "--processes", "1", "--threads", "2")
    ids = list(cluster.start_batch(["Train"], 4))
    for workflow_id in ids:
        workflow = wait_for(lambda w=workflow_id: ended(cluster, w), timeout_s=120, what="a Train workflow to end")
        assert workflow["status"] == "Finished", workflow["error"]
        pids = {a["id"]: a["output"]["pid"] for a in workflow["activities"] if a["id"] != "shards"}
        gpu = child_pids(cluster.procs.procs["worker-gpu"].pid)
        default = child_pids(cluster.procs.procs["worker-0"].pid)
        assert gpu and default and not gpu & default
        assert {pids["train"], *(pids[f"shards[{i}]"] for i in range(3))} <= gpu, (pids, gpu)
        assert {pids["prepare"], pids["report"]} <= default, (pids, default)
    # The stale gpu message of the timed-out attempt was run once the gpu worker came;
    # its late result changed nothing.
    assert ended(cluster, waiting)["status"] == "Failed"
