"""Concurrency and rate limits (flow.core.limits): a step's claim on its activity row —
the limit's name, the key's value, the definition's number (or rate and burst, for a
rate limit) and the workflow's priority — so that the admitting engine finds what waits
and counts what holds a slot from the rows themselves; ``limits``, one row per named
limit (its numbers, set at run time), which the admitting transaction also locks to admit
one limit at a time; and ``limit_rates``, each rate limit's state per key."""


def up(migrator, db):
    for column, kind in (
        ("limit_name", "VARCHAR(300)"),
        ("limit_key", "VARCHAR(255)"),
        ("limit_max", "INTEGER"),
        ("priority", "SMALLINT"),
        ("rate_per_s", "DOUBLE PRECISION"),
        ("rate_burst", "INTEGER"),
        ("limit_rate", "BOOLEAN"),
    ):
        db.execute_sql(f"ALTER TABLE activities ADD COLUMN {column} {kind}")
    # What waits and what holds, each its own partial index: the steps that ended keep
    # their claim, and must cost the admitting transaction nothing.
    db.execute_sql(
        "CREATE INDEX activities_limit_waiting ON activities (limit_name, limit_key) "
        "WHERE status = 'Queued' AND limit_name IS NOT NULL"
    )
    db.execute_sql(
        "CREATE INDEX activities_limit_holding ON activities (limit_name, limit_key) "
        "WHERE status IN ('Scheduled', 'Started') AND limit_name IS NOT NULL"
    )
    db.execute_sql(
        "CREATE TABLE limits (name VARCHAR(300) PRIMARY KEY, max_running INTEGER, per_s DOUBLE PRECISION, "
        "burst INTEGER, updated_at TIMESTAMP NOT NULL)"
    )
    # A rate limit's state per key: its GCRA's theoretical arrival time.
    db.execute_sql(
        "CREATE TABLE limit_rates (name VARCHAR(300) NOT NULL, key VARCHAR(255) NOT NULL, "
        "tat TIMESTAMP NOT NULL, PRIMARY KEY (name, key))"
    )
    db.execute_sql("CREATE INDEX timers_kind ON timers (kind)")
