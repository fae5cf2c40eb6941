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
        store.register_definition(definition)
        state, _ = store.create_workflow(definition, 1, {}, partition_of=lambda _: 0)
        with database.connection_context():
            database.execute_sql(
                f"UPDATE workflows SET inbox = {database.param} WHERE id = {database.param}",
                (json.dumps(_inbox()), state.id),
            )
        assert "0013_signal_rows" in store.migrate(partitions=4)
        taken, kept, callback = EngineStore(database).load(state.id).state.inbox
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
