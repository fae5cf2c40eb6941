"""The engine's polling SELECTs (event windows and owed starts, live batches, due schedules,
the outbox, unstarted workflows) are compiled by Peewee once per shape, on SQLite and on
PostgreSQL: a later pass binds its values to the kept SQL and compiles nothing, and reads
the same rows, as the same values, that Peewee's own run of the query read."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import peewee
import pytest

from flow.clock import utcnow
from flow.core.event_triggers import Event, EventTrigger, match
from flow.persistence import compiled
from flow.persistence.batches import BatchTable
from flow.persistence.database import open_database, unit_of_work
from flow.persistence.engine_store import EngineStore
from flow.persistence.events import EventTable
from flow.persistence.models import OutboxRecord, bind
from flow.persistence.schedules import ScheduleTable
from flow.persistence.store import Store
from tests.integration.test_fencing import new_workflow

HELD = [0, 1, 2, 3]
PAID = EventTrigger("OnPaid", 0, "order.paid")
SYNC = EventTrigger("OrderSync", 0, "order.updated", key="data.order_id", debounce_s=2)


@pytest.fixture
def database(migrated) -> peewee.Database:
    return migrated


@pytest.fixture
def compiles(monkeypatch) -> list[object]:
    """Every query Peewee compiles from here on (to run it, or for its SQL)."""
    seen: list[object] = []
    execute, parse = peewee.Database.execute, peewee.Context.parse

    def executed(self, query, *args, **kwargs):
        seen.append(query)
        return execute(self, query, *args, **kwargs)

    def parsed(self, node):
        seen.append(node)
        return parse(self, node)

    monkeypatch.setattr(peewee.Database, "execute", executed)
    monkeypatch.setattr(peewee.Context, "parse", parsed)
    return seen


def seeded(database: peewee.Database) -> dict[str, object]:
    """One row for each poll to find, and the passes that read them."""
    events, engine = EventTable(database), EngineStore(database)
    now = utcnow()
    for trigger, event in (
        (PAID, Event("order.paid", "p-1", {"total": 5})),
        (SYNC, Event("order.updated", "u-1", {"order_id": 7})),
    ):
        events.receive(event, match([trigger], event), now=now, dedup_s=60, start_grace_s=0, partition_of=lambda _: 1)
    workflow_id = new_workflow(Store(database))  # created, never started: the unstarted sweep's
    with unit_of_work(database):
        OutboxRecord.insert(
            id="m1", workflow=workflow_id, partition=2, queue_name="q", actor_name="a", kwargs={"x": [1]},
            due_at=now, send_after=now, priority=3,
        ).execute()  # fmt: skip
    later = now + timedelta(seconds=5)
    return {
        "owed": lambda: events.owed(HELD, now=later),
        "due_windows": lambda: events.due_windows(HELD, now=later),
        "live": lambda: BatchTable(database).live(HELD),
        "due": lambda: ScheduleTable(database).due(HELD, now=later),
        "unstarted": lambda: engine.unstarted(HELD, created_before=later),
        "claim_outbox": lambda: engine.claim_outbox(HELD, now=later, hold_s=0),
    }


def test_a_second_pass_of_each_poll_compiles_nothing_and_reads_what_peewee_read(database, compiles):
    passes = seeded(database)
    first = {name: run() for name, run in passes.items()}
    assert first["owed"] and first["due_windows"] and first["unstarted"] and first["claim_outbox"]
    del compiles[:]
    second = {name: run() for name, run in passes.items()}
    assert [q for q in compiles if isinstance(q, peewee.SelectBase)] == []  # (a claim still updates what it found)
    # A claimed message is held until the pass's ``now`` + hold_s (0): the second claim reads that.
    first["claim_outbox"] = [replace(o, send_after=o.send_after + timedelta(seconds=5)) for o in first["claim_outbox"]]
    assert second == first
    assert second["claim_outbox"][0].kwargs == {"x": [1]} and second["claim_outbox"][0].priority == 3


def test_a_query_whose_values_peewee_changes_is_compiled_at_every_run_and_still_right(database, compiles):
    EventTable(database).receive(
        Event("order.paid", "p-2", {}), match([PAID], Event("order.paid", "p-2", {})),
        now=utcnow(), dedup_s=60, start_grace_s=0, partition_of=lambda _: 0,
    )  # fmt: skip
    from flow.persistence.events import EventStartRecord as S

    wrong = compiled.CompiledSelect("wrong", lambda held: S.select().where(S.partition.in_(held)), lambda h: [9, *h])
    with unit_of_work(database):
        assert [r.workflow_id for r in wrong.rows(database, [0])] == [r.workflow_id for r in S.select()]
        del compiles[:]
        assert len(wrong.rows(database, [0])) == 1
    assert compiles and not wrong.cached(database, [0])


def test_the_sql_kept_for_one_dialect_is_not_used_for_another(tmp_path):
    from flow.persistence.events import EventStartRecord as S

    query = compiled.CompiledSelect("owed", lambda held: S.select().where(S.partition.in_(held)))
    sqlite = open_database(f"sqlite:///{tmp_path / 'flow.db'}")
    bind(sqlite)
    Store(sqlite).migrate(partitions=4)
    with unit_of_work(sqlite):
        assert query.rows(sqlite, [0, 1]) == []
    assert query.cached(sqlite, [0, 1]) and not query.cached(peewee.PostgresqlDatabase("x"), [0, 1])
    sqlite.close()


def test_published_messages_are_deleted_without_compiling_a_query(database, compiles):
    now = utcnow()
    with unit_of_work(database):
        OutboxRecord.insert_many(
            [
                {"id": f"m{i}", "workflow": "w", "queue_name": "q", "actor_name": "a", "kwargs": {}, "due_at": now,
                 "send_after": now}
                for i in range(1203)
            ]
        ).execute()  # fmt: skip
    del compiles[:]
    EngineStore(database).delete_outbox([f"m{i}" for i in range(1, 1203, 2)])  # three chunks
    assert compiles == []
    with unit_of_work(database):
        assert sorted(int(r.id[1:]) for r in OutboxRecord.select()) == list(range(0, 1203, 2))
