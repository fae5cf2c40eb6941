"""Several engines on real PostgreSQL and RabbitMQ: partitions shared by lease, taken over
from a dead engine, fenced from a paused one, rebalanced when one joins. Afterwards every
workflow has reached its expected end, nothing is stuck, nothing happened twice."""

from __future__ import annotations

import os
import signal
import time

import pytest

from flow.testing import Cluster
from tests.faults.conftest import BATCH, report, verify, wait_for

pytestmark = [pytest.mark.services, pytest.mark.faults]

PARTITIONS = 16
LEASE_S = 3.0


def engine_queue(cluster: Cluster) -> str:
    return f"{cluster.prefix}.engine"


def test_two_engines_share_the_partitions_and_never_conflict(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start(engines=2)
    wait_for(lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8], what="an even split")
    started = fault_cluster.start_batch(BATCH, copies=8)
    figures = verify(fault_cluster, started)
    # Each workflow has one owner: no commit was refused by fencing or by the version check.
    assert fault_cluster.refused_commits() == 0
    assert set(fault_cluster.owners().values()) == set(fault_cluster.engines())
    report("two engines", figures, 0, t0)


def test_sigkill_one_of_two_engines_its_partitions_are_taken_over(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start(engines=2)
    wait_for(lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8], what="an even split")
    started = fault_cluster.start_batch(BATCH, copies=10)
    # Kill engine-1 for good, under load (it is not restarted: engine-0 must take over).
    fault_cluster.unsupervise("engine-1")
    [child] = _children(fault_cluster, "engine-1")
    victim_id = next(e for e in fault_cluster.engines() if int(e.split(":")[1]) == child)
    os.kill(child, signal.SIGKILL)
    killed_at = time.monotonic()

    def one_survivor() -> bool:
        owners = set(fault_cluster.owners().values())
        return len(owners) == 1 and None not in owners and victim_id not in owners

    wait_for(one_survivor, timeout_s=LEASE_S + 30, what="the other engine holding every partition")
    took_over_s = time.monotonic() - killed_at
    assert took_over_s <= LEASE_S + 5, f"takeover took {took_over_s:.1f} s"
    figures = verify(fault_cluster, started, timeout_s=120)
    report(f"SIGKILL one of two engines (taken over in {took_over_s:.1f} s)", figures, 1, t0)


def test_a_paused_engine_is_fenced_out_and_commits_nothing(fault_cluster: Cluster):
    """SIGSTOP an engine past its lease: the other takes its partitions (bumping their
    epochs); on SIGCONT the old owner finds its leases gone, and whatever it was about to
    commit is refused by the epoch fence."""
    t0 = time.monotonic()
    fault_cluster.start(engines=2)
    wait_for(lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8], what="an even split")
    started = fault_cluster.start_batch(BATCH, copies=10)
    fault_cluster.unsupervise("engine-1")
    [child] = _children(fault_cluster, "engine-1")
    paused_id = next(e for e in fault_cluster.engines() if int(e.split(":")[1]) == child)
    mine = {p for p, owner in fault_cluster.owners().items() if owner == paused_id}
    assert mine
    os.kill(child, signal.SIGSTOP)
    try:
        wait_for(
            lambda: all(o not in (None, paused_id) for p, o in fault_cluster.owners().items() if p in mine),
            timeout_s=LEASE_S * 6,
            what="the other engine to take the paused engine's partitions",
        )
    finally:
        os.kill(child, signal.SIGCONT)
    log = lambda: fault_cluster.procs.log("engine-1")  # noqa: E731
    wait_for(lambda: "lost the lease of partition" in log(), timeout_s=30, what="the paused engine to notice")
    figures = verify(fault_cluster, started, timeout_s=120)
    refused = log().count("refused (fenced)")
    report(f"SIGSTOP an engine past its lease ({refused} of its commits refused by fencing)", figures, 1, t0)


def test_a_third_engine_joins_under_load_and_the_partitions_rebalance(fault_cluster: Cluster):
    t0 = time.monotonic()
    fault_cluster.start(engines=2)
    wait_for(lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8], what="an even split")
    started = fault_cluster.start_batch(BATCH, copies=6)
    fault_cluster.add("engine-2", engine_queue(fault_cluster))
    more = fault_cluster.start_batch(BATCH, copies=6)
    wait_for(
        lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [5, 5, 6],
        timeout_s=LEASE_S * 10,
        what="16 partitions shared by three engines",
    )
    figures = verify(fault_cluster, started | more, timeout_s=120)
    # A partition handed over gracefully is released only after its transitions commit.
    assert fault_cluster.refused_commits() == 0
    report("a third engine joins under load", figures, 0, t0)


def _children(cluster: Cluster, name: str) -> list[int]:
    from flow.testing import child_pids

    return sorted(child_pids(cluster.procs.procs[name].pid))
