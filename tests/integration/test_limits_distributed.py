"""Concurrency limits across two engines, on real PostgreSQL and RabbitMQ: a per-tenant
limit is never exceeded (sampled every 10 ms from the rows that hold slots), the tenants'
steps interleave, an engine SIGKILLed while it admits loses and doubles no slot, and
every slot is back at the end."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import requests

from flow.testing import Cluster, check_settled, query
from flow.testing.cluster import fresh_cluster
from flow.testing.sampling import PeakSampler, busiest_second
from tests.conftest import wait_for

pytestmark = pytest.mark.services

LIMIT = 2
TENANTS = ("acme", "globex", "initech")
PER_TENANT = 50
DEFINITIONS = {
    "Payment": {
        "name": "Payment",
        "config": {"retry": {"max_attempts": 5, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [
            {
                "id": "charge",
                "name": "SleepActivity",
                "config": {"sleep_s": 0.05},
                "concurrency": {"key": "input.tenant", "limit": LIMIT},
            },
            {"name": "NoopActivity"},
        ],
    },
    "Mailer": {
        "name": "Mailer",
        "activities": [
            {"name": "NoopActivity", "rate_limit": {"key": "input.tenant", "per_s": 5, "burst": 2}},
        ],
    },
    "Named": {
        "name": "Named",
        "activities": [
            {
                "name": "SleepActivity",
                "config": {"sleep_s": 0.05},
                "concurrency": {"name": "payments", "key": "input.tenant"},
            }
        ],
    },
}
#: Slots held per tenant, as the admitting transaction counts them (one snapshot).
HELD = """
SELECT limit_key, count(*) FROM (
    SELECT a.limit_key FROM activities a WHERE a.limit_name = 'Payment:charge' AND a.status IN ('Scheduled', 'Started')
    UNION ALL
    SELECT a.limit_key FROM timers t JOIN activities a ON a.workflow_id = t.workflow AND a.position = t.position
    WHERE t.kind = 'slot' AND a.limit_name = 'Payment:charge' AND a.status = 'Queued' AND t.attempt = a.attempt + 1
) held GROUP BY limit_key
"""


@pytest.fixture
def cluster(services, tmp_path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path, DEFINITIONS) as running:
        yield running


def test_a_per_tenant_limit_holds_across_two_engines_and_an_engine_kill(cluster: Cluster):
    cluster.start(engines=2, workers=2)
    started = {}
    with PeakSampler(lambda: dict(query(cluster.pg_url, HELD))) as sampler:
        # Tenant by tenant: without a key per tenant the first tenant's 50 would go first.
        for tenant in TENANTS:
            for n in range(PER_TENANT):
                response = requests.post(
                    f"{cluster.url}/workflows", json={"name": "Payment", "input_data": {"tenant": tenant, "n": n}}
                )
                assert response.status_code == 201, response.text
                started[response.json()["id"]] = "Payment"
        # Kill an engine once a third of the charges ran, while the engines admit.
        wait_for(
            lambda: (
                query(cluster.pg_url, "SELECT count(*) FROM activities WHERE position = 0 AND status = 'Succeeded'")[0][
                    0
                ]
                >= len(started) // 3
            ),
            timeout_s=120,
            what="a third of the charges",
        )
        children = wait_for(lambda: cluster.booted_children("engine-0"), timeout_s=60, what="a booted engine")
        for child in children:
            os.kill(child, signal.SIGKILL)
        figures = check_settled(cluster.pg_url, started, {"Payment": "Finished"}, timeout_s=180)
    assert sampler.samples > 50, "the sampler hardly ran"
    assert set(sampler.peak) == set(TENANTS)
    assert max(sampler.peak.values()) <= LIMIT, f"a tenant held more than {LIMIT} slots: {dict(sampler.peak)}"
    print(f"\nLIMITS 2 engines, {len(started)} workflows, peak per tenant {dict(sampler.peak)}, {figures}")


def test_a_limit_set_at_run_time_lets_waiting_work_in_at_once_and_interleaves_the_keys(cluster: Cluster):
    """A named limit with no number: everything waits, saying why; PUT /limits sets it and
    the waiting work starts, the tenants' turns interleaved although each tenant's
    workflows were started one after the other; GET /limits shows holders and waiters."""
    cluster.start(engines=1, workers=1)
    ids = [
        requests.post(f"{cluster.url}/workflows", json={"name": "Named", "input_data": {"tenant": t}}).json()["id"]
        for t in TENANTS
        for _ in range(4)
    ]
    wait_for(
        lambda: requests.get(f"{cluster.url}/limits/payments").json().get("waiting") == len(ids),
        timeout_s=60,
        what="every step waiting",
    )
    view = requests.get(f"{cluster.url}/workflows/{ids[0]}").json()["activities"][0]
    assert view["status"] == "Queued"
    assert view["limit"] == {"name": "payments", "key": "acme"}
    assert view["waiting_for"] == "waiting for payments [acme]: no limit set (PUT /limits/payments)"
    assert requests.put(f"{cluster.url}/limits/payments", json={"limit": 1}).status_code == 200
    check_settled(cluster.pg_url, dict.fromkeys(ids, "Named"), {"Named": "Finished"}, timeout_s=120)
    order = query(
        cluster.pg_url,
        """SELECT w.input_data FROM events e JOIN workflows w ON w.id = e.workflow_id
           WHERE e.type = 'schedule-activity' ORDER BY e.id LIMIT 3""",
    )
    first = {tenant for (data,) in order for tenant in TENANTS if tenant in data}
    assert first == set(TENANTS), f"the first 3 steps let in were {first}'s"
    limits = requests.get(f"{cluster.url}/limits").json()["items"]
    assert {
        "name": "payments",
        "limit": 1,
        "set_at_run_time": True,
        "held": 0,
        "waiting": 0,
        "keys": 0,
        "kind": "concurrency",
        "per_s": None,
        "burst": None,
    } in limits


def test_a_rate_limit_paces_each_key_across_two_engines(cluster: Cluster):
    """2 tenants x 15 sends at 5 per s (burst 2) on two engines: at most 7 of a tenant's
    starts in any 1-s window, none faster than the rate, nothing dropped."""
    cluster.start(engines=2, workers=1)
    started = {}
    for n in range(30):
        tenant = TENANTS[n % 2]
        response = requests.post(f"{cluster.url}/workflows", json={"name": "Mailer", "input_data": {"tenant": tenant}})
        assert response.status_code == 201, response.text
        started[response.json()["id"]] = "Mailer"
    check_settled(cluster.pg_url, started, {"Mailer": "Finished"}, timeout_s=120)
    rows = query(
        cluster.pg_url,
        """SELECT w.input_data::jsonb ->> 'tenant', e.occurred_at FROM events e JOIN workflows w ON w.id = e.workflow_id
           WHERE w.definition_name = 'Mailer' AND e.type = 'schedule-activity' ORDER BY e.occurred_at""",
    )
    by_tenant: dict[str, list] = {}
    for tenant, at in rows:
        by_tenant.setdefault(tenant, []).append(at)
    assert sorted(len(times) for times in by_tenant.values()) == [15, 15]
    for tenant, times in by_tenant.items():
        worst = busiest_second(times)
        assert worst <= 5 + 2, f"{tenant}: {worst} starts in one second"
        # The times are the decisions', each made when its grant's timer fired: a first one
        # fired late on a busy machine shortens the span by that lag (2.54 s against a grant
        # span of 2.6 once). Without the limit the span is the batch's own, well under 1 s.
        assert (times[-1] - times[0]).total_seconds() >= (15 - 2) / 5 - 0.5, f"{tenant} went faster than 5/s"
