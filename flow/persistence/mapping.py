"""The one mapping between table rows and the core's records, both ways."""

from __future__ import annotations

from collections.abc import Iterable
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
