"""The messages of sub-workflows that a transition owes (docs/design.md, "Sub-workflows").

Pure, like :mod:`flow.engine.planning`, which calls it: every message goes through the
outbox, so a crash between the commit and the send loses none of them.

- The run of a child activity's attempt is a :class:`~flow.wire.messages.StartChild` to the
  shared engine queue (the starting side creates the child there), not an attempt for
  the workers; an ``input`` that cannot be evaluated is the attempt's permanent failure,
  reported straight back to the workflow's own partition queue.
- :class:`~flow.core.commands.CancelChild` (the parent ended: cancelled or failed) is a
  cancel of the child, to its partition.
- A child's transition that ends it owes its parent the activity's result, on the
  parent's partition queue, as a worker would report it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flow.core.kinds import child as children
from flow.core.state import WorkflowState
from flow.core.vocabulary import Outcome
from flow.wire.messages import AttemptResult, CancelWorkflow, StartChild
from flow.wire.outgoing import Outgoing


def start_message(
    state: WorkflowState,
    position: int,
    attempt: int,
    *,
    reply_to: str,
    engine_queue: str,
    partition: int,
    send_after: datetime,
) -> Outgoing:
    """What running ``attempt`` of the child activity at ``position`` sends."""
    activity = state.activities[position]
    spec = children.definition_of(state, position)
    input_data, error = children.child_input(state, activity)
    if input_data is None:
        result = AttemptResult(
            workflow_id=state.id, position=position, attempt=attempt, outcome=Outcome.PERMANENT_FAILURE, error=error
        )
        return Outgoing.of(result, reply_to, partition=partition, send_after=send_after)
    start = StartChild(
        workflow_id=state.id,
        position=position,
        attempt=attempt,
        child_id=children.id_of_child(state, position),
        definition=spec.definition,
        version=spec.version,
        input_data=input_data,
        reply_to=reply_to,
        fresh=True if spec.fresh else None,
    )
    return Outgoing.of(start, engine_queue, partition=partition, send_after=send_after)


def cancel_message(
    state: WorkflowState, position: int, *, queue_of: Callable[[str], str], partition: int, send_after: datetime
) -> Outgoing:
    """The cancel of the child that the activity at ``position`` runs."""
    child = children.id_of_child(state, position)
    cancel = CancelWorkflow(workflow_id=child, reason=children.parent_ended(state))
    return Outgoing.of(cancel, queue_of(child), partition=partition, send_after=send_after)


def report_message(
    ended: WorkflowState, *, queue_of: Callable[[str], str], partition: int, send_after: datetime
) -> Outgoing | None:
    """What a child that has just ended tells its parent (None: it is nobody's child)."""
    found = children.report(ended)
    if found is None:
        return None
    parent_id, completed = found
    return Outgoing.of(
        AttemptResult.of(parent_id, completed), queue_of(parent_id), partition=partition, send_after=send_after
    )
