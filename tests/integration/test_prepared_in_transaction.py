"""The group commit's statement, prepared on a connection's first use, inside a
transaction too: a batch with a rerun commits in one (its rows are rewritten with it),
and on a connection that has not prepared the statement yet (an engine just restarted)
the failed EXECUTE used to abort that transaction, and the PREPARE after it with it:
the engine could not handle the workflow and dead-lettered the rerun."""

from __future__ import annotations

import pytest
from playhouse.db_url import connect

from flow.persistence.prepared import execute_prepared
from flow.testing import new_database

pytestmark = pytest.mark.services


def test_a_statement_is_prepared_on_first_use_inside_a_transaction(services):
    with new_database() as url:
        database = connect(url)
        try:
            with database.atomic():
                for _ in range(2):  # prepared by the first, only executed by the second
                    assert execute_prepared(database, "probe", "SELECT $1 + 1", "int", [41]) == [(42,)]
                database.execute_sql("SELECT 1")  # the transaction is still usable
        finally:
            database.close()
