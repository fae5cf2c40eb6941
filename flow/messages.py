"""The Dramatiq messages Libero Flow sends: names, queues and payloads in one place.

Building a :class:`dramatiq.Message` here (rather than calling ``actor.send``) lets
the API, the CLI and any other process send to the engine without importing or
declaring the actors, exactly as a foreign Python process would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dramatiq

from flow.settings import Settings
from flow.state import WorkflowState

# Explicit actor names: renaming a function must never strand queued messages.
START_WORKFLOW = "flow.start_workflow"
RECORD_STARTED = "flow.record_started"
RECORD_RESULT = "flow.record_result"
RETRY_DUE = "flow.retry_due"
RUN_ACTIVITY = "flow.run_activity"


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def parse_timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=None)


def engine_message(settings: Settings, actor_name: str, **kwargs: Any) -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=settings.engine_queue, actor_name=actor_name, args=(), kwargs=kwargs, options={})


def start_workflow(
    settings: Settings,
    *,
    name: str | None = None,
    input_data: dict[str, Any] | None = None,
    workflow_id: str | None = None,
) -> dramatiq.Message[Any]:
    """Tell the engine to start a workflow: a created one by id, or a new one by name."""
    kwargs: dict[str, Any] = {}
    if workflow_id is not None:
        kwargs["workflow_id"] = workflow_id
    if name is not None:
        kwargs["name"] = name
        kwargs["input_data"] = input_data or {}
    return engine_message(settings, START_WORKFLOW, **kwargs)


def run_activity(settings: Settings, state: WorkflowState, position: int, attempt: int) -> dramatiq.Message[Any]:
    """Everything a worker needs for one attempt: workers never read the database."""
    activity = state.activities[position]
    outputs = {a.name: a.output for a in state.activities if a.output is not None and a.position != position}
    return dramatiq.Message(
        queue_name=settings.activity_queue,
        actor_name=RUN_ACTIVITY,
        args=(),
        kwargs={
            "workflow_id": state.id,
            "position": position,
            "attempt": attempt,
            "activity": activity.name,
            "config": dict(activity.config),
            "input_data": dict(state.input_data),
            "outputs": outputs,
        },
        options={},
    )
