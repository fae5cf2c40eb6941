"""What the engine sends the activity workers: an attempt to run
(:class:`AttemptRequest`, on ``<prefix>.activities``) and a notice that an attempt
should stop (:class:`CancelNotice`, on the ``<prefix>.cancellations`` fanout
exchange). Encoded and decoded as every message is (:mod:`flow.wire.messages`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from flow.core.codec import Count, JsonObject, Name
from flow.core.kinds.map import Item
from flow.core.state import WorkflowState
from flow.core.vocabulary import Outcome
from flow.wire.messages import CANCEL_ATTEMPT, RUN_ACTIVITY, AttemptHeartbeat, AttemptResult, AttemptStarted, Message


class Outputs:
    """The outputs a workflow hands to its next attempts, computed once per state; ``pending``:
    (position, id, value) of steps with none yet (waits' tokens: :mod:`flow.core.callback_tokens`)."""

    def __init__(self, state: WorkflowState, pending: Iterable[tuple[int, str, Any]] = ()) -> None:
        self._with_output = [(a.position, a.id, a.output) for a in state.definition_activities if a.output is not None]
        self._with_output.extend(pending)

    def for_activity(self, position: int) -> dict[str, Any]:
        """Outputs of every other activity that has one, by activity id."""
        return {activity_id: output for p, activity_id, output in self._with_output if p != position}


@dataclass(frozen=True, kw_only=True)
class AttemptRequest(Message):
    """``flow.run_activity``: everything a worker needs for one attempt — workers never
    read the database. The activity sees some of it (:meth:`BaseActivity.from_request
    <activities.base.BaseActivity.from_request>`)."""

    ACTOR: ClassVar[str] = RUN_ACTIVITY
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(
        {"traceparent", "item", "index", "heartbeat_s", "last_heartbeat", "compensating"}
    )

    #: The activity's index in the definition (an item of a map: after the definition's).
    position: Count
    #: 1 for the first attempt, 2 for the first retry, ...
    attempt: Count
    #: The ``BaseActivity`` subclass to run, by class name.
    activity: Name
    #: The workflow's config overlaid with the activity's own.
    config: JsonObject
    #: The workflow's input.
    input_data: JsonObject
    #: Outputs of the workflow's other activities that have one, by activity id.
    outputs: JsonObject
    #: The attempt is stopped after this many seconds; None: no limit.
    start_to_close_s: float | None = None
    #: The queue to report to (the workflow's partition queue). None (the first
    #: release's messages): ``<prefix>.engine``, which forwards to the partition.
    reply_to: Name | None = None
    #: The W3C ``traceparent`` of the workflow's span, the parent of the attempt's
    #: span (:mod:`flow.observability.tracing`); None (and absent on the wire) while tracing is off.
    traceparent: Name | None = None
    #: For an item of a ``map``: the item (any JSON value) and its index in the list;
    #: absent on the wire otherwise (and for a JSON ``null`` item, which reads back the same).
    item: Any = None
    index: Count | None = None
    #: The attempt fails if no heartbeat comes for this many seconds (the worker
    #: throttles its heartbeats by it); None: no heartbeat timeout.
    heartbeat_s: float | None = None
    #: What the activity's last heartbeat said, in an earlier attempt (``self.last_heartbeat``).
    last_heartbeat: Any = None
    #: An undo (:mod:`flow.core.saga`): the activity it undoes, with that activity's
    #: ``input``, ``config`` and ``output`` (``self.compensating``); absent otherwise.
    compensating: JsonObject | None = None

    @classmethod
    def of(
        cls, state: WorkflowState, position: int, attempt: int, *, reply_to: str, outputs: Outputs | None = None
    ) -> AttemptRequest:
        """The request for ``attempt`` of the activity at ``position`` of ``state``.

        An item of a map gets its item, not the workflow's input and outputs: the list it
        comes from is usually in them, and N items each carrying it would cost O(N²)
        bytes (10,000 items of a 256 KiB input: 2.5 GB of messages)."""
        activity = state.activities[position]
        item = activity.spec if isinstance(activity.spec, Item) else None
        whole = item is None
        return cls(
            workflow_id=state.id,
            position=position,
            attempt=attempt,
            activity=activity.name,
            config=dict(activity.config),
            input_data=dict(activity.spec.input_of(state)) if whole else {},
            outputs=(outputs or Outputs(state)).for_activity(position) if whole else {},
            start_to_close_s=activity.timeouts.start_to_close_s,
            reply_to=reply_to,
            traceparent=state.traceparent,
            item=item.item if item else None,
            index=item.index if item else None,
            heartbeat_s=activity.timeouts.heartbeat_s,
            last_heartbeat=activity.heartbeat,
            compensating=activity.spec.compensating(state),
        )

    def started(self, at: datetime) -> AttemptStarted:
        """The report that this attempt started ``at``."""
        return AttemptStarted(workflow_id=self.workflow_id, position=self.position, attempt=self.attempt, started_at=at)

    def heartbeat(self, details: Any = None) -> AttemptHeartbeat:
        """The report that this attempt is alive, with the activity's ``details``."""
        return AttemptHeartbeat(
            workflow_id=self.workflow_id, position=self.position, attempt=self.attempt, details=details
        )

    def cancel(self) -> CancelNotice:
        """The notice that tells this attempt's worker to stop it."""
        return CancelNotice(workflow_id=self.workflow_id, position=self.position, attempt=self.attempt)

    def result(
        self,
        outcome: Outcome,
        *,
        output: Any = None,
        error: str | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> AttemptResult:
        """The report that this attempt ended with ``outcome`` (``attributes``: the search
        attributes it set, in wire form; None or empty: none)."""
        return AttemptResult(
            workflow_id=self.workflow_id,
            position=self.position,
            attempt=self.attempt,
            outcome=outcome,
            output=output,
            error=error,
            started_at=started_at,
            finished_at=finished_at,
            attributes=dict(attributes) if attributes else None,
        )


@dataclass(frozen=True, kw_only=True)
class CancelNotice(Message):
    """``flow.cancel_attempt``, to every worker (a fanout exchange, not a queue): stop
    ``attempt`` of the activity at ``position`` if you run it; its result no longer
    matters. Advisory: the activity's next ``self.heartbeat()`` raises."""

    ACTOR: ClassVar[str] = CANCEL_ATTEMPT

    position: Count
    attempt: Count

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.workflow_id, self.position, self.attempt)
