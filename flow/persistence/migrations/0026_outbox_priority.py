"""Priorities on RabbitMQ (issue 23): an owed attempt keeps its workflow's priority, 1
(first) to 5 (last), so that a re-send from the outbox is published with the same
message priority as the first send (NULL: no priority, as every message before)."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE outbox ADD COLUMN priority SMALLINT")
