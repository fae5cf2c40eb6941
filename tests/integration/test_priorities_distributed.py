"""Priorities on real RabbitMQ: an urgent attempt overtakes a backlog already sent to a
worker pool's queue (issue 23's "1,000 priority-5 activities waiting, then 10 priority-1:
all 10 start before the next 20 priority-5"), and a pool queue that an earlier release
declared without priorities keeps working, first in first out, for the engine and the
workers alike."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
import pika.exceptions
import psycopg2
import pytest
from dramatiq.common import xq_name

from flow.clock import utcnow
from flow.core.pools import MAX_PRIORITY, PRIORITY_ARGUMENT
from flow.engine.rabbit import RabbitTransport
from flow.engine.transport import DEAD_MESSAGE_TTL_MS, dramatiq_queue_arguments
from flow.process.broker import QuietlyClosingRabbitmqBroker
from flow.testing import AMQP_URL, Cluster, new_queue_prefix
from flow.testing.cluster import fresh_cluster
from flow.testing.services import queue_depth
from flow.wire.outgoing import Outgoing
from tests.conftest import wait_for

pytestmark = pytest.mark.services

BACKLOG, URGENT, OVERTAKEN_AT_MOST = 1000, 10, 20
DEFINITIONS = {
    "Work": {
        "name": "Work",
        "config": {"retry": {"max_attempts": 1}},
        "activities": [{"id": "work", "name": "DoSomethingActivity", "config": {"sleep_s": 0.05}}],
    }
}


@pytest.fixture
def cluster(services, tmp_path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path, DEFINITIONS, activity_packages="activities") as running:
        running.start(engines=1, workers=0)  # the backlog is sent before any worker takes it
        yield running


def start(cluster: Cluster, priority: int) -> str:
    """Start a Work workflow of ``priority``; a 503 (the shared database refused a connection:
    other tests' clusters run beside this one) is asked again, as a client would."""
    body = json.dumps({"name": "Work", "input_data": {}, "priority": priority}).encode()

    def started() -> str | None:
        request = urllib.request.Request(
            f"{cluster.url}/workflows", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the cluster's own API
                return str(json.load(response)["id"])
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            return None

    return str(wait_for(started, timeout_s=60, every_s=0.5, what="a start the API accepts"))


Steps = Callable[[], list[tuple[str, int, Any, Any, Any]]]


@pytest.fixture
def steps(cluster: Cluster) -> Iterator[Steps]:
    """Reads ``(workflow id, priority, scheduled_at, started_at, status)`` of every workflow's
    step, on one connection kept for the test (the shared server may refuse new ones)."""
    connection = psycopg2.connect(cluster.pg_url)
    connection.autocommit = True

    def read() -> list[tuple[str, int, Any, Any, Any]]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT w.id, w.priority, a.scheduled_at, a.started_at, a.status FROM workflows w "
                "JOIN activities a ON a.workflow_id = w.id"
            )
            return list(cursor.fetchall())

    yield read
    connection.close()


def test_urgent_attempts_overtake_a_backlog_already_in_the_pools_queue(cluster, steps):
    queue = f"{cluster.prefix}.activities"
    with ThreadPoolExecutor(4) as pool:
        backlog = set(pool.map(lambda _: start(cluster, 5), range(BACKLOG)))
    wait_for(lambda: queue_depth(queue) >= BACKLOG, timeout_s=180, what="the backlog sent to the pool's queue")
    # One worker process, 4 threads: Dramatiq prefetches 2 per thread, 8 messages.
    cluster.add("worker-0", queue)

    def ended_of_backlog() -> int:
        return sum(1 for w, _, _, _, status in steps() if w in backlog and status == "Succeeded")

    wait_for(lambda: ended_of_backlog() >= 50, timeout_s=120, what="the worker to be busy with the backlog")
    # The urgent attempts must be in the queue before a worker takes the next message: sent
    # while a worker runs, they reach the queue whenever a loaded engine gets to publish them
    # (a second on a busy machine, 60 backlog starts), which measures the engine, not the
    # queue's order. So the worker stops (its prefetched messages go back to the queue, with
    # their priority), the urgent ones are sent, and a worker starts again.
    cluster.unsupervise("worker-0")
    cluster.procs.stop("worker-0")
    wait_for(
        lambda: ended_of_backlog() + queue_depth(queue) == BACKLOG,
        timeout_s=60,
        what="each backlog attempt committed as done or back in the queue",
    )
    waiting = queue_depth(queue)
    assert waiting > 10 * OVERTAKEN_AT_MOST, (
        f"the backlog ran out too soon ({waiting} left) for the test to mean anything"
    )
    urgent = {start(cluster, 1) for _ in range(URGENT)}
    wait_for(lambda: queue_depth(queue) == waiting + URGENT, timeout_s=120, what="the urgent attempts in the queue")
    restarted = utcnow()
    cluster.add("worker-1", queue)

    def urgent_done() -> list[tuple[str, int, Any, Any, Any]] | None:
        rows = [r for r in steps() if r[0] in urgent]
        return rows if all(r[4] == "Succeeded" for r in rows) and len(rows) == URGENT else None

    done = wait_for(urgent_done, timeout_s=120, what="the urgent workflows to finish")
    last_urgent = max(started for _, _, _, started, _ in done)
    overtaken_by = sorted(
        started for w, _, _, started, _ in steps() if w in backlog and started and restarted < started < last_urgent
    )
    # Only what the worker's threads took beside the last urgent ones may start in between.
    assert len(overtaken_by) < OVERTAKEN_AT_MOST, (len(overtaken_by), restarted, last_urgent)
    print(f"priority-5 attempts started before the last urgent one: {len(overtaken_by)} of {waiting} waiting")
    assert ended_of_backlog() < BACKLOG  # the backlog was still there when the urgent ones were done


def test_a_pool_queue_declared_before_priorities_is_used_first_in_first_out(services):
    with new_queue_prefix(pools=("gpu",)) as prefix:
        old, new = f"{prefix}.activities", f"{prefix}.activities.gpu"
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            # As the release before priorities declared it (Dramatiq's arguments only).
            connection.channel().queue_declare(old, durable=True, arguments=dramatiq_queue_arguments(old))
            connection.channel().queue_declare(
                xq_name(old), durable=True, arguments={"x-message-ttl": DEAD_MESSAGE_TTL_MS}
            )

            # A worker's broker: the old queue as it is, a new pool queue with priorities.
            broker = QuietlyClosingRabbitmqBroker(
                url=AMQP_URL, confirm_delivery=True, blocked_timeout_s=10.0, activity_queue=old
            )
            try:
                broker.declare_queue(old, ensure=True)
                broker.declare_queue(new, ensure=True)
                assert broker.fifo_queues == {old}
            finally:
                broker.close()
            channel = connection.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                channel.queue_declare(new, durable=True, arguments=dramatiq_queue_arguments(new))
            assert refused.value.reply_code == 406 and PRIORITY_ARGUMENT in refused.value.reply_text
            priority = {**dramatiq_queue_arguments(new), PRIORITY_ARGUMENT: MAX_PRIORITY}
            connection.channel().queue_declare(new, durable=True, arguments=priority)  # the same: accepted

            # The engine's transport: it connects, and publishes to both, with priorities.
            transport = RabbitTransport(AMQP_URL, declare=(old, new), activity_queue=old)
            results: list[tuple[list[str], list[str]]] = []
            transport.start(lambda delivery: None, lambda: None)
            try:
                assert transport.wait_ready(30)
                assert transport.fifo_queues == {old}
                sent = [Outgoing(q, "flow.run_activity", {}, 0, utcnow(), priority=1) for q in (old, new)]
                transport.publish(sent, lambda ok, failed: results.append((sorted(ok), failed)))
                wait_for(lambda: results, timeout_s=30, what="the publish confirms")
                assert results == [(sorted(o.id for o in sent), [])]
            finally:
                transport.stop()
            assert queue_depth(old) == 1 and queue_depth(new) == 1
        finally:
            connection.close()
