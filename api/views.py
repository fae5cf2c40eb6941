"""Plain-JSON views of workflows and events, shared by the API and the CLI's ``--json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flow.core import kinds
from flow.core.state import ActivityState, WorkflowState
from flow.core.timestamps import iso
from flow.persistence.mapping import StoredWorkflow

if TYPE_CHECKING:
    from flow.core.callback_tokens import CallbackTokens


def activity_view(
    state: WorkflowState, a: ActivityState, ids: list[str], tokens: CallbackTokens | None = None
) -> dict[str, Any]:
    """One step of ``state``: what every kind has, its ``kind``, and its kind's own keys
    (every kind's keys are present, null but its own: :func:`flow.core.kinds.view`);
    ``ids``: every step's id by position (for ``depends_on``); ``tokens``: show a wait's
    callback token while it has not ended."""
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
        **kinds.view(state, a, tokens),
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
        "priority": s.priority,
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
        # Rows ended before the end of a run cleared the flag may still carry it.
        "paused": s.paused and not s.status.ended,
        # A child: the position of the parent's activity that runs it.
        "parent_position": s.parent.position if s.parent else None,
        "activities": [activity_view(s, a, ids, tokens) for a in s.activities],
    }


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "occurred_at": iso(event["occurred_at"])}
