"""The network lies (issue 26): RabbitMQ blocks publishers. A memory alarm
(``rabbitmqctl set_vm_memory_high_watermark 0``) is set under load for a few seconds, then
cleared; the previous watermark is restored whatever happens (:func:`memory_alarm`).

While it lasts, RabbitMQ reads nothing more from a connection once it has published. So
every publisher has a bound of its own (``FLOW_BROKER_BLOCKED_TIMEOUT_S``, 3 s): the API
answers a start it cannot send 503 with ``Retry-After`` and stores nothing, ``/health``
says the broker is blocked, the engine keeps its decisions committed and owed in the
outbox, workers hold their reports. Afterwards every workflow accepted (201) has reached
its expected end, nothing stored for a 503, nothing twice.

The alarm is broker-wide: it blocks the publishers of every test on the machine, so this
module is ``exclusive`` (it runs alone, after the parallel phase)."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from flow.testing import Cluster, query, queue_depth
from flow.testing.services import memory_alarm, rabbitmq_alarms
from tests.faults.conftest import BATCH, report, verify, wait_for
from tests.faults.test_network import request

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.exclusive]

#: FLOW_BROKER_BLOCKED_TIMEOUT_S (the default): the longest a publish waits blocked.
BLOCKED_S = 3.0
#: FLOW_PARTITIONS of the cluster (flow.testing.cluster.FAST_RECOVERY).
PARTITIONS = 16
#: A busy machine's slack on top of a bound.
SLACK_S = 4.0


def test_while_rabbitmq_blocks_publishers_the_api_answers_503_and_everything_accepted_finishes_after(
    fault_cluster: Cluster,
):
    t0 = time.monotonic()
    # PostgreSQL's 100 connections are shared by every test on the machine: the API needs
    # no more than the starts this test sends at once.
    fault_cluster.start(engines=1, workers=2, api_env={"FLOW_DB_POOL_SIZE": "6"})
    base = fault_cluster.url
    start = ("POST", f"{base}/workflows", {"name": "LongNap", "input_data": {}})
    with memory_alarm() as alarm:
        # Long jobs that heartbeat every second: their workers publish throughout the alarm.
        started = fault_cluster.start_batch([*BATCH, "Heartbeating"], copies=4)
        alarm(True)  # with the batch in full swing: the engine and the workers publishing
        blocked_at = time.monotonic()
        status, _, health_s, health = request(f"{base}/health")
        assert status == 503 and health["broker"].startswith("blocked"), health
        assert health["database"] == "ok", health
        # A flood of starts: the first ones each gunicorn process sends wait out the bound,
        # stored (201, their engine starts them); once a process has seen the block it
        # refuses at once, storing nothing.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: request(start[1], start[0], start[2]), range(8)))
        answers += [request(start[1], start[0], start[2]) for _ in range(8)]
        for status, headers, took_s, body in answers:
            assert status in (201, 503), (status, body)
            assert took_s < BLOCKED_S + SLACK_S, f"a start answered {status} after {took_s:.1f} s"
            if status == 503:
                assert int(headers["retry-after"]) >= 1, headers
                assert body["title"] == "Broker blocked", body
        refused_s = [took_s for status, _, took_s, _ in answers if status == 503]
        assert len(refused_s) >= 8, f"only {len(refused_s)} of {len(answers)} starts refused"
        accepted = {body["id"]: "LongNap" for status, _, _, body in answers if status == 201}
        # The engine had decisions to send: committed, they wait in its outbox.
        wait_for(
            lambda: "RabbitMQ blocks the engine's publishes" in fault_cluster.procs.log("engine-0"),
            timeout_s=BLOCKED_S + SLACK_S,
            what="the engine to see the block",
        )
        owed = query(fault_cluster.pg_url, "SELECT count(*) FROM outbox")[0][0]
        alarm_s = time.monotonic() - blocked_at
        alarm(False)
        cleared_at = time.monotonic()

    def accepts() -> bool:
        status, _, _, body = request(start[1], start[0], start[2])
        if status == 201:
            accepted[body["id"]] = "LongNap"
        return status == 201

    wait_for(accepts, timeout_s=30, what="the API to take starts again")
    starts_again_s = time.monotonic() - cleared_at
    wait_for(lambda: request(f"{base}/health")[0] == 200, timeout_s=30, what="/health to be green again")

    # Nothing stored for a 503: check_settled refuses any workflow that was not accepted.
    figures = verify(fault_cluster, started | accepted)
    prefix = fault_cluster.prefix
    queues = [f"{prefix}.activities", f"{prefix}.engine", *(f"{prefix}.engine.{p}" for p in range(PARTITIONS))]
    wait_for(lambda: all(queue_depth(q) == 0 for q in queues), what="the queues to drain")
    drained_s = time.monotonic() - cleared_at
    assert "Traceback" not in fault_cluster.procs.log("api")
    waited = sum(fault_cluster.procs.log(w).count(" waits: RabbitMQ blocks") for w in ("worker-0", "worker-1"))
    assert rabbitmq_alarms() == "[]"  # rabbitmqctl takes seconds on a busy machine: not in the figures
    report(
        f"RabbitMQ blocked publishers for {alarm_s:.1f} s ({owed} messages owed in the outbox, "
        f"{waited} refusals of worker reports, each sent later; "
        f"{len(refused_s)} of {len(answers)} starts refused 503 "
        f"in at most {max(refused_s):.2f} s, the others 201 in at most {max(a[2] for a in answers):.1f} s; "
        f"/health said blocked in {health_s:.1f} s; starts taken {starts_again_s:.1f} s and everything accepted "
        f"ended, queues drained, {drained_s:.1f} s after the alarm cleared)",
        figures,
        1,
        t0,
    )
