"""The network lies (issue 26), on the broker's side: one engine of two and one worker of
two lose their link to RabbitMQ to a black hole (a :class:`flow.testing.proxy.FaultProxy`:
open, nothing passes, no RST) under load, then it heals.

AMQP heartbeats are what notice (2 s here, ``?heartbeat=2`` in the cut processes'
``FLOW_BROKER_URL``): RabbitMQ drops their connections and requeues what they held
unacknowledged, the engine's own heartbeat closes its side, it stops heartbeating and
renewing (so it no longer counts in the fair share) and the other engine takes its
partitions over once their leases run out; what it committed but could not get
confirmed stays in its outbox and is sent again. Nothing is acknowledged before it is
committed, so afterwards every workflow has reached its expected end, nothing twice.
Memory and disk alarms (RabbitMQ blocking publishers) are not here: they change the
broker every other test shares."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from flow.testing import AMQP_URL, Cluster, child_pids, queue_consumers
from flow.testing.proxy import FaultProxy
from tests.faults.conftest import BATCH, report, verify, wait_for

pytestmark = [pytest.mark.services, pytest.mark.faults]

HEARTBEAT_S = 2
LEASE_S = 3.0


@pytest.fixture
def amqp_proxy() -> Iterator[FaultProxy]:
    with FaultProxy.in_front_of(AMQP_URL) as proxy:
        yield proxy


def test_an_engine_and_a_worker_whose_broker_link_is_black_holed_are_noticed_and_nothing_is_lost(
    fault_cluster: Cluster, amqp_proxy: FaultProxy
):
    t0 = time.monotonic()
    cut = {"FLOW_BROKER_URL": amqp_proxy.url_for(AMQP_URL).rstrip("/") + f"/?heartbeat={HEARTBEAT_S}"}
    fault_cluster.start(engines=1, workers=1)
    engines_queue, activities = f"{fault_cluster.prefix}.engine", f"{fault_cluster.prefix}.activities"
    fault_cluster.add("engine-1", engines_queue, env=cut)
    fault_cluster.add("worker-1", activities, env=cut)
    wait_for(lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8], what="an even split")
    wait_for(lambda: queue_consumers(activities) == 2, what="both workers consuming")
    started = fault_cluster.start_batch(BATCH, copies=8)
    cut_id = next(
        e
        for e in fault_cluster.engines()
        if int(e.split(":")[1]) in child_pids(fault_cluster.procs.procs["engine-1"].pid)
    )
    wait_for(lambda: "Started" in str(_statuses(fault_cluster)), what="activities running")

    amqp_proxy.black_hole()
    cut_at = time.monotonic()
    wait_for(lambda: queue_consumers(activities) == 1, timeout_s=60, what="RabbitMQ to drop the silent worker")
    dropped_s = time.monotonic() - cut_at
    wait_for(
        lambda: set(fault_cluster.owners().values()) == {next(e for e in fault_cluster.engines() if e != cut_id)},
        timeout_s=60,
        what="the connected engine to hold every partition",
    )
    taken_over_s = time.monotonic() - cut_at
    # RabbitMQ drops a silent client after two missed heartbeats. pika notices on its side
    # after heartbeat + 5 s to twice that (its check interval); the engine then stops
    # renewing once its broker has been gone a lease, and its leases run out within another.
    assert dropped_s <= 2 * HEARTBEAT_S + 5, f"the broker noticed after {dropped_s:.1f} s"
    bound_s = 2 * (HEARTBEAT_S + 5) + 2 * LEASE_S + LEASE_S / 3
    assert taken_over_s <= bound_s + 5, f"takeover took {taken_over_s:.1f} s (bound {bound_s:.0f} s)"

    amqp_proxy.heal()
    healed = time.monotonic()
    wait_for(lambda: queue_consumers(activities) == 2, timeout_s=60, what="the worker to reconnect")
    wait_for(
        lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8],
        timeout_s=60,
        what="the engine to reconnect and take its share back",
    )
    rejoined_s = time.monotonic() - healed
    figures = verify(fault_cluster, started)
    logs = fault_cluster.procs.log("engine-1")
    again = r"RabbitMQ confirms again; (\d+) message\(s\) it did not confirm"
    unconfirmed = sum(int(n) for n in re.findall(again, logs))
    report(
        f"an engine's and a worker's broker link black-holed (dropped by RabbitMQ in {dropped_s:.1f} s, heartbeat "
        f"{HEARTBEAT_S} s; partitions taken over in {taken_over_s:.1f} s; both back {rejoined_s:.1f} s after the heal; "
        f"{unconfirmed} messages left unconfirmed were sent again from the outbox)",
        figures,
        1,
        t0,
    )


def _statuses(cluster: Cluster) -> list[tuple[str]]:
    from flow.testing import query

    return query(cluster.pg_url, "SELECT DISTINCT status FROM activities")
