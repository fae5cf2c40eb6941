"""Many workflows with search attributes, inserted by PostgreSQL itself (``generate_series``),
not through the engine: what the index test (tests/integration/test_attributes_index.py)
and the search benchmark (``python -m bench.search``) query.

Workflow ``n`` (1 to ``count``) is ``Order``, ``Failed`` when ``n`` is a multiple of 10
(``Finished`` otherwise), created ``n`` seconds before now, with the attributes
``customer`` = ``customer-<n mod 997>`` (about ``count / 997`` workflows each),
and ``amount`` = ``n mod 200``.
"""

from __future__ import annotations

import peewee

#: Distinct customers: prime, so that a customer's workflows have every status and amount.
CUSTOMERS = 997


def seed_attributed_workflows(database: peewee.Database, count: int) -> None:
    """Insert ``count`` workflows and their attributes (see the module docstring), then ANALYZE."""
    with database.atomic():
        database.execute_sql(
            "INSERT INTO workflows (id, definition_name, definition_version, partition, status, started, run, "
            "input_data, config, created_at, updated_at, finished_at, version, priority, paused, queued) "
            "SELECT 'seed-' || lpad(n::text, 9, '0'), 'Order', 1, mod(n, 4), "
            "CASE WHEN mod(n, 10) = 0 THEN 'Failed' ELSE 'Finished' END, true, 1, '{}', '{}', "
            "t, t, t, 1, 3, false, false "
            "FROM generate_series(1, %s) AS n, LATERAL (SELECT (now() AT TIME ZONE 'utc') - n * interval '1 second' "
            "AS t) AS at",
            (count,),
        )
        database.execute_sql(
            "INSERT INTO workflow_attributes (workflow_id, name, str_value, num_value) "
            "SELECT 'seed-' || lpad(n::text, 9, '0'), a.name, "
            f"CASE WHEN a.name = 'customer' THEN 'customer-' || mod(n, {CUSTOMERS}) END, "
            "CASE WHEN a.name = 'amount' THEN mod(n, 200)::float8 END "
            "FROM generate_series(1, %s) AS n, (VALUES ('customer'), ('amount')) AS a(name)",
            (count,),
        )
    database.execute_sql("ANALYZE workflows")
    database.execute_sql("ANALYZE workflow_attributes")
