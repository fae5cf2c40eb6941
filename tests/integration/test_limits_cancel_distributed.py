"""A cancel gives back a limit's slot at once on real RabbitMQ and PostgreSQL: the attempt
of a cancelled workflow that waits behind other work in a pool lets the next workflow in
straight away, and the worker that later takes it never runs it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from flow.testing import Cluster
from flow.testing.cluster import fresh_cluster
from flow.testing.processes import VENV_BIN
from tests.conftest import wait_for

pytestmark = pytest.mark.services

DEFINITIONS = {
    # Keeps the gpu pool's one thread busy while the limited attempts wait behind it.
    "Busy": {"name": "Busy", "activities": [{"name": "SleepActivity", "queue": "gpu", "config": {"sleep_s": 20}}]},
    "Train": {
        "name": "Train",
        "config": {"retry": {"max_attempts": 1}},
        "activities": [{"id": "train", "name": "EchoActivity", "queue": "gpu", "concurrency": {"limit": 1}}],
    },
}


@pytest.fixture
def cluster(services, tmp_path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path, DEFINITIONS, activity_packages="activities") as running:
        running.start(engines=1, workers=1)  # no worker of the gpu pool yet
        yield running


def call(cluster: Cluster, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        cluster.url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the cluster's own API
        return json.load(response)


def step(cluster: Cluster, workflow_id: str) -> dict[str, Any]:
    return call(cluster, f"/workflows/{workflow_id}")["activities"][0]


def test_a_cancelled_workflows_attempt_not_yet_started_gives_its_slot_back_at_once(cluster):
    # One gpu worker thread, busy for 20 s: what comes after waits (in its queue, or in
    # the worker's prefetch), and the worker hears every cancel notice meanwhile.
    cluster.procs.start(
        "worker-gpu", str(VENV_BIN / "flow"), "worker", "--pool", "gpu", "--processes", "1", "--threads", "1"
    )
    busy = next(iter(cluster.start_batch(["Busy"], 1)))
    wait_for(lambda: step(cluster, busy)["status"] == "Started", timeout_s=90, what="the gpu thread to be busy")
    first = next(iter(cluster.start_batch(["Train"], 1)))
    wait_for(lambda: step(cluster, first)["status"] == "Scheduled", timeout_s=60, what="the first attempt sent")
    second = next(iter(cluster.start_batch(["Train"], 1)))
    waiting = wait_for(
        lambda: (s := step(cluster, second))["status"] == "Queued" and s.get("waiting_for") and s,
        timeout_s=60,
        what="the second to wait for the slot",
    )
    assert waiting["waiting_for"] == "waiting for Train:train: 1 of 1 held"

    call(cluster, f"/workflows/{first}/cancel", {"reason": "changed my mind"})
    # Let in while the gpu thread is still busy, so before any worker took the first
    # attempt: its slot came back with the cancel.
    wait_for(lambda: step(cluster, second)["status"] == "Scheduled", timeout_s=15, what="the second let in")
    assert step(cluster, busy)["status"] == "Started"
    assert step(cluster, first)["status"] == "Scheduled"  # still waiting, told not to start
    limits = {item["name"]: item for item in call(cluster, "/limits")["items"]}
    assert (limits["Train:train"]["held"], limits["Train:train"]["waiting"]) == (1, 0)

    # Once the thread is free: the first attempt is reported Cancelled without running,
    # the second runs.
    done = wait_for(
        lambda: (w := call(cluster, f"/workflows/{second}"))["status"] != "In Progress" and w,
        timeout_s=120,
        what="the second workflow to end",
    )
    assert done["status"] == "Finished", done["error"]
    late = wait_for(
        lambda: (s := step(cluster, first))["status"] != "Scheduled" and s,
        timeout_s=60,
        what="the first attempt's late result",
    )
    assert late["status"] == "Cancelled" and late["error"] == "cancelled before it started", late
    assert late["output"] is None
    cancelled = call(cluster, f"/workflows/{first}")
    assert cancelled["status"] == "Cancelled" and cancelled["error"] == "cancelled: changed my mind"
