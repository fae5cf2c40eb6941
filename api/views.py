"""Plain-JSON views of workflows and events, shared by the API and the CLI's ``--json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flow.core import kinds, saga
from flow.core.pools import waiting_for
from flow.core.state import ActivityState, WorkflowState
from flow.core.timestamps import iso
from flow.core.vocabulary import ActivityStatus
from flow.persistence.limits import LimitTable
from flow.persistence.mapping import StoredWorkflow
from flow.settings import Settings

if TYPE_CHECKING:
    from flow.core.callback_tokens import CallbackTokens


def activity_view(
    state: WorkflowState,
    a: ActivityState,
    ids: list[str],
    tokens: CallbackTokens | None = None,
    limits: LimitTable | None = None,
    queued: Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """One step of ``state``: what every kind has, its ``kind``, and its kind's own keys
    (every kind's keys are present, null but its own: :func:`flow.core.kinds.view`);
    ``ids``: every step's id by position (for ``depends_on``); ``tokens``: show a wait's
    callback token while it has not ended; ``limits``: say what a queued step waits for;
    ``queued``: the messages waiting in each named pool's queue, for the ``waiting_for`` of
    a step scheduled there."""
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
        "queue": a.queue,
        "limit": None if a.claim is None else {"name": a.claim.limit, "key": a.claim.key},
        "waiting_for": _waiting_for(a, limits, queued),
        **kinds.view(state, a, tokens),
    }


def _waiting_for(a: ActivityState, limits: LimitTable | None, queued: Mapping[str, int | None] | None) -> str | None:
    """What a step that waits to run waits for: a slot of its limit (``Queued``), or a
    worker of its named pool (``Scheduled`` there); None for any other step."""
    if limits is not None and a.claim is not None and a.status is ActivityStatus.QUEUED:
        return limits.waiting_for(a.claim)
    if a.queue is not None and a.status is ActivityStatus.SCHEDULED:
        return waiting_for(a.queue, (queued or {}).get(a.queue))
    return None


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


def workflow_view(
    row: StoredWorkflow,
    tokens: CallbackTokens | None = None,
    limits: LimitTable | None = None,
    queued: Mapping[str, int | None] | None = None,
    *,
    history_warn: int = Settings.history_warn,
) -> dict[str, Any]:
    """The workflow with its activities; ``tokens``: show the callback tokens of the waits
    that have not ended (the API does; ``flow run --json`` has no use for them);
    ``limits``: say what each queued step waits for; ``queued``: the backlog of the pools
    its scheduled steps wait on (:func:`activity_view`); ``history_warn``:
    ``FLOW_HISTORY_WARN``, past which ``history_warning`` says what to do."""
    s = row.state
    ids = [a.id for a in s.activities]
    return {
        **workflow_summary(row),
        "history_length": row.history_length,
        "history_warning": history_warning(row.history_length, history_warn),
        "input_data": s.input_data,
        "config": s.config,
        "output": s.output,
        "error": s.error,
        "idempotency_key": row.idempotency_key,
        # Rows ended before the end of a run cleared the flag may still carry it.
        "paused": s.paused and not s.status.ended,
        # A child: the position of the parent's activity that runs it.
        "parent_position": s.parent.position if s.parent else None,
        # Its workflow concurrency limit (flow.core.workflow_limit): the slot it claims, and
        # while its run waits for it, what it waits for.
        "limit": None if s.claim is None else {"name": s.claim.limit, "key": s.claim.key},
        "queued": s.queued and not s.status.ended,
        "attributes": dict(row.attributes),
        "waiting_for": limits.waiting_for(s.claim)
        if limits is not None and s.claim is not None and s.queued and not s.status.ended
        else None,
        # Its undos (flow.core.saga): running, done or failed; null: none ran.
        "compensation": saga.compensation(s),
        "activities": [activity_view(s, a, ids, tokens, limits, queued) for a in s.activities],
    }


def history_warning(length: int, warn: int) -> str | None:
    """What to do about a history of ``length`` entries past ``warn`` (None below it)."""
    if length < warn:
        return None
    return (
        f"this workflow's history holds {length} entries, past FLOW_HISTORY_WARN ({warn}): every read of it "
        "grows slower. Run a batch job as a child workflow per batch (README, Bounded history)."
    )


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "occurred_at": iso(event["occurred_at"])}
