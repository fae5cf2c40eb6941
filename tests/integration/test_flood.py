"""A flood of starts the API sheds (issue 26, "Load it must shed"), scaled down: 3,000
starts offered in 10 s by 20 clients to gunicorn with a deliberately small intake
(4 starts in flight per process, a backlog of 50 unstarted workflows). ``python -m
bench.flood`` is the full size.

The engine starts only once the API has shed a start for its backlog: until then the
backlog can only grow, so the bound is met on any machine, however fast. Then: no 500,
no client timeout (30 s: a starved gunicorn on a machine whose two cores serve
forty processes answered one start in 9.1 s), every shed answer says ``Retry-After``, nothing stored that was not
accepted, nothing half-stored, and every accepted workflow ends."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from flow.testing import Cluster, check_settled, new_database, new_queue_prefix, query
from flow.testing.flood import Answer, Flood, flood
from tests.conftest import wait_for

pytestmark = pytest.mark.services

DEFINITIONS: dict[str, dict[str, Any]] = {
    "Flood": {"name": "Flood", "config": {"retry": {"max_attempts": 1}}, "activities": [{"name": "NoopActivity"}]},
}
BACKLOG = 50
IN_FLIGHT = 4


def unstarted(pg_url: str) -> int:
    return query(pg_url, "SELECT count(*) FROM workflows WHERE NOT started")[0][0]


def test_a_flood_of_starts_is_shed_with_retry_after_and_every_accepted_start_ends(services, tmp_path):
    with new_database() as pg_url, new_queue_prefix() as prefix:
        cluster = Cluster(tmp_path, pg_url, prefix, DEFINITIONS, env={"FLOW_LOG_LEVEL": "WARNING"})
        try:
            intake = {"FLOW_MAX_START_BACKLOG": str(BACKLOG), "FLOW_MAX_STARTS_IN_FLIGHT": str(IN_FLIGHT)}
            t0 = time.monotonic()
            cluster.start(engines=0, workers=1, api_env=intake)
            t_booted = time.monotonic()
            backlog_full = threading.Event()
            done: list[Flood] = []

            def seen(answer: Answer) -> None:
                if answer.status == 503:
                    backlog_full.set()

            flooding = threading.Thread(
                target=lambda: done.append(
                    flood(cluster.url, "Flood", total=3000, seconds=10, clients=20, timeout_s=30, on_answer=seen)
                )
            )
            flooding.start()
            wait_for(
                lambda: backlog_full.is_set() or not flooding.is_alive(), timeout_s=120, what="the backlog to fill"
            )
            assert backlog_full.is_set(), f"no start was shed for the backlog: {done[0].summary()}"
            t_full = time.monotonic()
            cluster.add("engine-0", f"{prefix}.engine")
            flooding.join(120)
            [result] = done

            summary = result.summary()
            print(summary, f"booted in {t_booted - t0:.1f} s, backlog full after {t_full - t_booted:.1f} s")
            assert not result.unexpected, summary  # no 500, nor anything else
            assert not result.unanswered, summary  # no client timeout, no dropped connection
            assert result.shed and not result.shed_without_retry_after, summary
            assert len(result.accepted) >= BACKLOG, summary
            # Every accepted start ends, nothing stored that the API did not accept (a shed
            # start stores nothing), nothing lost or run twice.
            accepted = dict.fromkeys(result.accepted, "Flood")
            check_settled(pg_url, accepted, {"Flood": "Finished"}, timeout_s=120)
            # Nothing half-stored: each workflow has its one activity.
            half_stored = (
                "SELECT count(*) FROM workflows w "
                "WHERE NOT EXISTS (SELECT 1 FROM activities a WHERE a.workflow_id = w.id)"
            )
            assert query(pg_url, half_stored) == [(0,)]
            # The backlog drained: the API takes starts again.
            wait_for(lambda: unstarted(pg_url) == 0, timeout_s=30, what="the backlog to drain")

            def accepted_again() -> bool:
                return requests.post(f"{cluster.url}/workflows", json={"name": "Flood"}, timeout=10).status_code == 201

            wait_for(accepted_again, timeout_s=10, every_s=0.5, what="a start accepted after the flood")
            print(f"settled {time.monotonic() - t_full:.1f} s after the backlog was full")
        finally:
            cluster.stop()
