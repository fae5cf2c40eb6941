"""Search attributes (flow.core.attributes): one row per workflow and attribute name, its
value in the one column of its type, and an index per typed column on (name, value,
workflow_id), so that ``attr.<name>=<value>`` (or a range) is one index range scan that
yields workflow ids (docs/design.md, "Search attributes"); and a schedule's attributes, those
of every workflow it starts."""


def up(migrator, db):
    db.execute_sql(
        "CREATE TABLE workflow_attributes (workflow_id VARCHAR(36) NOT NULL REFERENCES workflows (id) "
        "ON DELETE CASCADE, name VARCHAR(63) NOT NULL, str_value VARCHAR(255), num_value DOUBLE PRECISION, "
        "bool_value BOOLEAN, time_value TIMESTAMP, PRIMARY KEY (workflow_id, name))"
    )
    for column in ("str_value", "num_value", "bool_value", "time_value"):
        # Partial: a row fills one typed column, and each index holds only its own rows.
        db.execute_sql(
            f"CREATE INDEX workflow_attributes_{column} ON workflow_attributes (name, {column}, workflow_id) "
            f"WHERE {column} IS NOT NULL"
        )
    # A schedule's: the attributes of every workflow it starts (JSON text); NULL: none.
    db.execute_sql("ALTER TABLE schedules ADD COLUMN attributes TEXT")
