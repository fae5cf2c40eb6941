"""Retention: an index that finds a partition's ended workflows by age (``flow prune``
and the engines' retention), an index that finds workflows by what they were started
with (``GET /workflows?input=``; PostgreSQL only: SQLite cannot index a containment
test), and a tombstone for deleted definition versions, so that a version number is
never given to another body.

The workflow indexes are built in this migration's transaction: on a large database
``flow migrate`` holds writes to ``workflows`` for as long as the build takes (every
upgrade stops the processes first anyway).
"""

from peewee import DateTimeField, PostgresqlDatabase


def up(migrator, db):
    migrator.migrate(migrator.add_column("definitions", "deleted_at", DateTimeField(null=True)))
    # Only ended workflows have a finished_at (a retry clears it): in-progress rows stay
    # out of the index, and `finished_at < X` implies the predicate on both databases.
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS workflows_ended ON workflows (partition, finished_at) WHERE finished_at IS NOT NULL"
    )
    if isinstance(db, PostgresqlDatabase):
        # input_data is JSON text (identical on both databases); the cast is immutable,
        # so the expression can be indexed. jsonb_path_ops serves @> only, and is smaller
        # and faster for it than the default operator class.
        db.execute_sql(
            "CREATE INDEX IF NOT EXISTS workflows_input ON workflows USING gin ((input_data::jsonb) jsonb_path_ops)"
        )
