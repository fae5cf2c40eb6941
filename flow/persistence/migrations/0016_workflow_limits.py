"""A concurrency limit on a whole workflow (flow.core.workflow_limit): each workflow's
claim — the limit's name, the key's value, the definition's number, its strategy (null:
``queue``; its priority is ``priority`` already) — made when it is created, and ``queued``: its run waits for a
slot. The admitting engine finds what waits and counts what holds a slot (started, not
queued, ``In Progress``; or a grant not yet handled) from these rows."""


def up(migrator, db):
    for column, kind in (
        ("limit_name", "VARCHAR(300)"),
        ("limit_key", "VARCHAR(255)"),
        ("limit_max", "INTEGER"),
        ("limit_strategy", "VARCHAR(32)"),
        ("queued", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ):
        db.execute_sql(f"ALTER TABLE workflows ADD COLUMN {column} {kind}")
    db.execute_sql(
        "CREATE INDEX workflows_limit ON workflows (limit_name, status, limit_key) WHERE limit_name IS NOT NULL"
    )
