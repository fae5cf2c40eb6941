"""Tracing: each workflow keeps the W3C traceparent of its span, so that the attempts
any engine dispatches later (after a restart or a failover) join the workflow's trace.
NULL for workflows that started while tracing was off."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE workflows ADD COLUMN traceparent VARCHAR(255)")
