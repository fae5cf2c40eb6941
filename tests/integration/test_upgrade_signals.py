"""Migration 0013 moves each workflow's inbox (the JSON column of 0007) into rows of
``signals``, on SQLite and on PostgreSQL: the engine loads the same inbox, kept payloads
with their size and digest, taken ones by id."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playhouse.migrations import Runner

from flow.core.definition import parse
from flow.core.kinds import wait
from flow.persistence.database import open_database
from flow.persistence.engine_store import EngineStore
from flow.persistence.mapping import activity_row
from flow.persistence.models import bind
from flow.persistence.schema import HISTORY_TABLE, MIGRATIONS_DIR
from flow.persistence.store import Store
from flow.testing import new_database


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flow.db'}"
    else:
        request.getfixturevalue("services")
        with new_database() as pg_url:
            yield pg_url


def test_an_inbox_column_becomes_signal_rows(url):
    database = open_database(url)
    bind(database)
    try:
        with database.connection_context():
            Runner(database, str(MIGRATIONS_DIR), table_name=HISTORY_TABLE).up(target="0012_callback_secret")
        store = Store(database)
        body = {"name": "W", "activities": [{"name": "NoopActivity"}, {"wait_for": "approved"}]}
        definition = parse(body, known_activities={"NoopActivity"})
        with database.connection_context():
            _insert_as_of_0012(database, definition, "w1", inbox=_inbox())
        assert "0013_signal_rows" in store.migrate(partitions=4)
        taken, kept, callback = EngineStore(database).load("w1").state.inbox
        assert (taken.id, taken.consumed_by, taken.payload, taken.digest) == ("taken", 1, None, None)
        assert taken.received_at.isoformat() == "2026-12-01T10:00:00.500000"
        assert (kept.id, kept.name, kept.payload, kept.consumed_by) == ("kept", "later", {"b": 2, "a": [1]}, None)
        assert (kept.size, kept.digest) == wait.payload_digest({"a": [1], "b": 2})
        assert (callback.position, callback.run, callback.payload) == (3, 2, "x")
        with database.connection_context():
            columns = [c.name for c in database.get_columns("workflows")]
        assert "inbox" not in columns
    finally:
        database.close()


def _insert_as_of_0012(database, definition, workflow_id: str, *, inbox: list[dict]) -> None:
    """A workflow and its activities as a release at migration 0012 wrote them: only the
    columns its tables had (``create_workflow`` writes today's, which later migrations
    added; 0015's ``priority``, for one)."""
    now = "2026-12-01 10:00:00"
    workflow = {
        "id": workflow_id,
        "definition_name": definition.name,
        "definition_version": 1,
        "partition": 0,
        "status": "In Progress",
        "started": False,
        "run": 1,
        "input_data": "{}",
        "config": "{}",
        "created_at": now,
        "updated_at": now,
        "version": 0,
        "paused": False,
        "inbox": json.dumps(inbox),
    }
    rows = [("workflows", workflow)] + [
        ("activities", activity_row(workflow_id, a)) for a in definition.initial_activities()
    ]
    for table, row in rows:
        columns = {c.name for c in database.get_columns(table)}
        kept = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in row.items() if k in columns}
        marks = ", ".join([database.param] * len(kept))
        database.execute_sql(f"INSERT INTO {table} ({', '.join(kept)}) VALUES ({marks})", list(kept.values()))


def _inbox() -> list[dict]:
    return [
        {"id": "taken", "name": "approved", "received_at": "2026-12-01T10:00:00.5Z", "consumed_by": 1},
        {"id": "kept", "name": "later", "received_at": "2026-12-01T10:00:01Z", "payload": {"b": 2, "a": [1]}},
        {
            "id": "cb",
            "name": "approved",
            "received_at": "2026-12-01T10:00:02Z",
            "payload": "x",
            "position": 3,
            "run": 2,
        },
    ]


def test_on_postgres_a_commit_that_does_not_change_the_inbox_leaves_its_rows_untouched(services):
    """The group commit's one statement writes the inbox's difference only: a kept
    signal's row keeps its ``xmin`` (the transaction that wrote it) through a commit
    that does not change the inbox, and loses its payload in the one that takes it."""
    from flow.clock import utcnow
    from flow.core.decide import decide
    from flow.core.events import ActivityCompleted, SignalReceived
    from flow.core.vocabulary import Outcome
    from flow.persistence.mapping import inbox_changes
    from flow.persistence.records import Transition
    from tests.integration.test_fencing import A, _stores, started

    with new_database() as pg_url:
        stores = _stores(pg_url)
        store, engine, _ = next(stores)
        noop = {"name": "NoopActivity"}
        body = {"name": "W", "activities": [noop, noop | {"id": "other", "independent": True}, {"wait_for": "later"}]}
        definition = parse(body, known_activities={"NoopActivity"})
        store.register_definition(definition)
        state, _ = store.create_workflow(definition, 1, {}, partition_of=lambda _: 0)
        epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
        assert engine.commit_batch([started(engine, state.id, epoch=epoch)], owner=A).committed == [0]

        def commit(event) -> None:
            loaded = engine.load(state.id)
            decision = decide(loaded.state, event)
            added, taken = inbox_changes(loaded.state.inbox, decision.state.inbox)
            changed = [b for a, b in zip(loaded.state.activities, decision.state.activities, strict=True) if a is not b]
            transition = Transition(
                workflow_id=state.id,
                partition=0,
                epoch=epoch,
                version=loaded.version,
                after=decision.state,
                changed=changed,
                history=[(h, utcnow()) for h in decision.history],
                signals_added=added,
                signals_taken=taken,
            )
            assert engine.commit_batch([transition], owner=A).committed == [0]

        def row() -> tuple:
            with engine.database.connection_context():
                return engine.database.execute_sql("SELECT xmin::text, payload, consumed_by FROM signals").fetchone()

        commit(SignalReceived(utcnow(), "later", "s1", {"big": "x" * 10_000}))
        written = row()
        assert written[1] is not None and written[2] is None
        # The first activity's result (the other one runs on): a commit that does not touch the inbox.
        commit(ActivityCompleted(0, 1, Outcome.SUCCEEDED, occurred_at=utcnow(), output=None))
        assert row() == written
        # The other's: the wait's turn comes and it takes the signal; its row loses the payload.
        commit(ActivityCompleted(1, 1, Outcome.SUCCEEDED, occurred_at=utcnow(), output=None))
        assert row()[1:] == (None, 2)
        assert engine.load(state.id).state.activities[2].output == {"big": "x" * 10_000}
