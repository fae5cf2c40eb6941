"""Cron schedules with two engine processes on PostgreSQL and RabbitMQ: every tick starts
exactly one workflow, whichever engine fires it, and when one engine is SIGKILLed its
schedules' ticks are caught up by the other without a gap or a double."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from datetime import timedelta

import pytest

from flow.core.partitions import partition_of
from flow.core.schedules import tick_workflow_id
from flow.testing import Cluster, check_settled
from flow.testing.services import query
from tests.faults.conftest import wait_for
from tests.faults.test_engines import PARTITIONS, _children

pytestmark = [pytest.mark.services, pytest.mark.faults]

TICK = {"name": "Tick", "activities": [{"name": "NoopActivity"}]}
#: Every second, each tick its own workflow whatever the previous one is doing, and a
#: catch-up window wider than a takeover.
SCHEDULE = {"workflow": "Tick", "cron": "* * * * * *", "overlap": "allow_all", "catch_up_s": 120}


def api(cluster: Cluster, method: str, path: str, body: object = None) -> dict:
    request = urllib.request.Request(
        f"{cluster.url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the cluster's own API
        return json.loads(response.read() or b"null")


def pick_names(owners: dict[int, str | None], per_engine: int) -> list[str]:
    """Schedule names whose partitions are spread over the live engines, ``per_engine`` each."""
    chosen: dict[str, list[str]] = {owner: [] for owner in set(owners.values()) if owner}
    for i in range(1000):
        name = f"tick-{i}"
        owner = owners[partition_of(name, PARTITIONS)]
        if owner and len(chosen[owner]) < per_engine:
            chosen[owner].append(name)
    return sorted(n for names in chosen.values() for n in names)


def fired(cluster: Cluster, names: list[str]) -> dict[str, int]:
    rows = query(cluster.pg_url, "SELECT name, fired FROM schedules WHERE name = ANY(%s)", names)
    return dict(rows)


def test_two_engines_start_each_tick_exactly_once_through_a_sigkill(fault_cluster: Cluster):
    fault_cluster.start(engines=2)
    wait_for(lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8], what="an even split")
    api(fault_cluster, "PUT", "/definitions/Tick", TICK)
    names = pick_names(fault_cluster.owners(), per_engine=2)
    assert len(names) == 4
    for name in names:
        api(fault_cluster, "PUT", f"/schedules/{name}", SCHEDULE)
    wait_for(
        lambda: all(n >= 5 for n in fired(fault_cluster, names).values()) and len(fired(fault_cluster, names)) == 4,
        timeout_s=60,
        what="every schedule to fire five ticks",
    )
    # Both engines fired schedules.
    for engine in ("engine-0", "engine-1"):
        assert "schedule tick-" in fault_cluster.procs.log(engine), f"{engine} fired no schedule"

    # SIGKILL engine-1 (the supervisor restarts it): the other engine takes its
    # partitions over and fires their ticks, the missed ones included.
    [child] = _children(fault_cluster, "engine-1")
    os.kill(child, signal.SIGKILL)
    before = fired(fault_cluster, names)
    wait_for(
        lambda: all(n >= before[name] + 8 for name, n in fired(fault_cluster, names).items()),
        timeout_s=90,
        what="every schedule to fire eight more ticks after the SIGKILL",
    )
    for name in names:
        api(fault_cluster, "POST", f"/schedules/{name}/pause")

    # Every tick from a schedule's first to its last has exactly one workflow, whose id
    # is the tick's; nothing was skipped; no other workflow of Tick exists.
    # The runs and the counters are read in one statement (one snapshot): a pass still in
    # hand when the pause committed records and counts its runs in one transaction.
    started: dict[str, str] = {}
    for name in names:
        [(fired_count, skipped, ticks)] = query(
            fault_cluster.pg_url,
            "SELECT fired, skipped, ARRAY(SELECT tick_at FROM schedule_runs r WHERE r.schedule = s.name"
            " AND r.trigger = 'cron' ORDER BY tick_at) FROM schedules s WHERE name = %s",
            name,
        )
        assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))], f"{name}: a tick is missing"
        for tick in ticks:
            started[tick_workflow_id(name, tick)] = "Tick"
        assert (fired_count, skipped) == (len(ticks), 0), name
    stored = {row[0] for row in query(fault_cluster.pg_url, "SELECT id FROM workflows WHERE definition_name = 'Tick'")}
    assert stored == set(started)
    check_settled(fault_cluster.pg_url, started, {"Tick": "Finished"}, timeout_s=120)
