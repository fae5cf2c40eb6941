"""One budget for a whole evaluation of a definition's expression (issue 28, item 3):
elements visited and bytes built, whatever the expression and the data; and a cap on a
map's items' bytes together, besides their count."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.core import expressions, graph
from flow.core.kinds import map as maps
from flow.core.vocabulary import ActivityStatus
from flow.errors import EvaluationBudgetExceeded
from tests.unit.test_graph import Run, state_of
from tests.unit.test_maps import item_ids, mapped, run_of

S = ActivityStatus

# The condition: it validates, and a projection runs join() once per item,
# each call under the old per-call limit of 1 MiB. 30,000 items ("a", a 150 KB input)
# made it build 300 MB before the budget; 240 KB, 2.6 GB.
_LITERAL = '"' + "X" * 740 + '"'
_BUILDER = f"input.items[*].[`{_LITERAL}`] | [] | [*].join('', [{', '.join(['@'] * 64)}])"
HOSTILE_WHEN = f"length({_BUILDER}) > `0`"


def _peak_bytes(function: Any, *args: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_hostile_condition_validates_and_then_fails_its_step_naming_the_budget():
    assert len(HOSTILE_WHEN) <= graph.MAX_EXPRESSION_CHARS
    assert graph.expression_problems(HOSTILE_WHEN, "$") == []
    context = {"input": {"items": ["a"] * 30_000}, "outputs": {}}
    verdict, peak = _peak_bytes(graph.by_condition, HOSTILE_WHEN, context)
    assert verdict.fail is not None and verdict.skip is None
    assert "evaluation budget exceeded: builds more than 8,388,608 bytes" in verdict.fail, verdict.fail
    assert len(verdict.fail) <= graph.MAX_REASON_CHARS
    assert peak < 2 * expressions.MAX_EVALUATION_BYTES, f"peak {peak:,} bytes"


def test_the_hostile_map_over_fails_the_map_before_any_item_is_stored():
    run = run_of(mapped(over=_BUILDER), items=["a"] * 30_000)
    assert run.status("each") is S.FAILED
    assert item_ids(run) == []
    assert "evaluation budget exceeded" in (run.activity("each").error or "")


def test_an_expression_visiting_more_elements_than_the_budget_fails_naming_it():
    # Builds nothing but a list of booleans, yet visits every element many times.
    expression = "input.items[?" + " && ".join(["@ == `1`"] * 30) + "]"
    verdict = graph.by_condition(expression, {"input": {"items": [1] * 10_000}})
    assert verdict.fail is not None
    assert "evaluation budget exceeded: visits more than 250,000 elements" in verdict.fail


def test_items_sharing_one_large_value_are_held_to_the_items_bytes_cap():
    """``[input.big, ...]`` builds 40 pointers, but 40 items of 256 KB each are stored,
    sent and loaded in full: 10 MB from a 256 KB input."""
    over = "[" + ", ".join(["input.big"] * 40) + "]"
    run = Run(state_of(mapped(over=over), input_data={"big": "x" * 256_000}))
    assert run.status("each") is S.FAILED
    assert item_ids(run) == []
    error = run.activity("each").error or ""
    assert f"a map's items may hold at most {maps.MAX_ITEMS_BYTES:,}" in error, error


def test_a_map_of_the_most_items_with_a_few_fields_each_is_within_the_budget():
    items = [{"id": f"order-{i:05d}", "sku": "A-1", "quantity": i} for i in range(maps.MAX_ITEMS)]
    run = run_of(mapped(over="input.items[?quantity >= `0`].{id: id, n: quantity}"), items=items)
    assert run.status("each") is S.RUNNING
    assert len(item_ids(run)) == maps.MAX_ITEMS


def test_a_condition_over_the_largest_input_still_evaluates():
    items = [{"id": i, "tags": ["a", "b"]} for i in range(5_000)]
    context = {"input": {"items": items}, "outputs": {}}
    assert graph.by_condition("length(input.items[*].tags[] | sort(@)) > `9999`", context).run


# -- property: random expressions over random JSON ---------------------------------------

_KEYS = st.sampled_from(["a", "b", "c"])
_SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text("xyé", max_size=6)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=30,
)


def _expressions() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(["@", "a", "b", "c", "`1`", '`"xy"`', "`[1, 2]`"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        two = st.tuples(inner, inner)
        return st.one_of(
            inner.map(lambda e: f"{e}[*]"),
            inner.map(lambda e: f"{e}[]"),
            inner.map(lambda e: f"{e}.*"),
            inner.map(lambda e: f"{e}[::-1]"),
            two.map(lambda p: f"{p[0]} | {p[1]}"),
            two.map(lambda p: f"[{p[0]}, {p[1]}]"),
            two.map(lambda p: f"{{k: {p[0]}, v: {p[1]}}}"),
            two.map(lambda p: f"{p[0]}[?{p[1]}]"),
            two.map(lambda p: f"{p[0]} || {p[1]}"),
            inner.map(lambda e: f"to_string({e})"),
            inner.map(lambda e: f"to_array({e})"),
            inner.map(lambda e: f"join('', {e})"),
            two.map(lambda p: f"join(to_string({p[0]}), {p[1]})"),
            inner.map(lambda e: f"map(&to_string(@), {e})"),
            inner.map(lambda e: f"sort({e})"),
            inner.map(lambda e: f"sort_by({e}, &to_string(@))"),
            inner.map(lambda e: f"keys({e})"),
            inner.map(lambda e: f"values({e})"),
            inner.map(lambda e: f"reverse({e})"),
            two.map(lambda p: f"merge({p[0]}, {p[1]})"),
            inner.map(lambda e: f"length({e})"),
        )

    return st.recursive(leaf, extend, max_leaves=12)


#: A small budget, so that random expressions over small data reach it often.
_SMALL = {"max_steps": 2_000, "max_bytes": 64 << 10}
#: What evaluating takes besides what it builds: frames, iterators, the error raised.
_SLACK = 32 << 10


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=_expressions(), data=_JSON, copies=st.integers(1, 400))
def test_no_expression_over_any_data_builds_more_than_its_budget(expression, data, copies):
    """Random JMESPath over random JSON (repeated, so that projections have work to do)
    either gives a value having built no more than the budget, or fails with the budget's
    error having built no more than the budget; nothing else takes memory unbounded."""
    try:
        expressions.compile_condition(expression)
    except ValueError:
        return  # refused at validation: never evaluated
    context = {"a": [data] * copies, "b": data, "c": {"a": data, "b": [data, data]}}
    budget = expressions.Budget(**_SMALL)
    tracemalloc.start()
    try:
        expressions.evaluate(expression, context, budget=budget)
    except EvaluationBudgetExceeded:
        pass
    except Exception:  # noqa: BLE001 - the data's type errors are the expression's business
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= budget.max_bytes + _SLACK, f"{expression}: peak {peak:,} bytes, {budget!r}"


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("input.items[*].n", [1, 2]),
        ("input.items[?n > `1`].n", [2]),
        ("join(',', input.items[*].to_string(n))", "1,2"),
        ("to_string(input.items[0])", '{"n":1}'),
        ("sort_by(input.items, &n)[-1].n", 2),
        ("input.items[] | [0].n", 1),
    ],
)
def test_the_budgeted_evaluator_gives_jmespath_values(expression, value):
    context = {"input": {"items": [{"n": 1}, {"n": 2}]}}
    assert expressions.evaluate(expression, context) == value
    assert json.dumps(value)
