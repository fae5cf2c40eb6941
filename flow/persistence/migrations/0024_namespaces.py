"""Namespaces (issue 27): every definition, workflow, schedule, limit, event and batch
belongs to one, ``default`` for every row that existed before (so nothing changes for a
single team), and the indexes that a namespace's listings and its running count need:
workflows newest first and by status, events newest first, batches newest first."""

TABLES = ("definitions", "workflows", "schedules", "limits", "trigger_events", "batches")


def up(migrator, db):
    for table in TABLES:
        db.execute_sql(f"ALTER TABLE {table} ADD COLUMN namespace VARCHAR(63) NOT NULL DEFAULT 'default'")
    db.execute_sql("CREATE INDEX workflows_namespace ON workflows (namespace, created_at, id)")
    db.execute_sql("CREATE INDEX workflows_namespace_status ON workflows (namespace, status, created_at, id)")
    db.execute_sql("CREATE INDEX definitions_namespace ON definitions (namespace, name)")
    db.execute_sql("CREATE INDEX schedules_namespace ON schedules (namespace, name)")
    db.execute_sql("CREATE INDEX limits_namespace ON limits (namespace, name)")
    db.execute_sql("CREATE INDEX trigger_events_namespace ON trigger_events (namespace, received_at, id)")
    db.execute_sql("CREATE INDEX batches_namespace ON batches (namespace, created_at, id)")
