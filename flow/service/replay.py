"""Replay before deploying: a new definition checked against the stored history of every
running workflow of its name, by :func:`flow.core.replay.check` (pure: no worker runs,
nothing is written). The CLI's ``flow replay``, ``POST /definitions/{name}/replay`` and
``PUT /definitions/{name}?check=running`` all read this one report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flow.core import replay
from flow.core.definition import Definition
from flow.errors import FilterTooCostly, VersionIncompatible
from flow.persistence.running import running_workflows
from flow.persistence.store import Store

#: The most incompatible workflows a report lists one by one (the counts cover them all).
MAX_LISTED = 1000
#: The most steps of running workflows (a map's items included) the API checks in one
#: request — about five seconds of reading on SQLite. Past it the request is refused:
#: an API thread is not held for as long as there are running workflows; ``flow replay``,
#: which reads the database itself, has no such budget.
API_MAX_STEPS = 50_000


def report(
    store: Store,
    definition: Definition,
    *,
    input_filter: Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    blame: str = "name",
) -> dict[str, Any]:
    """Each running workflow of ``definition``'s name, checked against it:
    ``{"definition", "workflows", "compatible", "incompatible", "verdicts"}``, the verdicts
    of the incompatible workflows first (at most :data:`MAX_LISTED`), then the compatible ones.

    ``max_steps``: :class:`FilterTooCostly` (naming ``blame``) once the running workflows
    read hold more steps than that (the API's budget, :data:`API_MAX_STEPS`)."""
    steps = definition.initial_activities()
    checked = compatible = read = 0
    listed: list[dict[str, Any]] = []
    fine: list[dict[str, Any]] = []
    for state in running_workflows(store, definition.name, input_filter=input_filter):
        read += len(state.activities)
        if max_steps is not None and read > max_steps:
            raise FilterTooCostly(
                blame,
                f"the running {definition.name} workflows hold more than {max_steps} steps, more than the API "
                "checks in one request: run `flow replay` with the definition against the database (or a copy)",
            )
        verdict = replay.check(state, steps)
        checked += 1
        if verdict.compatible:
            compatible += 1
            if len(fine) + len(listed) < MAX_LISTED:
                fine.append(verdict.to_json())
        elif len(listed) < MAX_LISTED:
            listed.append(verdict.to_json())
    verdicts = (listed + fine)[:MAX_LISTED]
    return {
        "definition": definition.name,
        "workflows": checked,
        "compatible": compatible,
        "incompatible": checked - compatible,
        "verdicts": verdicts,
    }


def refuse_incompatible(store: Store, definition: Definition, *, max_steps: int | None = None) -> None:
    """Raise :class:`VersionIncompatible` with the report's incompatible workflows when
    ``definition`` would not take over every running workflow of its name (``max_steps``:
    as for :func:`report`, blaming the ``check`` parameter)."""
    found = report(store, definition, max_steps=max_steps, blame="check")
    if found["incompatible"]:
        broken = [v for v in found["verdicts"] if not v["compatible"]]
        first = broken[0]
        why = "; ".join(d["reason"] for d in first["divergences"])
        raise VersionIncompatible(
            f"{found['incompatible']} of {found['workflows']} running {definition.name} workflows would not take "
            f"over this version (e.g. {first['workflow_id']}: {why})",
            broken,
        )
