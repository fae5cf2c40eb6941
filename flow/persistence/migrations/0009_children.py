"""Sub-workflows: a child workflow names its parent, the parent's activity (position)
and the parent's attempt that created it; ``GET /workflows?parent_id=`` lists a
parent's children through the index. NULL for workflows that are nobody's child."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE workflows ADD COLUMN parent_id VARCHAR(36)")
    db.execute_sql("ALTER TABLE workflows ADD COLUMN parent_position INTEGER")
    db.execute_sql("ALTER TABLE workflows ADD COLUMN parent_attempt INTEGER")
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS workflows_parent ON workflows (parent_id, created_at, id) "
        "WHERE parent_id IS NOT NULL"
    )
