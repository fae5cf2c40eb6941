"""A namespace's starts-per-second quota holds across processes (issue 27), on SQLite and
on PostgreSQL: two :class:`NamespaceQuotas` (as two processes of a deployment have) on
one database together admit no more than ``burst + rate x elapsed`` over a window, never
both take the last start when they race, and a flood that the local check refuses costs
no statement."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from flow.core.namespaces import Quota, TokensFile
from flow.errors import QuotaExceeded
from flow.persistence.database import is_postgres, unit_of_work
from flow.service.quotas import NamespaceQuotas
from flow.testing.statements import counted

T0 = 1_800_000_000.0  # seconds since the epoch, as a process's wall clock reads


class Clock:
    """A clock the test moves (the processes' wall clocks, agreeing)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def quotas_of(database, clock, **namespaces: float) -> NamespaceQuotas:
    tokens = TokensFile(quotas={name: Quota(starts_per_s=rate) for name, rate in namespaces.items()})
    return NamespaceQuotas(tokens, database, clock=clock)


def admitted(quotas: NamespaceQuotas, namespace: str) -> bool:
    try:
        quotas.admit(namespace)
    except QuotaExceeded as e:
        assert f"namespace {namespace!r} is over its quota of" in str(e) and e.retry_after_s >= 1
        return False
    return True


def test_two_processes_together_admit_the_quota_not_twice_it(migrated):
    clock = Clock()
    first, second = quotas_of(migrated, clock, acme=5), quotas_of(migrated, clock, acme=5)
    starts: list[float] = []
    by: dict[int, int] = {id(first): 0, id(second): 0}
    # 4 simulated seconds, both trying every 10 ms (a flood of 200 a second).
    for tick in range(400):
        clock.now = T0 + tick / 100
        for quotas in (first, second) if tick % 2 else (second, first):  # neither always first
            if admitted(quotas, "acme"):
                starts.append(clock.now)
                by[id(quotas)] += 1
    # Over every window (first..j-th start), across both: at most burst + rate x elapsed.
    for j, at in enumerate(starts):
        assert j + 1 <= 5 + 5 * (at - T0) + 1e-6
    assert len(starts) == 5 + 19  # the burst, then one every 0.2 s until 3.99 s: the quota, once
    # Both admitted starts (how many each is the lockstep's accident): what one took, the
    # other could not.
    assert min(by.values()) >= 1


def test_two_processes_racing_for_the_last_starts_never_both_take_one(migrated):
    clock = Clock()  # stopped: exactly the burst may be admitted
    processes = [quotas_of(migrated, clock, acme=8, other=3) for _ in range(2)]
    go = threading.Barrier(8)

    def flood(quotas: NamespaceQuotas) -> int:
        go.wait(timeout=30)
        return sum(admitted(quotas, "acme") for _ in range(10))

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(flood, processes * 4))
    assert sum(counts) == 8
    assert sum(admitted(processes[0], "other") for _ in range(5)) == 3  # another namespace: its own row


def test_a_start_refused_by_the_shared_row_says_when_to_try_again(migrated):
    clock = Clock()
    first, second = quotas_of(migrated, clock, slow=0.25), quotas_of(migrated, clock, slow=0.25)
    first.admit("slow")
    with pytest.raises(QuotaExceeded, match="namespace 'slow' is over its quota of 0.25 starts per second") as e:
        second.admit("slow")
    assert e.value.retry_after_s == 4  # one start every 4 s
    clock.now += 4
    second.admit("slow")


def test_a_flood_refused_by_the_local_check_costs_no_statement(migrated):
    quotas = quotas_of(migrated, Clock(), flood=3)
    with counted(migrated) as statements:
        assert [admitted(quotas, "flood") for _ in range(3)] == [True] * 3
        assert len(statements) == 3  # one statement per admitted start
        assert not any(admitted(quotas, "flood") for _ in range(1000))
        assert len(statements) == 3  # and none for the 1,000 refused


def test_on_postgres_the_rates_table_is_unlogged(migrated):
    """Its commits wait for no WAL flush (see migration 0027 for what that gives up)."""
    if not is_postgres(migrated):
        pytest.skip("PostgreSQL's table kinds")
    with unit_of_work(migrated):
        kind = migrated.execute_sql("SELECT relpersistence FROM pg_class WHERE relname = 'namespace_rates'").fetchone()
    assert kind == ("u",)
