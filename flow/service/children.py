"""Starting a child workflow: the ``flow.start_child`` task's work, on the starting side
(docs/design.md, "Sub-workflows").

A parent's engine owes a :class:`~flow.wire.messages.StartChild` for each attempt of a child
activity (through its outbox: sent at least once). Handling it is idempotent, keyed by
the child's id (derived from the parent's and the activity's) and the parent's attempt,
which the child's run answers (:class:`~flow.core.lineage.ParentLink`):

- no child yet: create it (its parent link, the versions of its own children, its
  parent's priority) and start it; tell the parent the attempt started;
- the child's current run answers this attempt: if it ended, tell the parent again how
  (its report may have been lost with an in-process broker); else nothing;
- this attempt is a later one (the parent's retry-from-failure ran the activity again):
  a child that finished answers with its output, without running again; one that
  failed or was cancelled is retried into the run that answers this attempt;
- an earlier attempt's start, delivered late: nothing.

What cannot start (the definition is gone, the input is too large, a chain of children
that reaches its own definition or is deeper than :data:`~flow.core.kinds.child.MAX_NESTING`)
is the attempt's permanent failure, reported to the parent. A parent that ended
(cancelled or failed) before its child was created gets no child; one that ended while
it was being created has it cancelled (its engine's cancel may have found no child yet).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Protocol

import dramatiq

from flow.clock import utcnow
from flow.core import rerun
from flow.core.definition import Definition
from flow.core.kinds import child as children
from flow.core.lineage import ParentLink
from flow.core.namespaces import DEFAULT
from flow.core.state import WorkflowState
from flow.core.vocabulary import Outcome, WorkflowStatus
from flow.errors import DefinitionNotFound, IdempotencyConflict, InvalidInput, WorkflowNotFound
from flow.persistence.store import Store
from flow.wire import messages

logger = logging.getLogger(__name__)


class WorkflowService(Protocol):
    """What starting a child needs of :class:`flow.service.workflows.WorkflowService`."""

    store: Store
    broker: dramatiq.Broker

    def definition(self, name: str, version: int | None = None) -> tuple[Definition, int]: ...
    def child_versions(self, definition: Definition) -> dict[str, int]: ...
    def namespace_of(self, name: str) -> str | None: ...
    def check_input(self, input_data: Any) -> None: ...
    def partition_of(self, workflow_id: str) -> int: ...
    def send_start(self, workflow_id: str) -> None: ...
    def cancel(self, workflow_id: str, reason: str | None = None) -> None: ...
    def rerun(self, workflow_id: str, from_step: str, **options: Any) -> None: ...
    def retry(self, workflow_id: str, *, run: int | None = None) -> None: ...


def start_child(service: WorkflowService, request: messages.StartChild) -> None:
    """Handle one ``flow.start_child`` (see the module docstring)."""
    store = service.store
    try:
        parent = store.get(request.workflow_id).state
    except WorkflowNotFound:
        logger.info("not starting child %s: its parent %s no longer exists", request.child_id, request.workflow_id)
        return
    try:
        child = store.get(request.child_id).state
    except WorkflowNotFound:
        child = None
    if child is None:
        if parent.status.ended:
            _fail(service, request, f"not started: {children.parent_ended(parent)}")
            return
        why = _refusal(service, parent, request)
        if why is not None:
            _fail(service, request, why)
            return
        try:
            child = _create(service, request, parent)
        except (DefinitionNotFound, InvalidInput, IdempotencyConflict) as e:
            _fail(service, request, f"child workflow {request.definition} not started: {e}")
            return
        try:
            parent = store.get(parent.id).state
        except WorkflowNotFound:  # deleted meanwhile (it had ended): no child outlives it
            service.cancel(child.id, f"its parent {parent.id} was deleted")
            return
        if parent.status.ended:  # it ended while the child was being created
            service.cancel(child.id, children.parent_ended(parent))
        return
    link = child.parent
    if link is None or link.workflow_id != parent.id or link.position != request.position:
        _fail(service, request, f"workflow id {child.id} is taken by a workflow that is not this activity's child")
        return
    run = link.run_of_attempt(request.attempt)
    if run < child.run:
        return  # an earlier attempt's start, delivered late: that run has reported
    if run == child.run:
        if child.status.ended:
            _report(service, request, child)
        elif not child.started:
            service.send_start(child.id)
        return
    if request.fresh and child.status.ended:  # its parent's rerun reset the step: every step runs again
        service.rerun(child.id, rerun.EVERY_STEP, by=f"parent {parent.id}", run=run)
        _started(service, request)
    elif child.status is WorkflowStatus.FINISHED:
        _report(service, request, child)  # succeeded: a parent's retry does not run it again
    elif child.status.ended:
        service.retry(child.id, run=run)
        _started(service, request)
    else:
        logger.warning(
            "child %s is running run %d; attempt %d of its parent %s waits for run %d",
            child.id,
            child.run,
            request.attempt,
            parent.id,
            run,
        )


def _refusal(service: WorkflowService, parent: WorkflowState, request: messages.StartChild) -> str | None:
    """Why the child must not be created: it would repeat a definition of its ancestors
    (recursion that validation could not see: a version deleted since), or nest too deep."""
    names = [parent.name]
    link = parent.parent
    while link is not None and len(names) <= children.MAX_NESTING:
        try:
            ancestor = service.store.get(link.workflow_id).state
        except WorkflowNotFound:
            break
        names.append(ancestor.name)
        link = ancestor.parent
    if request.definition in names:
        chain = " -> ".join([*reversed(names), request.definition])
        return f"child workflow {request.definition} not started: it reaches itself ({chain})"
    if len(names) > children.MAX_NESTING:
        return f"child workflow {request.definition} not started: more than {children.MAX_NESTING} nested children"
    return None


def _create(service: WorkflowService, request: messages.StartChild, parent: WorkflowState) -> WorkflowState:
    """Create and start the child; it inherits its parent's priority (read here, from the
    parent's row, rather than carried in the message: a message owed before priorities
    existed still gives the child its parent's)."""
    service.check_input(request.input_data)
    definition, version = service.definition(request.definition, request.version)
    state, created = service.store.create_workflow(
        definition,
        version,
        request.input_data,
        partition_of=service.partition_of,
        workflow_id=request.child_id,
        parent=ParentLink(request.workflow_id, request.position, request.attempt),
        child_versions=service.child_versions(definition),
        priority=parent.priority,
        namespace=service.namespace_of(definition.name) or DEFAULT,
    )
    if created:
        logger.info("started child %s (%s) of %s", state.id, state.name, request.workflow_id)
        service.send_start(state.id)
        _started(service, request)
    return state


def _started(service: WorkflowService, request: messages.StartChild) -> None:
    started = messages.AttemptStarted(
        workflow_id=request.workflow_id, position=request.position, attempt=request.attempt, started_at=utcnow()
    )
    service.broker.enqueue(started.to_message(request.reply_to))


def _report(service: WorkflowService, request: messages.StartChild, child: WorkflowState) -> None:
    found = children.report(child)
    assert found is not None
    _, completed = found
    result = messages.AttemptResult.of(request.workflow_id, replace(completed, attempt=request.attempt))
    service.broker.enqueue(result.to_message(request.reply_to))


def _fail(service: WorkflowService, request: messages.StartChild, error: str) -> None:
    logger.warning("child activity %d of %s failed: %s", request.position, request.workflow_id, error)
    failed = messages.AttemptResult(
        workflow_id=request.workflow_id,
        position=request.position,
        attempt=request.attempt,
        outcome=Outcome.PERMANENT_FAILURE,
        error=error,
    )
    service.broker.enqueue(failed.to_message(request.reply_to))


__all__ = ["start_child"]
