"""Plain-JSON views of workflows and events, shared by the API and the CLI's ``--json``."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from flow.core.lineage import child_id
from flow.core.state import ActivityState
from flow.core.timestamps import iso
from flow.persistence.mapping import StoredWorkflow

if TYPE_CHECKING:
    from flow.core.callback_tokens import CallbackTokens


def activity_view(
    a: ActivityState,
    ids: list[str],
    workflow_id: str = "",
    items: tuple[ActivityState, ...] | None = None,
    callback_token: str | None = None,
) -> dict[str, Any]:
    """One activity; ``ids``: every activity's id by position (for ``depends_on``);
    ``workflow_id``: its workflow's (for a child activity's ``child_id``); ``items``: a
    map's items, which it counts by status; ``callback_token``: a wait's, while it has
    not ended."""
    duration_ms = None
    if a.started_at and a.finished_at:
        duration_ms = round((a.finished_at - a.started_at).total_seconds() * 1000, 3)
    return {
        "position": a.position,
        "id": a.id,
        "name": a.name,
        "depends_on": None if a.depends_on is None else [ids[p] for p in a.depends_on],
        "trigger": a.trigger.value,
        "when": a.when,
        "independent": a.independent,
        "required": a.required,
        "status": a.status.value,
        "attempt": a.attempt,
        "max_attempts": a.retry.max_attempts,
        "scheduled_at": iso(a.scheduled_at),
        "started_at": iso(a.started_at),
        "finished_at": iso(a.finished_at),
        "duration_ms": duration_ms,
        "output": a.output,
        "error": a.error,
        "skip_reason": a.skip_reason,
        "heartbeat": None
        if a.heartbeat_at is None and a.heartbeat is None
        else {"details": a.heartbeat, "at": iso(a.heartbeat_at)},
        "map": None if a.map_over is None else {"over": a.map_over, "max_concurrency": a.max_concurrency},
        "items": None if a.map_over is None else dict(Counter(i.status.value for i in items or ())),
        "parent": None if a.parent is None else ids[a.parent],
        "index": a.index,
        "item": a.item,
        "sleep_s": a.sleep_s,
        "sleep_until": a.sleep_until,
        "wait_for": a.wait_for,
        "timeout_s": a.timeout_s,
        "choices": None if a.choices is None else list(a.choices),
        "callback_token": callback_token,
        # A child activity: the definition it runs, and its child (once started).
        "workflow": None
        if a.child is None
        else {"name": a.child.definition, "version": a.child.version, "input": a.child.input},
        "child_id": child_id(workflow_id, a.id) if a.child is not None and a.attempt else None,
    }


def workflow_summary(row: StoredWorkflow) -> dict[str, Any]:
    s = row.state
    return {
        "id": s.id,
        "name": s.name,
        "definition_version": s.definition_version,
        "status": s.status.value,
        "created_at": iso(s.created_at),
        "updated_at": iso(row.updated_at),
        "finished_at": iso(s.finished_at),
        "parent_id": s.parent.workflow_id if s.parent else None,
    }


def workflow_view(row: StoredWorkflow, tokens: CallbackTokens | None = None) -> dict[str, Any]:
    """The workflow with its activities; ``tokens``: show the callback tokens of the waits
    that have not ended (the API does; ``flow run --json`` has no use for them)."""
    s = row.state
    ids = [a.id for a in s.activities]
    return {
        **workflow_summary(row),
        "input_data": s.input_data,
        "config": s.config,
        "output": s.output,
        "error": s.error,
        "idempotency_key": row.idempotency_key,
        "paused": s.paused,
        # A child: the position of the parent's activity that runs it.
        "parent_position": s.parent.position if s.parent else None,
        "activities": [
            activity_view(
                a,
                ids,
                s.id,
                tuple(s.activities[p] for p in s.items[a.position]),
                tokens.of(s, a) if tokens is not None else None,
            )
            for a in s.activities
        ],
    }


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "occurred_at": iso(event["occurred_at"])}
