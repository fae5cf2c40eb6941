"""Heartbeats: an activity's last heartbeat (its details and when it came), handed to its
next attempt (flow.core.kinds.activity)."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE activities ADD COLUMN heartbeat TEXT")
