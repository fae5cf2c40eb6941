"""A concurrency limit on a whole workflow (docs/design.md, "Concurrency limits").

A definition may say, at its top level,
``"concurrency": {"key": "input.tenant", "limit": 3, "strategy": "queue"}`` (``name``
for a limit shared by name, as a step's): at most 3 workflows of each key value run at
once. A workflow over the limit is started but ``queued`` (no step is scheduled) until
the admitting engine grants it a slot, by priority then age, fair across keys — the same
:func:`flow.core.limits.admit` that lets steps in, the same grant (a ``slot`` timer row,
here with no position, its ``attempt`` the run). It holds its slot from the grant until
it ends, however it ends: what holds a slot is its row (``In Progress``, started and not
queued), so the commit that ends or deletes it gives the slot back.

The claim (the key's value) is made once, when the workflow is created, from its input:
the input never changes, so a claim made later would read the same. An input the key
cannot be evaluated over refuses the start (:class:`~flow.errors.InvalidInput`).

Strategies (Hatchet's): ``queue`` waits as above; with ``cancel_newest`` a workflow
that arrives while its key is full is cancelled at once, with the reason — the
admitting transaction writes a ``limit-cancel`` timer for it instead of a grant (the
actor owns its state; the admitter only writes rows), and ``decide`` cancels. With
``cancel_in_progress`` the newcomer waits while the admitting transaction writes a
``limit-cancel`` timer for the oldest running workflow of its key
(:func:`flow.core.limits.displaced`); that one's end frees the slot it is let in by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flow.core import graph, limits
from flow.core.frozen import replace
from flow.core.state import WorkflowState
from flow.core.steps import HistoryEntry
from flow.core.vocabulary import HistoryType, TimerKind

#: The strategies a definition may name.
STRATEGIES = ("queue", "cancel_in_progress", "cancel_newest")

#: JSON Schema of a definition's top-level ``concurrency`` key.
SCHEMA: dict[str, Any] = {
    **limits.SCHEMA,
    "properties": {**limits.SCHEMA["properties"], "strategy": {"enum": list(STRATEGIES)}},
}


def problems(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the schema cannot say of a definition's ``concurrency``: a key that is not a
    valid expression."""
    spec = body.get("concurrency")
    if spec is None or "key" not in spec:
        return []
    return graph.expression_problems(spec["key"], "$.concurrency.key")


def from_body(body: Mapping[str, Any]) -> limits.StepLimit | None:
    """The definition's workflow limit (an inline one is named after the definition)."""
    spec = body.get("concurrency")
    if spec is None:
        return None
    name = spec.get("name")
    return limits.StepLimit(name=name or body["name"], key=spec.get("key"), limit=spec.get("limit"), shared=bool(name))


def strategy_of(body: Mapping[str, Any]) -> str:
    """The definition's workflow limit's strategy (``queue`` unless it says otherwise)."""
    return str((body.get("concurrency") or {}).get("strategy", "queue"))


def claim(
    limit: limits.StepLimit, input_data: Mapping[str, Any], priority: int, *, strategy: str = "queue"
) -> limits.Claim | str:
    """The claim of a workflow started with ``input_data``; a string: why its key has no
    value over that input."""
    value = ""
    if limit.key is not None:
        try:
            value = limits.key_text(graph.evaluate(limit.key, {"input": input_data}))
        except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
            return graph.unevaluable("concurrency.key", limit.key, e)
    return limits.Claim(limit.name, value, limit.limit, priority, strategy=strategy)


def queue(state: WorkflowState) -> tuple[WorkflowState, HistoryEntry]:
    """The workflow's run begins waiting for its slot (at its start, and at each
    retry-from-failure: a new run claims a slot again)."""
    assert state.claim is not None
    data: dict[str, Any] = {"run": state.run, "limit": state.claim.limit}
    if state.claim.key:
        data["key"] = state.claim.key
    return replace(state, queued=True), HistoryEntry(HistoryType.QUEUE_WORKFLOW, data=data)


def cancel_reason(state: WorkflowState, run: int) -> str | None:
    """Why a ``limit-cancel`` timer for ``run`` cancels the workflow; None: it is stale
    (the run ended, a newer one began, or the workflow is not in the state its strategy
    cancels). ``cancel_newest``, a queued run that arrived while its key was full:
    ``3 workflows with key acme already run (cancel_newest)`` (a number set at run time is
    the admitter's, which its timer does not carry: then "as many as the limit allows");
    ``cancel_in_progress``, a run let in, displaced by a newer one:
    ``a newer workflow with key acme started (cancel_in_progress)``."""
    claim = state.claim
    if claim is None or not state.status.open or run != state.run:
        return None
    which = f" with key {claim.key}" if claim.key else ""
    if claim.strategy == "cancel_in_progress" and not state.queued:
        return f"a newer workflow{which} started (cancel_in_progress)"
    if claim.strategy != "cancel_newest" or not state.queued:
        return None
    n = claim.max
    if n is None:
        return f"as many workflows{which} as the limit allows already run (cancel_newest)"
    return f"{n} workflow{'' if n == 1 else 's'}{which} already run{'s' if n == 1 else ''} (cancel_newest)"


def is_grant(state: WorkflowState, kind: str, position: int | None, attempt: int) -> bool:
    """Whether a fired timer is a grant for this run while it waits (else it is stale:
    the run ended or a newer one began; the commit deletes the row either way)."""
    return kind == TimerKind.SLOT and position is None and state.queued and attempt == state.run


__all__ = [
    "SCHEMA",
    "STRATEGIES",
    "cancel_reason",
    "claim",
    "from_body",
    "is_grant",
    "problems",
    "queue",
    "strategy_of",
]
