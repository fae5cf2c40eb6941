"""The network lies (issue 26): one component's link to PostgreSQL goes silent through a
:class:`flow.testing.proxy.FaultProxy` (a black hole: open, nothing passes, no RST; a
partition: new connections refused too), under load, and heals. The API answers 503
with ``Retry-After`` within its bound instead of hanging; an engine gives its partitions
up before their leases end and another takes them over; afterwards every workflow has
reached its expected end, nothing twice. The proxy restarts no service, so these run
beside the others (not ``exclusive``)."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from flow.testing import PG_DSN, Cluster
from flow.testing.proxy import FaultProxy
from tests.faults.conftest import BATCH, report, verify, wait_for

pytestmark = [pytest.mark.services, pytest.mark.faults]

#: The silent component's FLOW_DATABASE_TIMEOUT_S (FLOW_QUERY_TIMEOUT_S must be shorter).
SILENCE_S = 2.0
SILENT = {"FLOW_DATABASE_TIMEOUT_S": str(SILENCE_S), "FLOW_QUERY_TIMEOUT_S": "1"}
#: The cluster's FLOW_PARTITION_LEASE_S (flow.testing.cluster.FAST_RECOVERY).
LEASE_S = 3.0


@pytest.fixture
def pg_proxy() -> Iterator[FaultProxy]:
    with FaultProxy.in_front_of(PG_DSN) as proxy:
        yield proxy


def request(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict[str, str], float, Any]:
    """Status, headers, seconds taken and JSON body of one request (a client that waits 30 s at most)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - the cluster's own API
            status, headers, raw = response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
    return status, headers, time.monotonic() - started, json.loads(raw or b"null")


def test_the_api_answers_503_in_bounded_time_while_its_database_is_silent_and_recovers(
    fault_cluster: Cluster, pg_proxy: FaultProxy
):
    t0 = time.monotonic()
    fault_cluster.start(
        engines=1, workers=2, api_env={"FLOW_DATABASE_URL": pg_proxy.url_for(fault_cluster.pg_url), **SILENT}
    )
    started = fault_cluster.start_batch(BATCH, copies=3)
    some = next(iter(started))
    base = fault_cluster.url
    calls = [
        ("GET", f"{base}/workflows", None),
        ("GET", f"{base}/workflows/{some}", None),
        ("GET", f"{base}/workflows/{some}/events", None),
        ("GET", f"{base}/definitions", None),
        ("POST", f"{base}/workflows", {"name": "Nap", "input_data": {}}),
        ("GET", f"{base}/health", None),
    ] * 3
    recoveries, slowest_s = [], 0.0
    for fault in (pg_proxy.black_hole, pg_proxy.partition):
        fault()
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            answers = list(pool.map(lambda call: request(call[1], call[0], call[2]), calls))
        for (method, url, _), (status, headers, took_s, _) in zip(calls, answers, strict=True):
            what = f"{fault.__name__}: {method} {url.removeprefix(base)}"
            assert status == 503, f"{what} answered {status}"
            assert "retry-after" in headers, what
            # One wait on the database, bounded by FLOW_DATABASE_TIMEOUT_S, plus a busy machine's slack.
            assert took_s < SILENCE_S + 4, f"{what} took {took_s:.1f} s"
            slowest_s = max(slowest_s, took_s)
        # /health says what is down: the database, not the broker.
        health = request(f"{base}/health")[3]
        assert health["status"] == "unavailable" and health["database"] != "ok" and health["broker"] == "ok", health
        pg_proxy.heal()
        healed = time.monotonic()
        wait_for(lambda: request(f"{base}/health")[0] == 200, timeout_s=30, what="the API to see its database again")
        recoveries.append(time.monotonic() - healed)
    more = fault_cluster.start_batch(["Nap"], copies=2)  # starts work again, with no restart
    figures = verify(fault_cluster, started | more)
    assert "Traceback" not in fault_cluster.procs.log("api")
    report(
        f"the API's database link black-holed, then partitioned ({len(calls)} requests each: all 503 in at most "
        f"{slowest_s:.1f} s; healthy again {max(recoveries):.1f} s after the heal)",
        figures,
        2,
        t0,
    )


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _first(log: str, text: str, *, after: datetime) -> datetime | None:
    """When ``log`` first says ``text`` after ``after`` (its lines' own time stamps)."""
    for line in log.splitlines():
        stamp = _STAMP.match(line)
        if stamp and text in line:
            at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
            if at > after:
                return at
    return None


def test_an_engine_whose_database_link_is_black_holed_gives_up_its_partitions_before_the_other_takes_them(
    fault_cluster: Cluster, pg_proxy: FaultProxy
):
    t0 = time.monotonic()
    fault_cluster.start(engines=1)
    fault_cluster.add(
        "engine-1",
        f"{fault_cluster.prefix}.engine",
        env={"FLOW_DATABASE_URL": pg_proxy.url_for(fault_cluster.pg_url), **SILENT},
    )
    wait_for(lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8], what="an even split")
    started = fault_cluster.start_batch(BATCH, copies=8)
    wait_for(lambda: "acquired partition" in fault_cluster.procs.log("engine-1"), what="engine-1 to hold partitions")
    silent_id = next(e for e in fault_cluster.engines() if _is_process_of(fault_cluster, "engine-1", e))
    # First a commit cut off mid-transaction: the connection reset before its COMMIT reaches
    # the server (which rolls it back); the engine hands its deliveries back and goes on.
    pg_proxy.reset_on(b"COMMIT")
    wait_for(lambda: pg_proxy.marker_resets == 1, what="engine-1 to commit through the proxy")
    cut_at_wall = datetime.now()
    pg_proxy.black_hole()
    cut_at = time.monotonic()
    wait_for(
        lambda: "stopping work on" in fault_cluster.procs.log("engine-1"),
        timeout_s=LEASE_S * 10,
        what="the silent engine to stop work on its partitions",
    )
    noticed_s = time.monotonic() - cut_at
    wait_for(
        lambda: set(fault_cluster.owners().values()) == {next(e for e in fault_cluster.engines() if e != silent_id)},
        timeout_s=LEASE_S * 10,
        what="the other engine to hold every partition",
    )
    taken_over_s = time.monotonic() - cut_at
    gave_up = _first(fault_cluster.procs.log("engine-1"), "stopping work on", after=cut_at_wall)
    took = _first(fault_cluster.procs.log("engine-0"), "acquired partition", after=cut_at_wall)
    assert gave_up is not None and took is not None
    # Never two engines working on one partition: the silent one let go before the other took over.
    assert gave_up < took, f"engine-1 let go at {gave_up}, engine-0 took over at {took}"
    assert taken_over_s <= LEASE_S + SILENCE_S + 5, f"takeover took {taken_over_s:.1f} s"
    pg_proxy.heal()
    healed = time.monotonic()
    wait_for(
        lambda: sorted(h for h, _ in fault_cluster.engines().values()) == [8, 8],
        timeout_s=LEASE_S * 10,
        what="the healed engine to take its share back",
    )
    rejoined_s = time.monotonic() - healed
    figures = verify(fault_cluster, started)
    report(
        f"an engine's database link reset before a COMMIT, then black-holed (it let go in {noticed_s:.1f} s, "
        f"taken over in {taken_over_s:.1f} s, "
        f"back to 8/8 {rejoined_s:.1f} s after the heal; {fault_cluster.refused_commits()} commits refused)",
        figures,
        2,
        t0,
    )


def _is_process_of(cluster: Cluster, name: str, engine_id: str) -> bool:
    from flow.testing import child_pids

    return int(engine_id.split(":")[1]) in child_pids(cluster.procs.procs[name].pid)
