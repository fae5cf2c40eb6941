"""What the admitting transaction costs, in statements: it runs once per limit per
admission pass on every engine, so each round trip in it is paid by every limited step's
latency (bench/limits.py measures the whole)."""

from __future__ import annotations

from flow.clock import utcnow
from flow.core.events import TimerFired
from flow.core.vocabulary import TimerKind
from flow.persistence.limits import LimitTable
from tests.integration.test_fencing import A, started
from tests.integration.test_limits_store import LIMITED, handle, stores  # noqa: F401 (a fixture)


def test_an_admitting_transaction_locks_counts_reads_and_grants_in_four_statements(stores, monkeypatch):  # noqa: F811
    """The lock, the slots held with the keys that wait (one statement, one snapshot), the
    waiters, the grants: a statement apiece (the keys that wait were a fifth)."""
    store, engine = stores
    limits = LimitTable(store.database)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    limits.admit("Pay:charge", utcnow())  # the limit's row is made on first use: not counted
    holder, _ = store.create_workflow(LIMITED, 1, {"tenant": "acme"}, partition_of=lambda _: 0)
    assert engine.commit_batch([started(engine, holder.id, epoch=epoch)], owner=A).committed == [0]
    handle(engine, holder.id, TimerFired(TimerKind.SLOT, 0, 1, occurred_at=utcnow()), epoch=epoch)
    waiting = []
    for tenant in ("acme", "umbrella"):
        workflow, _ = store.create_workflow(LIMITED, 1, {"tenant": tenant}, partition_of=lambda _: 0)
        assert engine.commit_batch([started(engine, workflow.id, epoch=epoch)], owner=A).committed == [0]
        waiting.append(workflow.id)
    statements: list[str] = []
    execute_sql = store.database.execute_sql

    def counted(sql, params=None, *args, **kwargs):
        statements.append(sql)
        return execute_sql(sql, params, *args, **kwargs)

    monkeypatch.setattr(store.database, "execute_sql", counted)
    granted = limits.admit("Pay:charge", utcnow()).grants
    assert [g.workflow_id for g in granted] == [waiting[1]]  # acme's slot is held
    assert len(statements) == 4, statements
