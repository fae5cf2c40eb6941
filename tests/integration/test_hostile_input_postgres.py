"""The hostile HTTP inputs of ``tests/embedded/test_hostile_input.py`` against a real
PostgreSQL, which refuses NUL in text where SQLite stores it: every one a 4xx, none
a 5xx, nothing stored."""

from __future__ import annotations

from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions

# The same tests, collected here again, run against the `untouched` fixture below.
from tests.embedded.test_hostile_input import (  # noqa: F401
    test_a_cursor_this_api_did_not_write_is_422,
    test_a_hostile_cancel_body_is_refused,
    test_a_hostile_definition_is_refused_and_registers_nothing,
    test_a_hostile_definition_leaves_the_existing_versions_as_they_were,
    test_a_hostile_idempotency_key_header_is_refused,
    test_a_hostile_start_is_refused_and_stores_nothing,
    test_hostile_path_and_query_parameters_are_4xx,
)

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def untouched(pg_url, tmp_path_factory, http_server) -> Iterator[tuple[EmbeddedFlow, falcon.testing.TestClient]]:
    """The API and an in-process engine on a PostgreSQL database of its own."""
    base = tmp_path_factory.mktemp("hostile-pg")
    definitions = write_definitions(base / "workflows", sample_definitions(http_server))
    settings = Settings.from_env(embedded_env(base, definitions, FLOW_DATABASE_URL=pg_url), embedded=True)
    with EmbeddedFlow(settings) as flow:
        assert "Postgres" in type(flow.runtime.store.database).__name__
        yield flow, falcon.testing.TestClient(create_app(runtime=flow.runtime))


def test_postgresql_really_refuses_nul_so_the_checks_matter(untouched):
    import psycopg2

    flow, _ = untouched
    with pytest.raises((ValueError, psycopg2.Error)), flow.runtime.store.unit_of_work():
        flow.runtime.store.database.execute_sql("SELECT %s", ("a\x00b",))


# -- regressions found by a hostile review of the graph features ---------------------
