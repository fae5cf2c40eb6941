"""Pause: a paused workflow schedules nothing new until it resumes (flow.core.decide)."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE workflows ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE")
