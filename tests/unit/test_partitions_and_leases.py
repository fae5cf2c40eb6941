"""Partitions and the lease plan: pure functions, every engine computing the same answer."""

from __future__ import annotations

import os
import socket
import zlib

import pytest

from flow.core.partitions import partition_of, partition_queue, queue_partition
from flow.engine.leases import LeasePlan, dead_local_owners, fair_share, plan


def test_a_workflow_always_lands_in_the_same_partition_in_every_process():
    # CRC-32 is the same in every language: a router written elsewhere agrees.
    workflow_id = "3ccfdd1b-540c-4180-a8c0-6739cd56c3be"
    assert partition_of(workflow_id, 64) == zlib.crc32(workflow_id.encode()) % 64
    assert partition_of(workflow_id, 64) == partition_of(workflow_id, 64)


def test_partitions_are_spread_evenly():
    counts = [0] * 16
    for i in range(16_000):
        counts[partition_of(f"wf-{i}", 16)] += 1
    assert min(counts) > 800 and max(counts) < 1200


@pytest.mark.parametrize("queue", ["flow.engine.0", "flow.engine.63", "flow.engine.7.DQ"])
def test_a_partition_queue_names_its_partition(queue):
    assert partition_queue("flow", queue_partition("flow", queue)) == queue.removesuffix(".DQ")


@pytest.mark.parametrize("queue", ["flow.engine", "flow.activities", "other.engine.1", "flow.engine.x"])
def test_other_queues_are_no_partitions(queue):
    assert queue_partition("flow", queue) is None


@pytest.mark.parametrize(
    ("partitions", "live", "shares"),
    [
        (64, ["a"], [64]),
        (64, ["a", "b"], [32, 32]),
        (64, ["a", "b", "c"], [22, 21, 21]),
        (64, ["a", "b", "c", "d"], [16, 16, 16, 16]),
        (3, ["a", "b", "c", "d"], [1, 1, 1, 0]),
    ],
)
def test_every_engine_computes_the_same_fair_split(partitions, live, shares):
    assert [fair_share(partitions, live, me) for me in live] == shares
    assert sum(fair_share(partitions, live, me) for me in live) == partitions


def test_an_engine_not_yet_seen_by_the_others_counts_itself():
    assert fair_share(64, ["a"], "b") == 32


@pytest.mark.parametrize(
    ("live", "held", "expected"),
    [
        (["a"], set(), LeasePlan(acquire=8)),
        (["a"], set(range(8)), LeasePlan()),
        (["a", "b"], set(range(8)), LeasePlan(release=(4, 5, 6, 7))),
        (["a", "b"], {0, 1}, LeasePlan(acquire=2)),
        (["a", "b", "c"], set(range(8)), LeasePlan(release=(3, 4, 5, 6, 7))),
    ],
)
def test_an_engine_gives_back_what_it_holds_beyond_its_share_and_asks_for_what_it_lacks(live, held, expected):
    assert plan(8, live, "a", held) == expected


def test_only_dead_processes_of_this_host_lose_their_leases_early():
    host = socket.gethostname()
    me = f"{host}:{os.getpid()}:aaaa"
    alive = f"{host}:1:bbbb"  # pid 1 always runs
    dead = f"{host}:{2**22 + 7}:cccc"  # above the pid range
    same_pid = f"{host}:{os.getpid()}:dddd"  # this pid, another engine: a previous life of this process
    elsewhere = f"another-host:{2**22 + 7}:eeee"
    assert dead_local_owners({me, alive, dead, same_pid, elsewhere, "garbage"}, me) == {dead, same_pid}
