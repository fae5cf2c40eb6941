"""A namespace's starts-per-second quota held across the deployment (issue 27): one row
per namespace whose starts were counted, its GCRA's theoretical arrival time in seconds
since the Unix epoch (``flow.core.limits.Gcra``), moved by one statement per admitted
start (``flow.persistence.namespaces.take_start``), so that every process that starts
workflows spends one quota."""


def up(migrator, db):
    db.execute_sql("CREATE TABLE namespace_rates (namespace VARCHAR(63) PRIMARY KEY, tat DOUBLE PRECISION NOT NULL)")
