"""RabbitMQ and PostgreSQL restarted under load, and the broker's consumer timeout made
short: every workflow still reaches its expected end. These change the shared services
themselves, so they are ``exclusive``: run alone, after everything else
(project_tests.sh's phase 2)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from flow.testing import Cluster, query, queue_depth
from tests.faults.conftest import BATCH, report, verify, wait_for

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.exclusive]


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
