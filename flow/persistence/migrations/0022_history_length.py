"""Bounded history (issue 25): ``history_length``, the entries of a workflow's history,
kept by every commit that appends to it (one addition, never a count), so the API can
warn about a long history and the engine can log once when it passes
``FLOW_HISTORY_WARN``. Existing workflows are counted once, here."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE workflows ADD COLUMN history_length INTEGER NOT NULL DEFAULT 0")
    db.execute_sql(
        "UPDATE workflows SET history_length = (SELECT count(*) FROM events WHERE events.workflow_id = workflows.id)"
    )
