"""What the engine sends the activity workers: an attempt to run
(:class:`AttemptRequest`, on ``<prefix>.activities``) and a notice that an attempt
should stop (:class:`CancelNotice`, on the ``<prefix>.cancellations`` fanout
exchange). Encoded and decoded as every message is (:mod:`flow.wire.messages`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from flow.core import codec
from flow.core.codec import Count, JsonObject, Name
from flow.core.kinds import kind_of
from flow.core.state import WorkflowState
from flow.core.vocabulary import Outcome
from flow.errors import InvalidInput
from flow.wire.messages import (
    CANCEL_ATTEMPT,
    RUN_ACTIVITY,
    VERSION_KEY,
    AttemptHeartbeat,
    AttemptResult,
    AttemptStarted,
    Message,
)


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
        item = kind_of(activity).item(activity)  # (index, item) of a map's item
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
            item=item[1] if item else None,
            index=item[0] if item else None,
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


@dataclass(frozen=True, kw_only=True)
class AttemptIdentity:
    """Which attempt a ``flow.run_activity`` message is about, and where to report it: all
    a worker needs to fail an attempt it cannot run, read leniently (:meth:`read`)."""

    workflow_id: Name
    position: Count
    attempt: Count
    reply_to: Name | None = None

    @classmethod
    def read(cls, kwargs: Mapping[str, Any]) -> AttemptIdentity:
        """The identity in the keyword arguments of an attempt message, whatever else they
        hold: unknown fields, a newer ``"v"``, other fields of the wrong shape. A
        ``reply_to`` that is not a queue name is left out (the report then goes to the
        shared engine queue, which forwards it by workflow id). Raise
        :class:`~flow.errors.InvalidInput` naming the field if the workflow id, position
        or attempt cannot be read."""
        if not isinstance(kwargs, Mapping):
            raise InvalidInput("$", "must be keyword arguments")
        identity = {name: kwargs[name] for name in ("workflow_id", "position", "attempt", "reply_to") if name in kwargs}
        try:
            return codec.decode(cls, identity)
        except InvalidInput as e:
            if e.path != "$.reply_to":
                raise
        del identity["reply_to"]
        return codec.decode(cls, identity)

    def failed(self, error: str) -> AttemptResult:
        """The report that this attempt failed, for a reason other than its activity (it
        never ran): a temporary failure, retried per the activity's policy."""
        return AttemptResult(
            workflow_id=self.workflow_id,
            position=self.position,
            attempt=self.attempt,
            outcome=Outcome.TEMPORARY_FAILURE,
            error=error,
        )


def unreadable_error(error: InvalidInput) -> str:
    """What an attempt's failure says when its worker could not read its message
    (``error``), and what to do about it."""
    if error.path == f"$.{VERSION_KEY}" or error.message.startswith("unknown field"):
        advice = "a newer engine probably sent it: upgrade the workers to the engines' release"
    else:
        advice = "the engine that sent it writes what this worker refuses: run the engines' release on the workers"
    return f"this worker cannot read the attempt: {error}; {advice}"
