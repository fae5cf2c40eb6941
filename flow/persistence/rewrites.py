"""A rerun's rows: the one transition that lays a workflow's steps out afresh.

A rerun from a step (:mod:`flow.core.rerun`) drops the items of the maps it resets and
may move the workflow to another definition version, whose steps sit at other
positions; the group commit's updates, which address a step by its position and write
only what changes as a step runs, cannot say that. So a rerun's transition replaces the
workflow's activity rows with the state's, and writes the run's input, config and
version, in the transaction of the group commit that accepted it (after the fence and
the version check). A rerun is rare: the hot path pays nothing for it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import peewee

from flow.persistence.database import is_postgres
from flow.persistence.mapping import ACTIVITY_INSERT_COLUMNS, activity_row
from flow.persistence.models import ActivityRecord, WorkflowRecord
from flow.persistence.records import Transition

_COLUMNS = ", ".join(ACTIVITY_INSERT_COLUMNS)
#: On PostgreSQL, the rows in one statement, read from JSON as the group commit reads a map's items.
_INSERT_POSTGRES = (
    f"INSERT INTO activities ({_COLUMNS}) SELECT {_COLUMNS} FROM json_populate_recordset(NULL::activities, %s) AS r"
)


def rewrite(database: peewee.Database, transitions: list[Transition]) -> None:
    """Replace the rows of each committed ``transitions``' workflow that was rerun
    (inside the committing transaction)."""
    for t in transitions:
        if not t.rewritten:
            continue
        state = t.after
        WorkflowRecord.update(
            input_data=dict(state.input_data), config=dict(state.config), definition_version=state.definition_version
        ).where(WorkflowRecord.id == t.workflow_id).execute()
        ActivityRecord.delete().where(ActivityRecord.workflow == t.workflow_id).execute()
        rows = [activity_row(t.workflow_id, a) for a in state.activities]
        if is_postgres(database):
            database.execute_sql(_INSERT_POSTGRES, (json.dumps(rows, default=str),))
            continue
        marks = ", ".join([database.param] * len(ACTIVITY_INSERT_COLUMNS))
        sql = f"INSERT INTO activities ({_COLUMNS}) VALUES ({marks})"
        for row in rows:
            database.execute_sql(sql, [_sqlite_value(row[c]) for c in ACTIVITY_INSERT_COLUMNS])


def _sqlite_value(value: Any) -> Any:
    return str(value) if isinstance(value, datetime) else value
