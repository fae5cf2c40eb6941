"""A namespace's starts-per-second quota held across the deployment (issue 27): one row
per namespace whose starts were counted, its GCRA's theoretical arrival time in seconds
since the Unix epoch (``flow.core.limits.Gcra``), moved by one statement per admitted
start (``flow.persistence.namespaces.take_start``), so that every process that starts
workflows spends one quota.

UNLOGGED on PostgreSQL: the statement's commit then waits for no WAL flush (150 to 220 µs
a start here, against 730 to 880 logged). What that gives up is fit for a rate's state:
after a crash of PostgreSQL (or on a promoted standby) the table is empty, and each
namespace may start one burst more, as after the restart of an in-memory rate."""

from peewee import PostgresqlDatabase


def up(migrator, db):
    unlogged = "UNLOGGED " if isinstance(db, PostgresqlDatabase) else ""
    db.execute_sql(
        f"CREATE {unlogged}TABLE namespace_rates (namespace VARCHAR(63) PRIMARY KEY, tat DOUBLE PRECISION NOT NULL)"
    )
