"""Starts leave no outbox row (an engine finds a workflow whose start was never handled
by this index instead), and the outbox keeps only the index its engine reads it by."""


def up(migrator, db):
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS workflows_unstarted ON workflows (partition, created_at) WHERE NOT started"
    )
    db.execute_sql("DROP INDEX IF EXISTS outbox_workflow")
    db.execute_sql("DROP INDEX IF EXISTS outbox_send_after")
