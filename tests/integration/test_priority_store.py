"""A workflow's priority at the store, on SQLite and on PostgreSQL: a created workflow
stores it (each value, through each insert path: PostgreSQL's one statement and
SQLite's two), every reader loads it, a commit keeps it (and the outbox rows of its
attempts, for RabbitMQ), the list filters by it, and migration 0015 gives the rows of an
older database the default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playhouse.migrations import Runner

from flow.clock import utcnow
from flow.core.definition import parse
from flow.core.schedules import parse_schedule
from flow.persistence.database import open_database
from flow.persistence.engine_store import EngineStore
from flow.persistence.models import bind
from flow.persistence.schedules import ScheduleTable
from flow.persistence.schema import HISTORY_TABLE, MIGRATIONS_DIR
from flow.persistence.store import Store
from flow.testing import new_database
from tests.integration.test_fencing import A, started

DEFINITION = parse({"name": "W", "activities": [{"name": "NoopActivity"}]}, known_activities={"NoopActivity"})


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flow.db'}"
    else:
        request.getfixturevalue("services")
        with new_database() as pg_url:
            yield pg_url


@pytest.fixture
def stores(url) -> Iterator[tuple[Store, EngineStore]]:
    database = open_database(url)
    bind(database)
    store = Store(database)
    store.migrate(partitions=4)
    store.register_definition(DEFINITION)
    yield store, EngineStore(database)
    database.close()


def test_each_priority_is_stored_and_loaded_by_every_reader(stores):
    store, engine = stores
    ids = {}
    for priority in (1, 2, 3, 4, 5):
        state, created = store.create_workflow(DEFINITION, 1, {}, partition_of=lambda _: 0, priority=priority)
        assert created and state.priority == priority
        ids[priority] = state.id
    for priority, workflow_id in ids.items():
        assert store.get(workflow_id).state.priority == priority  # the API's reader
        assert engine.load(workflow_id).state.priority == priority  # the engine's
    assert {w.state.id: w.state.priority for w in store.list_workflows()} == {v: k for k, v in ids.items()}


def test_a_workflow_created_without_a_priority_has_the_default(stores):
    store, engine = stores
    state, _ = store.create_workflow(DEFINITION, 1, {}, partition_of=lambda _: 0)
    assert state.priority == 3
    assert engine.load(state.id).state.priority == 3


def test_a_commit_keeps_the_priority(stores):
    store, engine = stores
    state, _ = store.create_workflow(DEFINITION, 1, {}, partition_of=lambda _: 0, priority=1)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    assert engine.commit_batch([started(engine, state.id, epoch=epoch)], owner=A).committed == [0]
    loaded = engine.load(state.id)
    assert loaded.version == 1 and loaded.state.started
    assert loaded.state.priority == 1


@pytest.mark.parametrize("priority", [1, 5])
def test_an_owed_attempt_keeps_its_workflows_priority_for_rabbitmq(stores, priority):
    """Through each commit path (PostgreSQL's one statement, SQLite's statements): the
    outbox row keeps the priority, so a re-send is published with it as the first send was."""
    store, engine = stores
    state, _ = store.create_workflow(DEFINITION, 1, {}, partition_of=lambda _: 0, priority=priority)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    transition = started(engine, state.id, epoch=epoch)
    assert [o.priority for o in transition.owed] == [priority]
    assert engine.commit_batch([transition], owner=A).committed == [0]
    owed = engine.claim_outbox([0], now=utcnow(), hold_s=60, every=True)
    assert [(o.actor_name, o.priority) for o in owed] == [("flow.run_activity", priority)]
    assert engine.outbox_by_id([owed[0].id])[0].priority == priority


def test_the_list_filters_by_priority(stores):
    store, _ = stores
    made = [store.create_workflow(DEFINITION, 1, {}, partition_of=lambda _: 0, priority=p)[0].id for p in (1, 3, 1, 5)]
    assert [w.state.id for w in store.list_workflows(priority=1)] == [made[2], made[0]]  # newest first
    assert [w.state.id for w in store.list_workflows(priority=5)] == [made[3]]
    assert store.list_workflows(priority=2) == []
    assert len(store.list_workflows()) == 4


def test_a_repeated_start_returns_the_first_workflow_with_its_own_priority(stores):
    store, _ = stores
    first, _ = store.create_workflow(DEFINITION, 1, {}, partition_of=lambda _: 0, idempotency_key="k", priority=1)
    again, created = store.create_workflow(DEFINITION, 1, {}, partition_of=lambda _: 0, idempotency_key="k", priority=5)
    assert not created and again.id == first.id and again.priority == 1


def test_a_schedule_stores_its_priority(stores):
    store, _ = stores
    table = ScheduleTable(store.database)
    spec = parse_schedule({"workflow": "W", "cron": "0 9 * * *", "priority": 2}, name="daily")
    table.put(spec, partition=0, now=utcnow(), file_digest=None)
    assert table.get("daily").spec.priority == 2
    plain = parse_schedule({"workflow": "W", "cron": "0 9 * * *"}, name="plain")
    table.put(plain, partition=0, now=utcnow(), file_digest=None)
    assert table.get("plain").spec.priority == 3


def test_migration_0015_gives_existing_workflows_and_schedules_the_default(url):
    database = open_database(url)
    bind(database)
    try:
        with database.connection_context():
            Runner(database, str(MIGRATIONS_DIR), table_name=HISTORY_TABLE).up(target="0013_signal_rows")
            # A workflow and a schedule as the release before priorities wrote them.
            database.execute_sql(
                "INSERT INTO workflows (id, definition_name, definition_version, partition, status, started, run, "
                "input_data, config, created_at, updated_at, version, paused) VALUES "
                "('old', 'W', 1, 0, 'In Progress', FALSE, 1, '{}', '{}', '2026-12-01 10:00:00', "
                "'2026-12-01 10:00:00', 0, FALSE)"
            )
            database.execute_sql(
                "INSERT INTO schedules (name, partition, workflow, input_data, cron, timezone, overlap, catch_up_s, "
                "paused, created_at, updated_at, last_tick_at, fired, skipped, version) VALUES "
                "('old', 0, 'W', '{}', '0 9 * * *', 'UTC', 'skip', 60, FALSE, '2026-12-01 10:00:00', "
                "'2026-12-01 10:00:00', '2026-12-01 10:00:00', 0, 0, 0)"
            )
        store = Store(database)
        assert "0015_priority" in store.migrate(partitions=4)
        assert store.get("old").state.priority == 3
        assert EngineStore(database).load("old").state.priority == 3
        assert ScheduleTable(database).get("old").spec.priority == 3
    finally:
        database.close()
