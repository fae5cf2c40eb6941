"""The Dramatiq messages Libero Flow sends: names, queues and payloads in one place.

Building a :class:`dramatiq.Message` here (rather than calling ``actor.send``) lets
the API, the CLI and any other process send to the engine without importing or
declaring the actors, exactly as a foreign Python process would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dramatiq

from flow.commands import RunActivity, StartTimer
from flow.decide import Decision
from flow.outbox import Outgoing, plan
from flow.settings import Settings
from flow.state import WorkflowState

# Explicit actor names: renaming a function must never strand queued messages.
START_WORKFLOW = "flow.start_workflow"
RECORD_STARTED = "flow.record_started"
RECORD_RESULT = "flow.record_result"
TIMER_FIRED = "flow.timer_fired"
CANCEL_WORKFLOW = "flow.cancel_workflow"
RETRY_WORKFLOW = "flow.retry_workflow"
RUN_ACTIVITY = "flow.run_activity"


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def parse_timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=None)


def planned(
    settings: Settings, queue_name: str, actor_name: str, kwargs: dict[str, Any], *, now: datetime, delay_ms: int = 0
) -> Outgoing:
    return plan(
        queue_name,
        actor_name,
        kwargs,
        now=now,
        delay_ms=delay_ms,
        grace_s=settings.outbox_grace_s,
        max_broker_delay_s=settings.max_broker_delay_s,
    )


def for_decision(settings: Settings, decision: Decision, *, now: datetime) -> list[Outgoing]:
    """The messages a decision's commands owe, ready for the outbox."""
    owed = []
    for command in decision.commands:
        if isinstance(command, RunActivity):
            kwargs = run_activity_kwargs(decision.state, command.position, command.attempt)
            owed.append(planned(settings, settings.activity_queue, RUN_ACTIVITY, kwargs, now=now))
        elif isinstance(command, StartTimer):
            kwargs = {
                "workflow_id": decision.state.id,
                "kind": command.kind,
                "position": command.position,
                "attempt": command.attempt,
            }
            owed.append(
                planned(settings, settings.engine_queue, TIMER_FIRED, kwargs, now=now, delay_ms=command.delay_ms)
            )
        else:  # pragma: no cover - a new command without a message is a bug
            raise TypeError(f"no message for {command!r}")
    return owed


def start(settings: Settings, workflow_id: str, *, now: datetime) -> Outgoing:
    """The start of a created workflow, owed by its creation."""
    return planned(settings, settings.engine_queue, START_WORKFLOW, {"workflow_id": workflow_id}, now=now)


def engine_message(settings: Settings, actor_name: str, **kwargs: Any) -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=settings.engine_queue, actor_name=actor_name, args=(), kwargs=kwargs, options={})


def run_activity_kwargs(state: WorkflowState, position: int, attempt: int) -> dict[str, Any]:
    """Everything a worker needs for one attempt: workers never read the database."""
    activity = state.activities[position]
    outputs = {a.name: a.output for a in state.activities if a.output is not None and a.position != position}
    return {
        "workflow_id": state.id,
        "position": position,
        "attempt": attempt,
        "activity": activity.name,
        "config": dict(activity.config),
        "input_data": dict(state.input_data),
        "outputs": outputs,
        "start_to_close_s": activity.timeouts.start_to_close_s,
    }
