"""The workflow spans of one engine process (docs/design.md, "Tracing").

A workflow's span is begun by the engine that handles the start of a run (the
start, or a retry from failure: one span per run), in the transition that starts it,
and its ``traceparent`` is committed with that transition (``workflows.traceparent``).
Every attempt the workflow dispatches carries the stored one, whichever engine sends
it, so attempts are children of the workflow's span after any restart or failover.

A span lives in the process that began it, so it is held here until its run ends,
when it is ended with the outcome. An engine that lets a workflow go first (its
partition moved, the engine stops) ends the span marked ``handed_over``; an engine that
takes up a workflow whose span it does not hold (after a failover, a restart, or a
start while tracing was off) begins a ``resumed`` span for it, a child of the stored
one, which ends with the outcome in its turn.

Only called while :data:`flow.observability.tracing.ENABLED`; the engine tests the flag.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

from opentelemetry import trace

from flow.core.state import WorkflowState, WorkflowStatus
from flow.observability import tracing


@dataclass(frozen=True)
class _Held:
    span: trace.Span
    run: int
    partition: int
    #: What the workflow row stores: this span's traceparent, or for a resumed span
    #: the stored one it is a child of.
    traceparent: str | None


class WorkflowSpans:
    """The open span of each workflow run this engine handles, by workflow id."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._held)

    def before_commit(self, before: WorkflowState, after: WorkflowState, *, partition: int) -> WorkflowState:
        """``after`` (the state a transition commits) with the traceparent of its run's
        span, begun here if this engine holds none (a workflow actor's thread)."""
        new_run = after.started and (not before.started or after.run != before.run)
        if not after.started or (before.status.ended and not new_run):
            return after  # not started yet, or a late message for a run that ended
        with self._lock:
            held = self._held.get(after.id)
        if held is not None and held.run != after.run:
            self._end(after.id, held)  # an earlier run whose end this engine did not see
            held = None
        if held is None:
            if new_run:  # a retry's run is a child of the run before it
                held = self._begin(after, partition, parent=before.traceparent, resumed=False)
            else:
                held = self._begin(after, partition, parent=after.traceparent, resumed=True)
        if after.traceparent != held.traceparent:
            after = dataclasses.replace(after, traceparent=held.traceparent)
        return after

    def _begin(self, state: WorkflowState, partition: int, *, parent: str | None, resumed: bool) -> _Held:
        attributes: dict[str, str | int | bool] = {
            tracing.WORKFLOW_ID: state.id,
            tracing.WORKFLOW_NAME: state.name,
            tracing.WORKFLOW_RUN: state.run,
        }
        if resumed:
            attributes[tracing.WORKFLOW_RESUMED] = True
        span = tracing.tracer().start_span(
            f"workflow {state.name}", context=tracing.context_of(parent), attributes=attributes
        )
        # A resumed span keeps the stored context, so that attempts stay children of the
        # run's span; one begun for a workflow that has none (it started while tracing
        # was off) becomes the stored one.
        stored = parent if resumed and parent else tracing.traceparent_of(span)
        held = _Held(span, state.run, partition, stored)
        with self._lock:
            self._held[state.id] = held
        return held

    def after_commit(self, state: WorkflowState) -> None:
        """A transition to ``state`` was committed: end the span if the run ended."""
        if state.status.ended:
            with self._lock:
                held = self._held.pop(state.id, None)
            if held is not None:
                self._end(state.id, held, outcome=state.status, error=state.error)

    def failed(self, workflow_id: str, reason: str) -> None:
        """The engine failed a workflow it cannot handle (outside ``decide``)."""
        with self._lock:
            held = self._held.pop(workflow_id, None)
        if held is not None:
            self._end(workflow_id, held, outcome=WorkflowStatus.FAILED, error=reason)

    def let_go(self, partition: int | None = None) -> None:
        """End the spans of ``partition``'s workflows (every one when None): another
        engine handles them from now on."""
        with self._lock:
            gone = {w: h for w, h in self._held.items() if partition is None or h.partition == partition}
            for workflow_id in gone:
                del self._held[workflow_id]
        for workflow_id, held in gone.items():
            self._end(workflow_id, held)

    def _end(
        self, workflow_id: str, held: _Held, *, outcome: WorkflowStatus | None = None, error: str | None = None
    ) -> None:
        if outcome is None:
            held.span.set_attribute(tracing.WORKFLOW_HANDED_OVER, True)
        else:
            held.span.set_attribute(tracing.WORKFLOW_OUTCOME, outcome.value)
            if outcome is WorkflowStatus.FAILED:
                tracing.failed(held.span, error)
        held.span.end()
        with self._lock:
            if self._held.get(workflow_id) is held:
                del self._held[workflow_id]
