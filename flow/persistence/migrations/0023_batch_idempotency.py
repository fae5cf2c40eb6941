"""A batch's ``Idempotency-Key`` (``POST /batches``): a client that sends its request
again, not knowing whether the first arrived, gets the first batch back instead of a
second batch that would cancel, retry or rerun every workflow once more. Unique where
set (NULLs are distinct on SQLite and PostgreSQL alike)."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE batches ADD COLUMN idempotency_key VARCHAR(255)")
    db.execute_sql("CREATE UNIQUE INDEX batches_idempotency_key ON batches (idempotency_key)")
