"""Faults injected into real processes on real PostgreSQL and RabbitMQ; afterwards every
workflow has reached its expected end, nothing is stuck, nothing happened twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import dramatiq
import pytest
import requests
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.testing import AMQP_URL, Cluster, query, queue_depth
from tests.conftest import wait_for
from tests.faults.conftest import BATCH, verify

pytestmark = [pytest.mark.services, pytest.mark.faults]


def report(scenario: str, figures: dict[str, int], faults: int, started_at: float) -> None:
    print(
        f"\nFAULTS {scenario}: {figures['workflows']} workflows, {faults} faults injected, "
        f"lost {figures['lost']}, stuck {figures['stuck']}, duplicated {figures['duplicated']}, "
        f"{time.monotonic() - started_at:.1f} s"
    )


def test_sigkill_a_worker_mid_activity_several_times(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start(workers=2)
    started = fault_cluster.start_batch(BATCH, copies=10)
    kills = 0
    for round_ in range(3):
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


def test_sigkill_the_engine_between_commit_and_send(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start(engine_env={"FLOW_TEST_FAULTS": "kill:after-commit:0.05"})
    started = fault_cluster.start_batch(BATCH, copies=6)
    figures = verify(fault_cluster, started, timeout_s=180)
    kills = fault_cluster.restarts["engine-0"]
    report("engine SIGKILL after commit", figures, kills, t0)
    assert kills >= 1, "the fault never fired: the scenario proved nothing"


def test_sigkill_the_engine_at_random_points_under_load(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start()
    started = fault_cluster.start_batch(BATCH, copies=10)
    kills = 0
    for _ in range(3):
        time.sleep(random.uniform(0.2, 1.0))
        [child] = wait_for(lambda: fault_cluster.booted_children("engine"), what="a booted engine process")
        os.kill(child, signal.SIGKILL)
        kills += 1
        wait_for(lambda k=kills: fault_cluster.restarts["engine-0"] >= k, what="the engine to be restarted")
    assert kills == 3
    report("engine SIGKILL at random points", verify(fault_cluster, started, timeout_s=180), kills, t0)


def test_random_database_errors_in_the_engine(fault_cluster: Cluster):
    t0 = time.monotonic()
    # 5% of the engine's store operations (group commits, loads; well over 200 in this
    # batch): the chance that none fails is below 1 in 30,000.
    fault_cluster.start(engine_env={"FLOW_TEST_FAULTS": "error:db:0.05"})
    started = fault_cluster.start_batch(BATCH, copies=8)
    figures = verify(fault_cluster, started, timeout_s=180)
    injected = sum(
        log.read_text(errors="replace").count("fault injected at db")
        for log in fault_cluster.procs.log_dir.glob("engine-0*.log")
    )
    report("random database errors (5%)", figures, injected, t0)
    assert injected >= 1, "no database error was injected: the scenario proved nothing"


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


def _pg_cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".")])
    return versions[-1], "main"


def test_restart_rabbitmq_under_load(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start()
    started = fault_cluster.start_batch(BATCH, copies=8)
    wait_for(lambda: query(fault_cluster.pg_url, "SELECT count(*) FROM activities WHERE status = 'Started'")[0][0])
    try:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        # Accepted while the broker is down: committed with its start in the outbox.
        during = fault_cluster.start_batch(["SlowSequence", "FanOut"], copies=2)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    report("RabbitMQ restart", verify(fault_cluster, started | during, timeout_s=180), 1, t0)


def test_restart_postgresql_under_load(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start()
    started = fault_cluster.start_batch(BATCH, copies=8)
    wait_for(lambda: query(fault_cluster.pg_url, "SELECT count(*) FROM activities WHERE status = 'Started'")[0][0])
    version, cluster = _pg_cluster()
    restart = subprocess.Popen(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "restart", "-m", "fast"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    codes: list[int] = []

    def ask() -> int | None:
        try:
            codes.append(requests.get(f"{fault_cluster.url}/workflows", timeout=5).status_code)
        except requests.RequestException:
            return None
        return codes[-1]

    # While it restarts the API answers (503 while the database is down), never 500;
    # afterwards it answers 200 again.
    deadline = time.monotonic() + 120
    while restart.poll() is None and time.monotonic() < deadline:
        ask()
        time.sleep(0.05)
    assert restart.wait(120) == 0, restart.stdout.read() if restart.stdout else ""
    assert {200, 503} & set(codes), f"no request was answered during the restart: {codes}"
    wait_for(lambda: ask() == 200, timeout_s=60, what="the API to answer 200 after the restart")
    assert 500 not in codes, codes
    report("PostgreSQL restart", verify(fault_cluster, started, timeout_s=180), 1, t0)


def test_a_wait_longer_than_the_consumer_timeout_fires_exactly_once(fault_cluster: Cluster):
    """RabbitMQ closes a channel that holds an unacknowledged delivery longer than its
    ``consumer_timeout``; timers therefore never wait in the broker, but in the database."""
    t0 = time.monotonic()
    subprocess.run(
        ["rabbitmqctl", "eval", "application:set_env(rabbit, consumer_timeout, 3000)."], check=True, capture_output=True
    )
    try:
        fault_cluster.start()
        started = fault_cluster.start_batch(["LongWait"], copies=20)
        # While the 20 retry timers wait, they are rows; nothing sits in any delay queue.
        wait_for(lambda: query(fault_cluster.pg_url, "SELECT count(*) FROM timers")[0][0] == 20, timeout_s=30)
        for partition in range(16):
            assert queue_depth(f"{fault_cluster.prefix}.engine.{partition}.DQ") == 0
        figures = verify(fault_cluster, started, timeout_s=60)
        fired = query(
            fault_cluster.pg_url,
            """SELECT count(*) FROM events WHERE type = 'timer-fired'
               AND NOT coalesce((data::jsonb->>'stale')::boolean, false)""",
        )[0][0]
        assert fired == 20  # one retry timer per workflow, each fired once
        assert query(fault_cluster.pg_url, "SELECT count(*) FROM timers")[0][0] == 0
        report("waits longer than consumer_timeout", figures, 0, t0)
    finally:
        subprocess.run(
            ["rabbitmqctl", "eval", "application:set_env(rabbit, consumer_timeout, 1800000)."],
            check=True,
            capture_output=True,
        )


def test_sigkill_the_engine_while_workflows_wait_on_signals_and_sleep(fault_cluster: Cluster):
    """200 workflows wait for a signal and 100 sleep; the engine is SIGKILLed while they
    wait, and again while the signals arrive: every wait takes its signal once, every
    sleep wakes once, every workflow finishes."""
    t0 = time.monotonic()
    fault_cluster.start()
    started = fault_cluster.start_batch(["AwaitApproval"], copies=200) | fault_cluster.start_batch(
        ["LongNap"], copies=100
    )
    # Every wait is waiting (the sleeps are asleep or awake by now: either way they must end once).
    waiting = "SELECT count(*) FROM activities WHERE status = 'Waiting' AND name = 'wait'"
    wait_for(lambda: query(fault_cluster.pg_url, waiting)[0][0] == 200, timeout_s=120, what="the 200 waits")
    kills = 0
    for signalled in (range(0, 100), range(100, 200)):
        [child] = wait_for(lambda: fault_cluster.booted_children("engine"), what="a booted engine process")
        os.kill(child, signal.SIGKILL)
        kills += 1
        approvals = [w for w, name in started.items() if name == "AwaitApproval"]
        for workflow_id in (approvals[i] for i in signalled):
            # The API takes signals while the engine is down: they wait in its queue.
            response = requests.post(
                f"{fault_cluster.url}/workflows/{workflow_id}/signals/approved",
                json={"payload": {"n": 1}},
                headers={"Idempotency-Key": f"approve-{workflow_id}"},
                timeout=30,
            )
            assert response.status_code == 202, response.text
        wait_for(lambda k=kills: fault_cluster.restarts["engine-0"] >= k, what="the engine to be restarted")
    figures = verify(fault_cluster, started, timeout_s=240)
    took = query(
        fault_cluster.pg_url,
        """SELECT count(*) FROM events WHERE type = 'end-wait' GROUP BY workflow_id HAVING count(*) <> 1""",
    )
    assert took == [], "a wait took no signal, or more than one"
    report("engine SIGKILL while 200 wait on signals and 100 sleep", figures, kills, t0)


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
