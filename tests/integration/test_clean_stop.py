"""A ``dramatiq flow.actors`` process stopped by an ordinary SIGTERM logs nothing above INFO."""

from __future__ import annotations

import json
import os
import signal
import time

import dramatiq
import pytest

from flow.process.broker import QuietlyClosingRabbitmqBroker
from flow.testing import AMQP_URL, Processes, migrate, query
from tests.conftest import wait_for

pytestmark = pytest.mark.services

#: RabbitMQ drops a connection that missed its heartbeats for about two intervals.
HEARTBEAT_S = 2


def test_a_sigterm_after_idle_time_stops_without_error_lines(pg_url, queue_prefix, tmp_path):
    definitions = tmp_path / "workflows"
    definitions.mkdir()
    (definitions / "quick.json").write_text(
        json.dumps({"name": "Quick", "activities": [{"name": "NoopActivity"}, {"name": "NoopActivity"}]})
    )
    procs = Processes(
        tmp_path,
        {
            "FLOW_DATABASE_URL": pg_url,
            # A short heartbeat, so that what happens to a worker idle for minutes happens in seconds.
            "FLOW_BROKER_URL": f"{AMQP_URL}?heartbeat={HEARTBEAT_S}",
            "FLOW_QUEUE_PREFIX": queue_prefix,
            "FLOW_DEFINITIONS_DIR": str(definitions),
            "FLOW_PARTITIONS": "4",
        },
    )
    migrate(procs.env)
    worker = procs.dramatiq("flow")  # engine and worker in one process, as `dramatiq flow.actors` runs
    try:
        wait_for(lambda: "engine running" in procs.log("flow"), timeout_s=60, what="the engine")
        broker = QuietlyClosingRabbitmqBroker(url=AMQP_URL, confirm_delivery=True, blocked_timeout_s=3.0)
        start = {"name": "Quick", "input_data": {}}
        for _ in range(3):
            message = dramatiq.Message(
                queue_name=f"{queue_prefix}.engine", actor_name="flow.start_workflow", args=(), kwargs=start, options={}
            )
            broker.enqueue(message)
        broker.close()
        wait_for(
            lambda: query(pg_url, "SELECT count(*) FROM workflows WHERE status = 'Finished'") == [(3,)],
            timeout_s=60,
            what="the workflows to finish",
        )
        # Idle while RabbitMQ drops the connections the worker threads published their
        # results on (nothing to poll for: the process notices only when it closes them).
        time.sleep(5 * HEARTBEAT_S)
        os.kill(worker.pid, signal.SIGTERM)  # the master only, as `kill` or a supervisor does
        assert worker.wait(60) == 0
    finally:
        procs.stop_all()
    log = procs.log("flow")
    assert "Worker has been shut down" in log and "stopped" in log
    noisy = [line for line in log.splitlines() if "ERROR" in line or "CRITICAL" in line or "Traceback" in line]
    assert noisy == []
