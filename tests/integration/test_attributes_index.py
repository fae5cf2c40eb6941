"""Search attributes at the store, on SQLite and on PostgreSQL: written with the workflow
(PostgreSQL's one statement, SQLite's statements), changed by a fenced group commit (and
not by one that lost its lease), found by the list's conditions; and on PostgreSQL at
100,000 workflows, the list's own statement answered from the indexes: no sequential scan."""

from __future__ import annotations

import re
from dataclasses import replace

from flow.core.attributes import STRING, check_declared, parse_conditions, to_wire
from flow.core.definition import parse
from flow.core.steps import HistoryEntry
from flow.core.vocabulary import HistoryType
from flow.persistence.attributes import set_by
from flow.persistence.database import open_database
from flow.persistence.models import WorkflowRecord, bind
from flow.persistence.store import Store
from flow.testing import new_database
from flow.testing.search import seed_attributed_workflows
from tests.integration.test_fencing import A, B, started
from tests.integration.test_priority_store import stores, url  # noqa: F401 - the fixtures, on both databases

DECLARED = {"customer": "string", "amount": "number", "due": "time"}
DEFINITION = parse(
    {"name": "Order", "attributes": DECLARED, "activities": [{"name": "NoopActivity"}]},
    known_activities={"NoopActivity"},
)


def create(store: Store, **given) -> str:
    typed = check_declared(DECLARED, given, path="$.attributes")
    state, _ = store.create_workflow(DEFINITION, 1, {}, partition_of=lambda _: 0, attributes=typed)
    return state.id


def found(store: Store, *conditions: tuple[str, str]) -> set[str]:
    return {w.state.id for w in store.list_workflows(attributes=parse_conditions(conditions))}


def test_attributes_are_stored_with_the_workflow_and_found_by_every_operator(stores):  # noqa: F811
    store, _ = stores
    big = create(store, customer="acme", amount=120.5, due="2026-12-24T00:00:00Z")
    small = create(store, customer="acme", amount=5)
    other = create(store, customer="42")
    assert store.get(big).attributes == {"customer": "acme", "amount": 120.5, "due": "2026-12-24T00:00:00Z"}
    assert store.get(small).attributes == {"customer": "acme", "amount": 5}
    assert found(store, ("attr.customer", "acme")) == {big, small}
    assert found(store, ("attr.customer", "acme"), ("attr.amount.gt", "100")) == {big}
    assert found(store, ("attr.amount.gte", "5"), ("attr.amount.lt", "120.5")) == {small}
    assert found(store, ("attr.amount.ne", "5")) == {big}
    assert found(store, ("attr.due.lte", "2026-12-24T00:00:00Z")) == {big}
    assert found(store, ("attr.due.gt", "2026-12-24T00:00:00Z")) == set()
    assert found(store, ("attr.customer", "42")) == {other}  # the string "42"; no number 42 exists

    # Deleting a workflow deletes its attributes (an ended one: DELETE /workflows/{id}, retention).
    with store.database.connection_context():
        WorkflowRecord.update(status="Finished").where(WorkflowRecord.id == other).execute()
    store.delete_workflow(other)
    with store.database.connection_context():
        left = store.database.execute_sql(
            f"SELECT count(*) FROM workflow_attributes WHERE workflow_id = {store.database.param}",
            (other,),
        ).fetchone()[0]
    assert left == 0 and found(store, ("attr.customer", "42")) == set()


def test_a_fenced_commit_changes_attributes_and_a_refused_one_does_not(stores):  # noqa: F811
    store, engine = stores
    workflow_id = create(store, customer="acme")
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    shipped = HistoryEntry(HistoryType.ACTIVITY_RESULT, 0, {"attributes": to_wire({"stage": (STRING, "shipped")})})
    first = started(engine, workflow_id, epoch=epoch)
    first = replace(first, attributes_set=set_by(workflow_id, [(shipped, None)]))
    assert engine.commit_batch([first], owner=A).committed == [0]
    assert store.get(workflow_id).attributes == {"customer": "acme", "stage": "shipped"}

    # Another engine, which holds no lease, cannot change them (nor can a stale version).
    lost = HistoryEntry(HistoryType.ACTIVITY_RESULT, 0, {"attributes": to_wire({"stage": (STRING, "lost")})})
    refused = replace(started(engine, workflow_id, epoch=epoch), attributes_set=set_by(workflow_id, [(lost, None)]))
    assert engine.commit_batch([refused], owner=B).committed == []
    assert store.get(workflow_id).attributes["stage"] == "shipped"
    assert found(store, ("attr.stage", "shipped")) == {workflow_id}


def test_a_workflow_keeps_at_most_32_names_whatever_its_commits_set(stores):  # noqa: F811
    """The bound is the workflow's, not one result's: the first 32 names it was given
    stay; a new name past them is not kept; a name it has still takes a new value."""
    store, engine = stores
    workflow_id = create(store, customer="acme", amount=1)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]

    def result(values: dict[str, object]) -> HistoryEntry:
        wire = to_wire({name: (STRING, str(value)) for name, value in values.items()})
        return HistoryEntry(HistoryType.ACTIVITY_RESULT, 0, {"attributes": wire})

    first = {f"a{i:02}": i for i in range(20)}
    second = {f"b{i:02}": i for i in range(20)}  # two results in one commit: 40 new names
    both = replace(
        started(engine, workflow_id, epoch=epoch),
        attributes_set=set_by(workflow_id, [(result(first), None), (result(second), None)]),
    )
    assert engine.commit_batch([both], owner=A).committed == [0]
    held = store.get(workflow_id).attributes
    assert len(held) == 32
    assert {"customer", "amount", *first} <= set(held)  # given first, kept; b10..b19 are not
    assert [name for name in held if name.startswith("b")] == [f"b{i:02}" for i in range(10)]

    later = result({"a00": "changed", "zz": "new"})
    again = replace(started(engine, workflow_id, epoch=epoch), attributes_set=set_by(workflow_id, [(later, None)]))
    assert engine.commit_batch([again], owner=A).committed == [0]
    held = store.get(workflow_id).attributes
    assert len(held) == 32 and held["a00"] == "changed" and "zz" not in held


def test_the_list_is_answered_from_the_indexes_at_100000_workflows(services):
    with new_database() as pg_url:
        database = open_database(pg_url)
        bind(database)
        store = Store(database)
        store.migrate(partitions=4)
        with database.connection_context():
            seed_attributed_workflows(database, 100_000)
        statements: list[tuple[str, tuple]] = []
        execute = database.execute_sql

        def recording(sql, params=None, *args, **kwargs):
            statements.append((sql, params))
            return execute(sql, params, *args, **kwargs)

        database.execute_sql = recording  # the very statements the API runs
        conditions = parse_conditions([("attr.customer", "customer-7"), ("attr.amount.gt", "100")])
        page = store.list_workflows(status="Failed", attributes=conditions)
        # "7.5" is read as a number and as a string (and matches neither): an index for each reading.
        assert store.list_workflows(attributes=parse_conditions([("attr.amount", "7.5")])) == []
        database.execute_sql = execute
        assert page and all(w.state.status == "Failed" for w in page)
        listings = [(sql, params) for sql, params in statements if "workflow_attributes" in sql]
        with database.connection_context():
            plans = [
                "\n".join(row[0] for row in database.execute_sql("EXPLAIN " + sql, params)) for sql, params in listings
            ]
        database.close()
    plan, either = plans
    assert "Seq Scan" not in plan, plan
    assert re.search(r"Index (Only )?Scan (Backward )?using workflow_attributes_str_value", plan), plan
    assert "Seq Scan" not in either, either
    assert "workflow_attributes_num_value" in either and "workflow_attributes_str_value" in either, either
