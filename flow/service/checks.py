"""The door checks: what the starting side refuses before it stores or sends anything,
the same for every door (the API, the Dramatiq tasks, the AMQP start consumer, the CLI
through the API).

Two sorts: limits on what a request carries (a start's input, a signal's payload), and
the preconditions of the requests about one workflow (cancel, signal, pause, resume,
retry), each one predicate on the stored state that returns its
:class:`~flow.errors.WorkflowConflict`, or ``None`` when the request may go. The API
answers the errors 409 (``api/errors.py``); the Dramatiq door logs them
(:mod:`flow.service.forwarding`). The engine's ``decide()`` still has the last word: a
request that passed here may find the workflow changed when it arrives, and is then
recorded as a do-nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flow.core import saga
from flow.core.state import WorkflowState
from flow.core.vocabulary import WorkflowStatus
from flow.errors import (
    InvalidInput,
    PauseRefused,
    ResumeRefused,
    RetryRefused,
    WorkflowConflict,
    WorkflowEnded,
)


def check_input(input_data: Any, *, max_bytes: int) -> None:
    """Raise :class:`InvalidInput` unless ``input_data`` can start a workflow."""
    if not isinstance(input_data, Mapping):
        raise InvalidInput("$.input_data", "must be a JSON object")
    check_payload("$.input_data", input_data, max_bytes=max_bytes)


def check_payload(path: str, value: Any, *, max_bytes: int) -> None:
    """Refuse a value over ``FLOW_MAX_PAYLOAD_BYTES`` of JSON, naming the limit."""
    size = len(json.dumps(value))
    if size > max_bytes:
        raise InvalidInput(path, f"is {size} bytes of JSON, over the limit of {max_bytes} (FLOW_MAX_PAYLOAD_BYTES)")


# -- preconditions --------------------------------------------------------------------


def cancel_refusal(state: WorkflowState) -> WorkflowConflict | None:
    """Only a running workflow can be cancelled (a Compensating one's undos run to their end)."""
    if not state.status.open:
        return WorkflowEnded(
            state.id, f"workflow {state.id} is {state.status}; only a running workflow can be cancelled"
        )
    return None


def signal_refusal(state: WorkflowState) -> WorkflowConflict | None:
    """Only a running workflow takes signals."""
    if not state.status.open:
        return WorkflowEnded(state.id, f"workflow {state.id} is {state.status}; only a running workflow takes signals")
    return None


def pause_refusal(state: WorkflowState) -> WorkflowConflict | None:
    """Only a running workflow that is not paused can be paused."""
    if not state.status.open or state.paused:
        return PauseRefused(state.id, f"workflow {state.id} is {_ended_or(state, 'paused already')}")
    return None


def resume_refusal(state: WorkflowState) -> WorkflowConflict | None:
    """Only a running workflow that is paused can be resumed."""
    if not state.status.open or not state.paused:
        return ResumeRefused(state.id, f"workflow {state.id} is {_ended_or(state, 'not paused')}")
    return None


def retry_refusal(state: WorkflowState, *, run: int | None = None) -> WorkflowConflict | None:
    """Only a Failed or Cancelled workflow can be retried, and a child only by its parent
    (``run`` given: the parent's retry of its child, which is the child's one way)."""
    if state.status not in (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
        return RetryRefused(
            state.id, f"workflow {state.id} is {state.status}; only a Failed or Cancelled workflow can be retried"
        )
    if (why := saga.retry_refusal(state)) is not None:
        return RetryRefused(state.id, f"workflow {state.id} cannot be retried: {why}")
    if state.parent is not None and run is None:
        return RetryRefused(
            state.id,
            f"workflow {state.id} is a child of {state.parent.workflow_id}: retry its parent, "
            "which retries the children that failed",
        )
    return None


def _ended_or(state: WorkflowState, otherwise: str) -> str:
    return str(state.status) if not state.status.open else otherwise
