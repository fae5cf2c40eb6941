"""Priorities (issue 23, "Fleet controls"): each workflow's ``priority``, 1 (first) to 5
(last), from its start request, and the ``priority`` a schedule gives the workflows it
starts. Existing rows get 3, the default of a request that says nothing."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE workflows ADD COLUMN priority SMALLINT NOT NULL DEFAULT 3")
    db.execute_sql("ALTER TABLE schedules ADD COLUMN priority SMALLINT NOT NULL DEFAULT 3")
