"""The Dramatiq messages Libero Flow sends: names and payloads in one place.

Building a :class:`dramatiq.Message` here (rather than calling ``actor.send``) lets
the API, the CLI and any other process send to the engine without importing or
declaring the actors, exactly as a foreign Python process would.

Queues: ``<prefix>.engine`` takes starts from outside (``flow.start_workflow`` with a
name) and forwards anything else to its partition; ``<prefix>.engine.<n>`` is
partition n's queue, consumed only by the engine holding its lease;
``<prefix>.activities`` is the workers'. A worker reports to the queue named in
its attempt's ``reply_to``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq

from flow.clock import iso, parse_iso
from flow.core.state import WorkflowState

# Explicit actor names: renaming a function must never strand queued messages.
START_WORKFLOW = "flow.start_workflow"
RECORD_STARTED = "flow.record_started"
RECORD_RESULT = "flow.record_result"
TIMER_FIRED = "flow.timer_fired"
CANCEL_WORKFLOW = "flow.cancel_workflow"
RETRY_WORKFLOW = "flow.retry_workflow"
RUN_ACTIVITY = "flow.run_activity"

#: Messages about one workflow, handled by the engine that holds its partition.
ENGINE_MESSAGES = frozenset(
    {START_WORKFLOW, RECORD_STARTED, RECORD_RESULT, TIMER_FIRED, CANCEL_WORKFLOW, RETRY_WORKFLOW}
)

timestamp = iso
parse_timestamp = parse_iso


@dataclass(frozen=True)
class Outgoing:
    """One owed message. Its ``id`` is also the Dramatiq message id, so a re-send is
    recognisably the same message."""

    queue_name: str
    actor_name: str
    kwargs: dict[str, Any]
    #: The partition of the workflow it is about: its engine re-sends it if need be.
    partition: int
    #: Past this time the partition's engine (re)sends it.
    send_after: datetime
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def message(self) -> dramatiq.Message[Any]:
        return dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=self.actor_name,
            args=(),
            kwargs=self.kwargs,
            options={},
            message_id=self.id,
        )

    @property
    def workflow_id(self) -> str | None:
        return self.kwargs.get("workflow_id")


def message(queue_name: str, actor_name: str, **kwargs: Any) -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=queue_name, actor_name=actor_name, args=(), kwargs=kwargs, options={})


class Outputs:
    """The outputs a workflow hands to its next attempts, computed once per state."""

    def __init__(self, state: WorkflowState) -> None:
        self._with_output = [(a.position, a.name, a.output) for a in state.activities if a.output is not None]

    def for_activity(self, position: int) -> dict[str, Any]:
        """Outputs of every other activity that has one, by name (a later position wins)."""
        return {name: output for p, name, output in self._with_output if p != position}


def run_activity_kwargs(
    state: WorkflowState, position: int, attempt: int, *, reply_to: str, outputs: Outputs | None = None
) -> dict[str, Any]:
    """Everything a worker needs for one attempt: workers never read the database."""
    activity = state.activities[position]
    return {
        "workflow_id": state.id,
        "position": position,
        "attempt": attempt,
        "activity": activity.name,
        "config": dict(activity.config),
        "input_data": dict(state.input_data),
        "outputs": (outputs or Outputs(state)).for_activity(position),
        "start_to_close_s": activity.timeouts.start_to_close_s,
        "reply_to": reply_to,
    }
