"""The engine killed (between its commit and its send, at random points, while workflows
wait) or its database failing at random, on real PostgreSQL and RabbitMQ: afterwards
every workflow has reached its expected end, nothing is stuck, nothing happened twice."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
import requests

from flow.testing import Cluster, query
from tests.faults.conftest import BATCH, report, verify, wait_for

pytestmark = [pytest.mark.services, pytest.mark.faults]


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
