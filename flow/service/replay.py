"""Replay before deploying: a new definition checked against the stored history of every
running workflow of its name, by :func:`flow.core.replay.check` (pure: no worker runs,
nothing is written). The CLI's ``flow replay``, ``POST /definitions/{name}/replay`` and
``PUT /definitions/{name}?check=running`` all read this one report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flow.core import replay
from flow.core.definition import Definition
from flow.errors import VersionIncompatible
from flow.persistence.running import running_workflows
from flow.persistence.store import Store

#: The most incompatible workflows a report lists one by one (the counts cover them all).
MAX_LISTED = 1000


def report(store: Store, definition: Definition, *, input_filter: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Each running workflow of ``definition``'s name, checked against it:
    ``{"definition", "workflows", "compatible", "incompatible", "verdicts"}``, the verdicts
    of the incompatible workflows first (at most :data:`MAX_LISTED`), then the compatible ones."""
    steps = definition.initial_activities()
    checked = compatible = 0
    listed: list[dict[str, Any]] = []
    fine: list[dict[str, Any]] = []
    for state in running_workflows(store, definition.name, input_filter=input_filter):
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


def refuse_incompatible(store: Store, definition: Definition) -> None:
    """Raise :class:`VersionIncompatible` with the report's incompatible workflows when
    ``definition`` would not take over every running workflow of its name."""
    found = report(store, definition)
    if found["incompatible"]:
        broken = [v for v in found["verdicts"] if not v["compatible"]]
        first = broken[0]
        why = "; ".join(d["reason"] for d in first["divergences"])
        raise VersionIncompatible(
            f"{found['incompatible']} of {found['workflows']} running {definition.name} workflows would not take "
            f"over this version (e.g. {first['workflow_id']}: {why})",
            broken,
        )
