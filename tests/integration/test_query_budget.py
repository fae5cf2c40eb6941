"""Every listing a client shapes has a budget (issue 28, items 6 and 7), the same on
SQLite and PostgreSQL: an ``input`` filter is held to a depth, an array size and a
number of values before any SQL is built (SQLite refused deep or wide ones with a
5xx; both databases spent seconds to minutes on wide ones), and the query to a time
budget (a statement timeout on PostgreSQL, a progress handler on SQLite)."""

from __future__ import annotations

import time

import pytest

from flow.errors import FilterTooCostly
from flow.persistence import input_filter
from tests.integration.test_retention_store import stores, workflow  # noqa: F401 - the fixture

#: An input of 110 KB or so: a list that a filter's every element is looked for in.
BIG = {"items": list(range(100_000, 115_700))}


def nested(levels: int) -> dict:
    value: object = 1
    for _ in range(levels - 1):
        value = {"a": value}
    return {"a": value}


def test_a_filter_nested_within_the_limit_finds_what_it_should(stores):  # noqa: F811
    store, _ = stores
    wanted = workflow(store, input_data=nested(input_filter.MAX_DEPTH))
    workflow(store, input_data=nested(input_filter.MAX_DEPTH - 1))
    assert [w.state.id for w in store.list_workflows(input_filter=nested(input_filter.MAX_DEPTH))] == [wanted]


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        # The issue's: 11 levels (61 characters), and an array of 493 elements, each a
        # 503 "The database cannot be reached" from SQLite.
        (nested(11), "nests objects and arrays deeper than 8 levels (at $.a.a.a.a.a.a.a.a)"),
        (nested(input_filter.MAX_DEPTH + 1), "deeper than 8 levels"),
        ({"a": list(range(493))}, "the array at $.a has 493 elements; a filter's arrays may have at most 32"),
        ({"a": [{"b": list(range(33))}]}, "the array at $.a[0].b has 33 elements"),
        ({f"k{i}": [1, 2] for i in range(50)}, "holds more than 128 values; a filter may hold at most 128"),
    ],
    ids=["issue-depth", "depth", "issue-array", "inner-array", "values"],
)
def test_a_filter_beyond_its_limits_is_refused_naming_the_limit_on_both_databases(stores, wanted, message):  # noqa: F811
    store, _ = stores
    workflow(store, input_data={"a": 1})
    with pytest.raises(FilterTooCostly) as refused:
        store.list_workflows(input_filter=wanted)
    assert refused.value.parameter == "input" and refused.value.retry_after_s is None
    assert message in refused.value.message


def test_a_filter_query_past_its_time_budget_stops_and_says_so_on_both_databases(stores):  # noqa: F811
    store, _ = stores
    for _ in range(20):
        workflow(store, input_data=BIG)
    # Within the limits, but every element is found only at the end of every list.
    costly = {"items": list(range(115_700 - input_filter.MAX_ARRAY, 115_700))}
    store.query_timeout_s = 0.1
    started = time.monotonic()
    with pytest.raises(FilterTooCostly) as over:
        store.list_workflows(input_filter=costly)
    took = time.monotonic() - started
    assert over.value.parameter == "input" and over.value.retry_after_s is None
    assert "the query ran past its budget of 0.1 s" in over.value.message
    assert took < 2.0, f"stopped after {took:.2f} s"
    # The budget was the query's own: the same connection answers the next one in full.
    store.query_timeout_s = 60.0
    assert len(store.list_workflows(input_filter=costly)) == 20
    assert len(store.list_workflows(limit=5)) == 5


def test_the_time_budget_leaves_no_setting_on_the_pooled_connection(stores):  # noqa: F811
    store, _ = stores
    workflow(store)
    store.query_timeout_s = 0.5
    assert len(store.list_workflows()) == 1
    with store.unit_of_work():
        if "Postgres" in type(store.database).__name__:
            assert store.database.execute_sql("SHOW statement_timeout").fetchone()[0] == "0"
        else:
            # A progress handler left behind, its deadline past, would interrupt this
            # statement (far more than its 10,000 instructions) once its 0.5 s are over.
            time.sleep(0.6)
            count = store.database.execute_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) "
                "SELECT count(*) FROM n"
            ).fetchone()[0]
            assert count == 100_000
