"""Retention and input filters at the store, on SQLite and on PostgreSQL: what a prune
batch deletes and keeps, deleting one workflow, a commit for a workflow deleted under
its actor, deleting a definition version, and JSON containment with the same answers
on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from flow.clock import utcnow
from flow.core.definition import parse
from flow.core.lineage import ParentLink, child_id
from flow.errors import ChildrenInProgress, DefinitionInUse, DefinitionNotFound, WorkflowInProgress, WorkflowNotFound
from flow.persistence.database import open_database
from flow.persistence.engine_store import EngineStore
from flow.persistence.input_filter import input_contains
from flow.persistence.models import (
    ActivityRecord,
    EventRecord,
    OutboxRecord,
    TimerRecord,
    WorkflowRecord,
    bind,
)
from flow.persistence.store import Store
from flow.testing import new_database
from tests.integration.test_fencing import A, started

DEFINITION = parse({"name": "W", "activities": [{"name": "NoopActivity"}] * 3}, known_activities={"NoopActivity"})
TABLES = (WorkflowRecord, ActivityRecord, EventRecord, TimerRecord, OutboxRecord)


@pytest.fixture
def stores(migrated) -> tuple[Store, EngineStore]:
    store = Store(migrated)
    store.register_definition(DEFINITION)
    return store, EngineStore(migrated)


def workflow(store: Store, *, partition: int = 0, ended_days_ago: float | None = None, input_data=None) -> str:
    """A workflow of ``partition`` with history, a timer and an owed message; ended that
    many days ago (``None``: still in progress)."""
    state, _ = store.create_workflow(DEFINITION, 1, input_data or {}, partition_of=lambda _: partition)
    with store.unit_of_work():
        if ended_days_ago is not None:
            WorkflowRecord.update(status="Finished", finished_at=utcnow() - timedelta(days=ended_days_ago)).where(
                WorkflowRecord.id == state.id
            ).execute()
        EventRecord.insert(workflow=state.id, type="start-workflow", data={}, occurred_at=utcnow()).execute()
        TimerRecord.insert(
            id=f"{state.id}:t", workflow=state.id, partition=partition, kind="retry", attempt=1, due_at=utcnow()
        ).execute()
        OutboxRecord.insert(
            id=state.id.replace("-", ""),
            workflow=state.id,
            partition=partition,
            queue_name="q",
            actor_name="a",
            kwargs={},
            due_at=utcnow(),
            send_after=utcnow(),
        ).execute()
    return state.id


def rows(store: Store, workflow_id: str) -> dict[str, int]:
    with store.unit_of_work():
        return {table.__name__: table.select().where(_key(table) == workflow_id).count() for table in TABLES}


def _key(table):
    return WorkflowRecord.id if table is WorkflowRecord else table.workflow


def gone(store: Store, workflow_id: str) -> bool:
    return not any(rows(store, workflow_id).values())


def test_a_prune_batch_deletes_only_the_partitions_old_ended_workflows_oldest_first(stores):
    store, engine = stores
    old = [workflow(store, ended_days_ago=30 + i) for i in range(5)]
    recent = workflow(store, ended_days_ago=1)
    running = workflow(store)
    other_partition = workflow(store, partition=1, ended_days_ago=30)
    before = utcnow() - timedelta(days=7)
    assert store.count_prunable(finished_before=before) == 6
    assert store.count_prunable(finished_before=before, partitions=[1]) == 1

    assert engine.prune(0, finished_before=before, limit=2) == 2
    assert [gone(store, w) for w in old] == [False, False, False, True, True]  # the oldest went first
    assert store.prune(0, finished_before=before, limit=2) == 2
    assert store.prune(0, finished_before=before, limit=2) == 1
    assert store.prune(0, finished_before=before, limit=2) == 0
    assert all(gone(store, w) for w in old)
    for kept in (recent, running, other_partition):
        assert all(rows(store, kept).values()), kept


def test_a_workflow_run_again_is_never_pruned_whatever_its_old_finished_at(stores):
    store, _ = stores
    retried = workflow(store, ended_days_ago=30)
    with store.unit_of_work():
        WorkflowRecord.update(status="In Progress").where(WorkflowRecord.id == retried).execute()
    assert store.prune(0, finished_before=utcnow()) == 0
    assert rows(store, retried)["WorkflowRecord"] == 1


def test_deleting_one_workflow(stores):
    store, _ = stores
    ended, running = workflow(store, ended_days_ago=0), workflow(store)
    with pytest.raises(WorkflowInProgress, match="cancel it first"):
        store.delete_workflow(running)
    with pytest.raises(WorkflowNotFound):
        store.delete_workflow("nope")
    store.delete_workflow(ended)
    assert gone(store, ended) and all(rows(store, running).values())


def test_a_commit_for_a_workflow_deleted_under_its_actor_is_refused_as_deleted(stores):
    store, engine = stores
    deleted, alive = workflow(store), workflow(store)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    batch = [started(engine, deleted, epoch=epoch), started(engine, alive, epoch=epoch)]
    with store.unit_of_work():
        WorkflowRecord.update(status="Finished").where(WorkflowRecord.id == deleted).execute()
    store.delete_workflow(deleted)
    result = engine.commit_batch(batch, owner=A)
    assert result.committed == [1] and result.refused == {0: "deleted"}
    assert gone(store, deleted)
    # A stale version of a workflow that exists is still a version refusal.
    assert engine.commit_batch([replace(batch[1], version=0)], owner=A).refused == {0: "version"}


STORED = {
    "a": {"order_id": 42, "customer": {"id": 7, "tier": "gold"}, "tags": ["x", "y"], "express": True, "note": None},
    "b": {"order_id": 43, "customer": {"id": 7, "tier": "silver"}, "tags": ["y"], "express": False, "amount": 1.5},
    "c": {"order_id": "42", "items": [{"sku": "X", "qty": 1}, {"sku": "Y", "qty": 2}], "matrix": [[1, 2], [3]]},
    "d": {},
    "e": {'weird "key"': 1, "a.b": 2, "ünï": "çødé"},
}


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ({}, "abcde"),
        ({"order_id": 42}, "a"),
        ({"order_id": 42.0}, "a"),
        ({"order_id": "42"}, "c"),
        ({"customer": {"id": 7}}, "ab"),
        ({"customer": {"id": 7, "tier": "gold"}}, "a"),
        ({"customer": {}}, "ab"),
        ({"customer": {"id": 7}, "express": False}, "b"),
        ({"tags": ["y"]}, "ab"),
        ({"tags": ["y", "x"]}, "a"),
        ({"tags": []}, "ab"),
        ({"tags": "y"}, ""),  # an array contains a scalar only at the top level
        ({"express": True}, "a"),
        ({"express": 1}, ""),
        ({"note": None}, "a"),
        ({"missing": None}, ""),
        ({"items": [{"sku": "Y"}]}, "c"),
        ({"items": [{"sku": "Y", "qty": 1}]}, ""),
        ({"matrix": [[1]]}, "c"),
        ({"matrix": [1]}, ""),
        ({"amount": 1.5}, "b"),
        ({'weird "key"': 1, "a.b": 2}, "e"),
        ({"ünï": "çødé"}, "e"),
        ({"customer": "gold"}, ""),
    ],
)
def test_input_containment_has_the_same_answers_on_both_databases(stores, wanted, expected):
    store, _ = stores
    ids = {workflow(store, input_data=data): key for key, data in STORED.items()}
    found = store.list_workflows(input_filter=wanted, limit=50)
    assert "".join(sorted(ids[w.state.id] for w in found)) == expected


def test_a_deleted_definition_version_is_a_tombstone_whose_number_is_never_reused(stores):
    store, _ = stores
    other = parse({"name": "W", "activities": [{"name": "NoopActivity"}]}, known_activities={"NoopActivity"})
    assert store.register_definition(other) == (2, True)
    running = workflow(store)  # version 1
    with pytest.raises(DefinitionInUse, match="1 workflow"):
        store.delete_definition_version("W", 1)
    store.delete_definition_version("W", 2)
    with pytest.raises(DefinitionNotFound):
        store.delete_definition_version("W", 2)
    assert store.definition_version("W") == 1 and store.definition("W", 2) is None
    assert [v["version"] for v in store.definition_versions("W")] == [1]
    assert [(d["name"], d["version"]) for d in store.list_definitions()] == [("W", 1)]
    third = parse({"name": "W", "activities": [{"name": "EchoActivity"}]}, known_activities={"EchoActivity"})
    assert store.register_definition(third) == (3, True)
    assert store.register_definition(other) == (2, True)  # the same body comes back under its number
    assert store.definition("W", 2) == (2, dict(other.body))
    assert all(rows(store, running).values())


def test_a_version_a_child_step_needs_cannot_be_deleted_on_both_databases(stores):
    store, _ = stores
    known = {"NoopActivity"}
    child = parse({"name": "Kid", "activities": [{"name": "NoopActivity"}]}, known_activities=known)
    pinned = parse(
        {"name": "Pinned", "activities": [{"id": "k", "workflow": "Kid", "version": 1}]}, known_activities=known
    )
    loose = parse({"name": "Loose", "activities": [{"workflow": "Kid"}]}, known_activities=known)
    for d in (child, pinned, loose):
        store.register_definition(d)
    with pytest.raises(DefinitionInUse) as refused:
        store.delete_definition_version("Kid", 1)
    assert "Pinned version 1 (step k)" in str(refused.value) and "Loose version 1 (step 0)" in str(refused.value)
    assert store.definition_version("Kid", 1) == 1


@pytest.fixture(scope="module")
def seeded_postgres(services) -> Iterator[Store]:
    """20,000 ended workflows of 4 partitions, each with its own input, analysed."""
    with new_database() as url:
        database = open_database(url)
        bind(database)
        store = Store(database)
        store.migrate(partitions=4)
        now = utcnow()
        with store.unit_of_work():
            WorkflowRecord.insert_many(
                {
                    "id": f"w{i}",
                    "definition_name": "W",
                    "definition_version": 1,
                    "partition": i % 4,
                    "status": "Finished",
                    "input_data": {"order_id": i, "customer": {"id": i % 100}},
                    "config": {},
                    "created_at": now,
                    "updated_at": now,
                    "finished_at": now - timedelta(minutes=i),
                }
                for i in range(20_000)
            ).execute()
            database.execute_sql("ANALYZE workflows")
        yield store
        database.close()


def plan(store: Store, query) -> str:
    bind(store.database)
    sql, params = query.sql()
    with store.unit_of_work():
        return "\n".join(r[0] for r in store.database.execute_sql("EXPLAIN " + sql, params).fetchall())


def test_on_postgresql_a_prune_batch_reads_the_ended_index(seeded_postgres):
    batch = (
        WorkflowRecord.select(WorkflowRecord.id)
        .where((WorkflowRecord.partition == 1) & (WorkflowRecord.finished_at < utcnow() - timedelta(days=1)))
        .where(WorkflowRecord.status != "In Progress")
        .order_by(WorkflowRecord.finished_at)
        .limit(500)
    )
    assert "workflows_ended" in plan(seeded_postgres, batch)


def test_on_postgresql_the_input_filter_reads_the_input_index(seeded_postgres):
    store = seeded_postgres
    found = WorkflowRecord.select(WorkflowRecord.id).where(input_contains(store.database, {"order_id": 4242}))
    assert "workflows_input" in plan(store, found)
    assert [w.state.id for w in store.list_workflows(input_filter={"order_id": 4242})] == ["w4242"]


def test_a_parent_whose_children_run_is_neither_deleted_nor_pruned_until_they_end(stores):
    store, _ = stores
    parent = workflow(store, ended_days_ago=30)
    child, _ = store.create_workflow(
        DEFINITION, 1, {}, partition_of=lambda _: 0, workflow_id=child_id(parent, "c"), parent=ParentLink(parent, 0, 1)
    )
    with pytest.raises(ChildrenInProgress) as refused:
        store.delete_workflow(parent)
    assert refused.value.children == [child.id] and child.id in str(refused.value)
    before = utcnow() - timedelta(days=7)
    assert store.count_prunable(finished_before=before) == 0
    assert store.prune(0, finished_before=before) == 0
    assert all(rows(store, parent).values())

    with store.unit_of_work():
        WorkflowRecord.update(status="Cancelled", finished_at=utcnow()).where(WorkflowRecord.id == child.id).execute()
    assert store.prune(0, finished_before=before) == 1
    assert gone(store, parent)
