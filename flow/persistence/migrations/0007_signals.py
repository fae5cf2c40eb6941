"""Signals: each workflow keeps its inbox (signals received, kept until a wait takes
them, and taken ones by id so that a repeat is recognised) as JSON beside its state,
written in the same commit as the history entry that records the signal. NULL for a
workflow that never received one."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE workflows ADD COLUMN inbox TEXT")
