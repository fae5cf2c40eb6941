"""Workers killed mid-activity, an activity that kills its worker every time, a duplicate
result, workers killed while their activities heartbeat: on real PostgreSQL and
RabbitMQ, every workflow reaches its expected end and nothing happens twice."""

from __future__ import annotations

import json
import os
import signal
import time

import dramatiq
import pytest
import requests
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.testing import AMQP_URL, Cluster, query
from tests.faults.conftest import BATCH, report, verify, wait_for

pytestmark = [pytest.mark.services, pytest.mark.faults]


def test_sigkill_a_worker_mid_activity_several_times(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start(workers=2)
    started = fault_cluster.start_batch(BATCH, copies=10)
    kills = 0
    for round_ in range(3):
        if round_:
            # More work for this round: on a busy machine the surviving worker may have
            # finished the batch while the killed one was restarted.
            started |= fault_cluster.start_batch(["SlowSequence"], copies=5)
        # Kill only while some activity is running, and each worker in turn.
        wait_for(lambda: query(fault_cluster.pg_url, "SELECT count(*) FROM activities WHERE status = 'Started'")[0][0])
        # A worker just restarted by the supervisor forks its Dramatiq process a moment
        # later, and only a booted one may be killed: the master of one killed while
        # booting waits out Dramatiq's fork timeout instead of exiting.
        children = wait_for(lambda: fault_cluster.booted_children("worker"), what="a booted worker process")
        os.kill(children[round_ % len(children)], signal.SIGKILL)
        kills += 1
        wait_for(lambda k=kills: sum(fault_cluster.restarts.values()) >= k, what="the supervisor to restart the worker")
    report("worker SIGKILL", verify(fault_cluster, started), kills, t0)


def test_an_activity_that_kills_its_worker_every_time_fails_after_bounded_deliveries(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start(workers=1)
    started = fault_cluster.start_batch(["Poison"], copies=1) | fault_cluster.start_batch(["SlowSequence"], copies=2)
    figures = verify(fault_cluster, started, timeout_s=180)
    [poison] = [w for w, n in started.items() if n == "Poison"]
    [(attempts, error)] = query(
        fault_cluster.pg_url, "SELECT attempt, error FROM activities WHERE workflow_id = %s", poison
    )
    assert attempts == 2
    assert "delivered" in error and "died" in error
    kills = fault_cluster.restarts["worker-0"]
    # max_attempts=2 and FLOW_MAX_DELIVERIES=3: each attempt kills its worker 3 times at most.
    assert 2 <= kills <= 2 * 3
    report("poison activity", figures, kills, t0)


def test_a_duplicate_result_changes_nothing(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start()
    started = fault_cluster.start_batch(["SlowSequence"], copies=2)
    verify(fault_cluster, started)
    workflow_id = next(iter(started))
    before = requests.get(f"{fault_cluster.url}/workflows/{workflow_id}").json()
    broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)
    queue = f"{fault_cluster.prefix}.engine"
    broker.declare_queue(queue)
    for _ in range(2):  # the same result, twice more
        broker.enqueue(
            dramatiq.Message(
                queue_name=queue,
                actor_name="flow.record_result",
                args=(),
                kwargs={"workflow_id": workflow_id, "position": 1, "attempt": 1, "outcome": "PERMANENT_FAILURE"},
                options={},
            )
        )
    broker.close()

    def stale_recorded():
        events = requests.get(f"{fault_cluster.url}/workflows/{workflow_id}/events", params={"limit": 500}).json()
        return [e for e in events["items"] if e["type"] == "activity-result" and e["data"].get("stale")]

    wait_for(lambda: len(stale_recorded()) >= 2, timeout_s=20, what="both stale results recorded")
    assert len(stale_recorded()) == 2
    after = requests.get(f"{fault_cluster.url}/workflows/{workflow_id}").json()
    assert after["status"] == before["status"] == "Finished"
    assert after["activities"] == before["activities"]
    report("duplicate results", verify(fault_cluster, started), 2, t0)


def test_sigkill_the_workers_during_heartbeating_activities(fault_cluster: Cluster):
    """Every worker is SIGKILLed while 6 long activities heartbeat: each dead attempt is
    failed by its heartbeat timeout within heartbeat_s + 5 s (not at a start-to-close
    limit, which they have none of), and its retry resumes from the last heartbeat."""
    t0 = time.monotonic()
    heartbeat_s = 2
    fault_cluster.start(workers=2)
    started = fault_cluster.start_batch(["Heartbeating"], copies=6)
    beating = "SELECT count(*) FROM activities WHERE status = 'Started' AND heartbeat IS NOT NULL"
    wait_for(lambda: query(fault_cluster.pg_url, beating)[0][0] == 6, timeout_s=60, what="6 attempts heartbeating")
    children = wait_for(lambda: fault_cluster.booted_children("worker"), what="booted worker processes")
    killed_at = query(fault_cluster.pg_url, "SELECT now() AT TIME ZONE 'utc'")[0][0]
    for child in children:
        os.kill(child, signal.SIGKILL)
    figures = verify(fault_cluster, started)
    noticed = query(
        fault_cluster.pg_url,
        """SELECT workflow_id, min(occurred_at) FROM events
           WHERE type = 'timer-fired' AND data::jsonb ->> 'kind' = 'heartbeat' AND data::jsonb ->> 'attempt' = '1'
           GROUP BY workflow_id""",
    )
    assert len(noticed) == 6, f"not every dead attempt timed out: {noticed}"
    delays = sorted((at - killed_at).total_seconds() for _, at in noticed)
    assert delays[-1] <= heartbeat_s + 5, f"noticed after {delays} s"
    outputs = query(fault_cluster.pg_url, "SELECT output FROM activities WHERE workflow_id = ANY(%s)", list(started))
    resumed = [json.loads(o)["resumed_from"] for (o,) in outputs]
    assert all(r >= 1 for r in resumed), f"a retry started over: {resumed}"
    print(f"\nHEARTBEAT worker SIGKILL noticed after {delays[0]:.1f}-{delays[-1]:.1f} s (heartbeat_s {heartbeat_s})")
    report("worker SIGKILL during heartbeats", figures, len(children), t0)
