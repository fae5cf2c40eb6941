"""The one mapping between table rows and the core's records, both ways.

Every reader of workflows — the engine's load, its recovery pages, the API's queries
— fetches raw rows of :data:`WORKFLOW_COLUMNS` and :data:`ACTIVITY_COLUMNS` (building
the query with Peewee if it likes, executing it raw: Peewee's model instances cost
the engine milliseconds per workflow) and maps them here; every writer takes its
column values from :func:`workflow_changes` and :func:`activity_changes`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

import peewee

from flow.core import kinds
from flow.core.limits import Claim, StepLimit
from flow.core.lineage import ParentLink
from flow.core.policy import RetryPolicy, Timeouts
from flow.core.state import ActivityState, ActivityStatus, Signal, StoredJSON, WorkflowState, WorkflowStatus
from flow.core.timestamps import iso, parse_iso
from flow.core.vocabulary import Trigger
from flow.persistence.records import replaced

T = TypeVar("T")

#: Columns read by :func:`workflow_from_row` and :func:`activity_from_row`, in order: the
#: engine loads a workflow with these two plain statements (building them with
#: Peewee's query compiler and model instances cost it milliseconds per workflow).
WORKFLOW_COLUMNS = (
    "id, definition_name, definition_version, partition, status, started, run, run_started_at, input_data, "
    "config, output, error, created_at, finished_at, version, updated_at, idempotency_key, traceparent, "
    "parent_id, parent_position, parent_attempt, paused, priority, limit_name, limit_key, limit_max, limit_strategy, "
    "queued, history_length"
)
#: Columns of a new activity row (:func:`activity_row`).
ACTIVITY_INSERT_COLUMNS = tuple(
    "workflow_id position name independent required config retry timeouts graph status attempt "
    "attempts_before output error scheduled_at started_at finished_at skip_reason heartbeat "
    "limit_name limit_key limit_max priority rate_per_s rate_burst limit_rate".split()
)
ACTIVITY_COLUMNS = (
    "position, name, independent, required, config, retry, timeouts, status, attempt, attempts_before, output, "
    "error, scheduled_at, started_at, finished_at, graph, skip_reason, heartbeat, limit_name, limit_key, "
    "limit_max, priority, rate_per_s, rate_burst, limit_rate"
)


@dataclass(frozen=True)
class StoredWorkflow:
    """A workflow as stored: its state and the bookkeeping columns around it."""

    state: WorkflowState
    #: Bumped by every committed transition (the version check of a commit).
    version: int
    partition: int
    updated_at: datetime
    idempotency_key: str | None
    #: Entries of its history (kept by the commits: no count of the events table).
    history_length: int = 0
    #: Its search attributes as the API shows them; read by the API's ``get`` only.
    attributes: Mapping[str, Any] = field(default_factory=dict)


def workflow_from_row(
    row: tuple[Any, ...], activities: Iterable[ActivityState], inbox: Iterable[Signal] = ()
) -> StoredWorkflow:
    """A ``SELECT WORKFLOW_COLUMNS`` row (and its activities, in order; and its inbox,
    in order, when the reader needs it: the engine does, the API does not) as stored."""
    (
        workflow_id,
        name,
        definition_version,
        partition,
        status,
        started,
        run,
        run_started_at,
        input_data,
        config,
        output,
        error,
        created_at,
        finished_at,
        version,
        updated_at,
        idempotency_key,
        traceparent,
        parent_id,
        parent_position,
        parent_attempt,
        paused,
        priority,
        limit_name,
        limit_key,
        limit_max,
        limit_strategy,
        queued,
        history_length,
    ) = row
    stored = tuple(activities)
    if stored and stored[-1].parent is not None:  # items of maps: their map's config, shared
        stored = tuple(a if a.parent is None else _with_map(a, stored[a.parent]) for a in stored)
    state = WorkflowState(
        id=workflow_id,
        name=name,
        definition_version=definition_version,
        status=WorkflowStatus(status),
        input_data=_json(input_data),
        config=_json(config),
        activities=stored,
        created_at=_required(_timestamp(created_at)),
        started=bool(started),
        run=run,
        run_started_at=_timestamp(run_started_at),
        output=_json(output),
        error=error,
        finished_at=_timestamp(finished_at),
        traceparent=traceparent,
        inbox=tuple(inbox),
        paused=bool(paused),
        parent=ParentLink(parent_id, parent_position, parent_attempt) if parent_id is not None else None,
        priority=priority,
        claim=None
        if limit_name is None
        else Claim(limit_name, limit_key or "", limit_max, priority, strategy=limit_strategy or "queue"),
        queued=bool(queued),
    )
    return StoredWorkflow(state, version, partition, _required(_timestamp(updated_at)), idempotency_key, history_length)


def _with_map(item: ActivityState, parent: ActivityState) -> ActivityState:
    """An item as loaded: its map's config and concurrency limit (stored once, on the map)."""
    return replace(item, config=parent.config, limit=parent.limit)


def read_workflows(
    database: peewee.Database, query: peewee.ModelSelect, *, with_activities: bool = True
) -> list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Raw rows of a workflows query (which must select :data:`WORKFLOW_COLUMNS`, see
    :func:`workflow_columns`) with the raw rows of their activities, in order."""
    rows = database.execute_sql(*query.sql()).fetchall()
    activities: dict[str, list[tuple[Any, ...]]] = {row[0]: [] for row in rows}
    if with_activities and rows:
        ids = list(activities)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join([database.param] * len(chunk))
            for a in database.execute_sql(
                f"SELECT workflow_id, {ACTIVITY_COLUMNS} FROM activities WHERE workflow_id IN ({marks}) "
                "ORDER BY workflow_id, position",
                chunk,
            ):
                activities[a[0]].append(a[1:])
    return [(row, activities[row[0]]) for row in rows]


def workflow_columns() -> list[peewee.Field]:
    """The fields of :data:`WORKFLOW_COLUMNS`, to ``select()`` with Peewee."""
    from flow.persistence.models import WorkflowRecord

    return [WorkflowRecord._meta.columns[name.strip()] for name in WORKFLOW_COLUMNS.split(",")]


def activity_from_row(row: tuple[Any, ...]) -> ActivityState:
    """A ``SELECT ACTIVITY_COLUMNS`` row as state."""
    (
        position,
        name,
        independent,
        required,
        config,
        retry,
        timeouts,
        status,
        attempt,
        attempts_before,
        output,
        error,
        scheduled_at,
        started_at,
        finished_at,
        graph,
        skip_reason,
        heartbeat,
        limit_name,
        limit_key,
        limit_max,
        priority,
        rate_per_s,
        rate_burst,
        limit_rate,
    ) = row
    beat = _json(heartbeat) or {}
    claim = (
        None
        if limit_name is None
        else Claim(limit_name, limit_key or "", limit_max, priority or 3, rate_per_s, rate_burst, bool(limit_rate))
    )
    return ActivityState(
        position=position,
        name=name,
        independent=bool(independent),
        required=bool(required),
        config=_json(config),
        retry=_frozen(RetryPolicy, retry),
        timeouts=_frozen(Timeouts, timeouts),
        status=ActivityStatus(status),
        attempt=attempt,
        attempts_before=attempts_before,
        output=_json(output),
        error=error,
        scheduled_at=_timestamp(scheduled_at),
        started_at=_timestamp(started_at),
        finished_at=_timestamp(finished_at),
        skip_reason=skip_reason,
        heartbeat=beat.get("details"),
        heartbeat_at=parse_iso(beat["at"]) if beat.get("at") else None,
        claim=claim,
        **_graph_fields(_json(graph)),
    )


@lru_cache(maxsize=512)
def _frozen(kind: type[T], text: str) -> T:
    """A ``retry`` or ``timeouts`` column as its frozen record: built once per text, and shared."""
    return kind(**json.loads(text))


def graph_column(activity: ActivityState) -> str | None:
    """The ``graph`` column of an activity: what differs from the positional rule, and
    what its kind reads from the definition (:func:`flow.core.kinds.spec_to_json`)."""
    graph: dict[str, Any] = {}
    if activity.id != activity.name:
        graph["id"] = activity.id
    if activity.depends_on is not None:
        graph["depends_on"] = list(activity.depends_on)
    if activity.trigger is not Trigger.ALL_SUCCEEDED:
        graph["trigger"] = activity.trigger.value
    if activity.when is not None:
        graph["when"] = activity.when
    if activity.queue is not None:
        graph["queue"] = activity.queue
    graph.update(kinds.spec_to_json(activity.spec))
    if activity.limit is not None and activity.parent is None:  # an item's is its map's
        graph["concurrency"] = activity.limit.to_json()
    return json.dumps(graph, separators=(",", ":")) if graph else None


def activity_row(workflow_id: str, activity: ActivityState) -> dict[str, Any]:
    """Every column of a new activity row (an item of a map, appended by a transition),
    with JSON columns as their text."""
    return {
        "workflow_id": workflow_id,
        "position": activity.position,
        "name": activity.name,
        "independent": activity.independent,
        "required": activity.required,
        # An item's config is its map's (linked again on load): not a copy per row.
        "config": "{}" if activity.parent is not None else json.dumps(activity.config, separators=(",", ":")),
        "retry": json.dumps(activity.retry.to_dict(), separators=(",", ":")),
        "timeouts": json.dumps(activity.timeouts.to_dict(), separators=(",", ":")),
        "graph": graph_column(activity),
        **activity_changes(activity),
        "output": None if activity.output is None else json.dumps(activity.output, separators=(",", ":")),
        "heartbeat": None if (beat := heartbeat_column(activity)) is None else json.dumps(beat, separators=(",", ":")),
    }


def _graph_fields(graph: dict[str, Any] | None) -> dict[str, Any]:
    if not graph:
        return {}
    return {
        "id": graph.get("id", ""),
        "depends_on": tuple(graph["depends_on"]) if "depends_on" in graph else None,
        "trigger": Trigger(graph.get("trigger", Trigger.ALL_SUCCEEDED)),
        "when": graph.get("when"),
        "queue": graph.get("queue"),
        "spec": kinds.spec_from_json(graph),
        "limit": StepLimit.from_json(graph.get("concurrency")),
    }


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _required(value: datetime | None) -> datetime:
    """A timestamp that the schema never leaves empty (a row that does is unreadable)."""
    if value is None:
        raise ValueError("a required timestamp is empty")
    return value


def _timestamp(value: Any) -> datetime | None:
    """PostgreSQL hands back datetimes; SQLite the text Peewee wrote."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def activity_changes(activity: ActivityState) -> dict[str, Any]:
    """The columns a transition may change on an activity's row."""
    return {
        "status": activity.status.value,
        "attempt": activity.attempt,
        "attempts_before": activity.attempts_before,
        "output": activity.output,
        "error": activity.error,
        "scheduled_at": activity.scheduled_at,
        "started_at": activity.started_at,
        "finished_at": activity.finished_at,
        "skip_reason": activity.skip_reason,
        "heartbeat": heartbeat_column(activity),
        **claim_columns(activity),
    }


def claim_columns(activity: ActivityState) -> dict[str, Any]:
    """The columns of an activity's claim on a concurrency limit (all null: none)."""
    claim = activity.claim
    return {
        "limit_name": claim.limit if claim else None,
        "limit_key": claim.key if claim else None,
        "limit_max": claim.max if claim else None,
        "priority": claim.priority if claim else None,
        "rate_per_s": claim.per_s if claim else None,
        "rate_burst": claim.burst if claim else None,
        "limit_rate": claim.rate if claim else None,
    }


def heartbeat_column(activity: ActivityState) -> dict[str, Any] | None:
    """The ``heartbeat`` column's value (as JSON): None until a heartbeat came."""
    if activity.heartbeat_at is None and activity.heartbeat is None:
        return None
    return {"details": activity.heartbeat, "at": iso(activity.heartbeat_at) if activity.heartbeat_at else None}


def workflow_changes(state: WorkflowState) -> dict[str, Any]:
    """The columns a transition may change on a workflow's row."""
    return {
        "status": state.status.value,
        "started": state.started,
        "run": state.run,
        "run_started_at": state.run_started_at,
        "output": state.output,
        "error": state.error,
        "finished_at": state.finished_at,
        "traceparent": state.traceparent,
        "paused": state.paused,
        "queued": state.queued,
    }


#: Columns of a ``signals`` row, in the order :func:`signal_from_row` reads them.
SIGNAL_COLUMNS = "signal_id, name, received_at, payload, consumed_by, position, run, size, digest"
#: Columns of a new ``signals`` row (:func:`signal_row`).
SIGNAL_INSERT_COLUMNS = tuple(
    "workflow_id signal_id n name received_at payload size digest consumed_by position run".split()
)


def signal_from_row(row: tuple[Any, ...]) -> Signal:
    """A ``SELECT SIGNAL_COLUMNS`` row as a :class:`Signal` of the inbox."""
    signal_id, name, received_at, payload, consumed_by, position, run, size, digest = row
    return Signal(
        signal_id,
        name,
        _required(_timestamp(received_at)),
        None if payload is None else StoredJSON(payload),  # decoded when a step takes it
        consumed_by,
        position,
        run,
        size or 0,
        digest,
    )


def signal_row(workflow_id: str, n: int, signal: Signal) -> dict[str, Any]:
    """Every column of a new ``signals`` row (the ``n``-th of the inbox), with the
    payload as its JSON text; none once a step took it (its output holds it)."""
    kept = signal.consumed_by is None
    return {
        "workflow_id": workflow_id,
        "signal_id": signal.id,
        "n": n,
        "name": signal.name,
        "received_at": signal.received_at,
        "payload": json.dumps(signal.payload, separators=(",", ":")) if kept else None,
        "size": signal.size,
        "digest": signal.digest,
        "consumed_by": signal.consumed_by,
        "position": signal.position,
        "run": signal.run,
    }


def inbox_changes(
    before: tuple[Signal, ...], after: tuple[Signal, ...]
) -> tuple[list[tuple[int, Signal]], list[Signal]]:
    """What a transition writes of the inbox: the signals it added (with their place),
    and the kept ones a step took. The inbox only grows, and a decision changes a kept
    signal only by taking it, so this is the whole difference; nothing when the inbox is
    the same tuple (the commits that do not touch it)."""
    if after is before:
        return [], []
    added = list(enumerate(after[len(before) :], start=len(before)))
    taken = [a for a, b in zip(replaced(before, after), replaced(after, before), strict=True) if a != b]
    return added, taken
