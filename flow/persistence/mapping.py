"""The one mapping between table rows and the core's records, both ways."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from flow.policy import RetryPolicy, Timeouts
from flow.state import ActivityState, ActivityStatus, WorkflowState, WorkflowStatus


def activity_state(row: Any) -> ActivityState:
    """An ``activities`` row (model instance or namespace with the same attributes) as state."""
    return ActivityState(
        position=row.position,
        name=row.name,
        independent=row.independent,
        required=row.required,
        config=row.config,
        retry=RetryPolicy(**row.retry),
        timeouts=Timeouts(**row.timeouts),
        status=ActivityStatus(row.status),
        attempt=row.attempt,
        attempts_before=row.attempts_before,
        output=row.output,
        error=row.error,
        scheduled_at=row.scheduled_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def workflow_state(row: Any, activities: Iterable[ActivityState] = ()) -> WorkflowState:
    """A ``workflows`` row as state, with its activities (ordered by position)."""
    return WorkflowState(
        id=row.id,
        name=row.definition_name,
        definition_version=row.definition_version,
        status=WorkflowStatus(row.status),
        input_data=row.input_data,
        config=row.config,
        activities=tuple(activities),
        created_at=row.created_at,
        started=row.started,
        run=row.run,
        run_started_at=row.run_started_at,
        output=row.output,
        error=row.error,
        finished_at=row.finished_at,
    )


#: Columns read by :func:`workflow_from_row` and :func:`activity_from_row`, in order: the
#: engine loads a workflow with these two plain statements (building them with
#: Peewee's query compiler and model instances cost it milliseconds per workflow).
WORKFLOW_COLUMNS = (
    "id, definition_name, definition_version, partition, status, started, run, run_started_at, input_data, "
    "config, output, error, created_at, finished_at, version"
)
ACTIVITY_COLUMNS = (
    "position, name, independent, required, config, retry, timeouts, status, attempt, attempts_before, output, "
    "error, scheduled_at, started_at, finished_at"
)


def workflow_from_row(row: tuple, activities: Iterable[ActivityState]) -> tuple[WorkflowState, int, int]:
    """A ``SELECT WORKFLOW_COLUMNS`` row as ``(state, version, partition)``."""
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
    ) = row
    state = WorkflowState(
        id=workflow_id,
        name=name,
        definition_version=definition_version,
        status=WorkflowStatus(status),
        input_data=_json(input_data),
        config=_json(config),
        activities=tuple(activities),
        created_at=_timestamp(created_at),
        started=bool(started),
        run=run,
        run_started_at=_timestamp(run_started_at),
        output=_json(output),
        error=error,
        finished_at=_timestamp(finished_at),
    )
    return state, version, partition


def activity_from_row(row: tuple) -> ActivityState:
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
    ) = row
    return ActivityState(
        position=position,
        name=name,
        independent=bool(independent),
        required=bool(required),
        config=_json(config),
        retry=RetryPolicy(**_json(retry)),
        timeouts=Timeouts(**_json(timeouts)),
        status=ActivityStatus(status),
        attempt=attempt,
        attempts_before=attempts_before,
        output=_json(output),
        error=error,
        scheduled_at=_timestamp(scheduled_at),
        started_at=_timestamp(started_at),
        finished_at=_timestamp(finished_at),
    )


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


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
    }


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
    }
