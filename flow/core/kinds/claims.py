"""The claims of steps with a concurrency or rate limit (:mod:`flow.core.limits`): each
step's key read for it when its turn first comes (a map's items when the map starts).
Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flow.core import graph, limits
from flow.core.frozen import replace
from flow.core.state import ActivityState, WorkflowState


def claims(
    state: WorkflowState, activities: Sequence[ActivityState], steps: Sequence[ActivityState]
) -> list[ActivityState] | str:
    """``steps`` (each with a concurrency limit) with their claims, each key read now for
    its step (``activities``: what the keys read of the outputs); or why one key has no
    value (the step fails before it runs; a map, for one of its items)."""
    claimed = []
    for step in steps:
        assert step.limit is not None
        value = ""
        if (key := step.limit.key) is not None:
            try:
                value = limits.key_text(graph.evaluate(key, key_context(state, activities, step)))
            except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
                why = graph.unevaluable("concurrency.key", key, e)
                index = getattr(step.spec, "index", None)
                return why if index is None else f"item {index}: {why}"
        limit = step.limit
        claim = limits.Claim(limit.name, value, limit.limit, state.priority, limit.per_s, limit.burst, limit.rate)
        claimed.append(replace(step, claim=claim))
    return claimed


def key_context(state: WorkflowState, activities: Sequence[ActivityState], step: ActivityState) -> dict[str, Any]:
    """What a concurrency key reads: ``{"input", "outputs", "item"}``. The outputs so far
    cost O(activities), so they are gathered only for a key that reads them (a map's
    thousands of items would otherwise pay it each)."""
    key = step.limit.key if step.limit is not None else None
    context: dict[str, Any] = {"input": state.input_data, "item": getattr(step.spec, "item", None)}
    if key is not None and "outputs" in key:
        context["outputs"] = graph.condition_context(state.input_data, activities)["outputs"]
    return context


__all__ = ["claims", "key_context"]
