"""The Dramatiq messages Libero Flow sends: one frozen dataclass per message, the one
home of its fields, with one encoder (:meth:`Message.to_message`) and one decoder
(:meth:`Message.from_kwargs`).

Building a :class:`dramatiq.Message` here (not ``actor.send``) lets any process send
to the engine without declaring the actors, as a foreign Python process would.

Queues: ``<prefix>.engine`` takes starts from outside (``flow.start_workflow`` with a
name) and forwards anything else to its partition; ``<prefix>.engine.<n>`` is
partition n's queue, consumed only by the engine holding its lease;
``<prefix>.activities`` is the workers'. A worker reports to the queue named in
its attempt's ``reply_to``.

On the wire (docs/design.md, "One workflow, message by message"):

- keyword arguments only, each a field of the message's class (read and written by
  :mod:`flow.core.codec`, as its annotation says), plus ``"v"``, its shape's version.
  Without ``"v"``, version 1: the first release's messages
  (``tests/fixtures/first_release/messages.json``), without the fields added since.
- Timestamps in one form: ISO 8601 with ``Z`` (:func:`flow.core.timestamps.iso`); readers also
  take the first release's form without ``Z``.
- A field a class lists in ``OMITTED_WHEN_NONE`` (the attempt's ``traceparent``) is left
  off while it is None, so that the message is what a reader from before it expects.
- A reader refuses what it cannot read with :class:`~flow.errors.InvalidInput`
  naming the field: a missing or unknown field, a value of the wrong type, a version
  newer than its own. Changing a field's meaning or type means a new version, and
  decoding the older one here.
"""

from __future__ import annotations

import types
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

import dramatiq

from flow.core import codec, definition, events, strict_json
from flow.core.codec import Count, JsonObject, Name, SearchAttributes
from flow.core.vocabulary import Outcome, TimerKind
from flow.errors import DefinitionError, InvalidInput

# Explicit actor names: renaming a function must never strand queued messages.
START_WORKFLOW = "flow.start_workflow"
RECORD_STARTED = "flow.record_started"
RECORD_RESULT = "flow.record_result"
RECORD_HEARTBEAT = "flow.record_heartbeat"
TIMER_FIRED = "flow.timer_fired"
CANCEL_WORKFLOW = "flow.cancel_workflow"
RETRY_WORKFLOW = "flow.retry_workflow"
RERUN_WORKFLOW = "flow.rerun_workflow"
SIGNAL_WORKFLOW = "flow.signal_workflow"
PAUSE_WORKFLOW = "flow.pause_workflow"
RESUME_WORKFLOW = "flow.resume_workflow"
RUN_ACTIVITY = "flow.run_activity"
START_CHILD = "flow.start_child"
CANCEL_ATTEMPT = "flow.cancel_attempt"
#: An event for the triggers (``{"type", "id", "data"}``) (docs/design.md, "Event triggers").
SEND_EVENT = "flow.send_event"

#: The key of a message's version among its keyword arguments.
VERSION_KEY = "v"


@dataclass(frozen=True, kw_only=True)
class Message:
    """What every message has: an actor name, a version, the workflow it is about."""

    #: The Dramatiq actor name, the message's name on the wire.
    ACTOR: ClassVar[str]
    #: The version of the shape this release writes (and the newest it reads).
    VERSION: ClassVar[int] = 1
    #: Said when a message carries a field its class does not have.
    UNKNOWN_FIELD_HINT: ClassVar[str] = ""
    #: Fields left off the wire while they are None: a message that does not use one
    #: reads exactly as before the field existed, so readers that predate it (which
    #: refuse unknown fields) still read it.
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()
    #: Fields of any JSON that are read as strictly as every input (:mod:`flow.core.strict_json`):
    #: NaN or a lone surrogate stored from a message would break every reader of it.
    STRICT_JSON: ClassVar[frozenset[str]] = frozenset()

    workflow_id: Name

    def to_kwargs(self) -> dict[str, Any]:
        """The keyword arguments on the wire: the version, and plain JSON values."""
        values = codec.encode(self)
        for name in self.OMITTED_WHEN_NONE:
            if values[name] is None:
                del values[name]
        return {VERSION_KEY: self.VERSION, **values}

    def to_message(self, queue_name: str, *, message_id: str | None = None) -> dramatiq.Message[Any]:
        """The Dramatiq message to enqueue on ``queue_name``."""
        ids: dict[str, Any] = {"message_id": message_id} if message_id else {}
        return dramatiq.Message(
            queue_name=queue_name, actor_name=self.ACTOR, args=(), kwargs=self.to_kwargs(), options={}, **ids
        )

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Self:
        """Read a message's keyword arguments (of any version up to :attr:`VERSION`);
        raise :class:`~flow.errors.InvalidInput` naming the field if they cannot be."""
        if not isinstance(kwargs, Mapping):
            raise InvalidInput("$", "must be keyword arguments")
        version = kwargs.get(VERSION_KEY, 1)
        if type(version) is not int or version < 1:
            raise InvalidInput(f"$.{VERSION_KEY}", "must be a positive integer, the version of the message")
        if version > cls.VERSION:
            raise InvalidInput(
                f"$.{VERSION_KEY}",
                f"{cls.ACTOR} version {version} is from a newer release (this one reads up to {cls.VERSION})",
            )
        message = codec.decode(cls, kwargs, others={VERSION_KEY}, hint=cls.UNKNOWN_FIELD_HINT)
        for name in cls.STRICT_JSON:
            strict_json.check(getattr(message, name), path=f"$.{name}")
        return message

    @classmethod
    def from_message(cls, message: dramatiq.Message[Any]) -> Self:
        """Read a Dramatiq message of this class's actor."""
        if message.actor_name != cls.ACTOR:
            raise InvalidInput("$.actor_name", f"{message.actor_name!r} is not {cls.ACTOR}")
        if message.args:
            raise InvalidInput("$.args", "keyword arguments only")
        return cls.from_kwargs(message.kwargs)


@dataclass(frozen=True, kw_only=True)
class EngineMessage(Message):
    """A message about one workflow, handled by the engine that holds its partition."""

    def to_event(self, now: datetime) -> events.Event:
        """The event this message reports, stamped ``now`` unless it says when."""
        raise NotImplementedError(f"{type(self).__name__} must say which event it reports")


@dataclass(frozen=True, kw_only=True)
class StartWorkflow(EngineMessage):
    """``flow.start_workflow`` by id: a created workflow should run (the service sends
    it once the workflow's rows are committed). A start by name (``name``,
    ``input_data``, ...) is a start *request*, read by
    :func:`flow.core.start_request.parse_start_request` at the shared queue."""

    ACTOR: ClassVar[str] = START_WORKFLOW
    UNKNOWN_FIELD_HINT: ClassVar[str] = "a start by name goes to the <prefix>.engine queue"

    def to_event(self, now: datetime) -> events.Event:
        return events.WorkflowStarted(occurred_at=now)


@dataclass(frozen=True, kw_only=True)
class AttemptStarted(EngineMessage):
    """``flow.record_started``: a worker began an attempt (sent only once the attempt
    has run for ``FLOW_STARTED_REPORT_DELAY_MS``)."""

    ACTOR: ClassVar[str] = RECORD_STARTED

    position: Count
    attempt: Count
    #: When the worker began; None: when the engine reads the message.
    started_at: datetime | None = None

    def to_event(self, now: datetime) -> events.Event:
        return events.ActivityStarted(self.position, self.attempt, occurred_at=self.started_at or now)


@dataclass(frozen=True, kw_only=True)
class AttemptResult(EngineMessage):
    """``flow.record_result``: how an attempt ended."""

    ACTOR: ClassVar[str] = RECORD_RESULT
    STRICT_JSON: ClassVar[frozenset[str]] = frozenset({"output", "error"})
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"attributes"})

    position: Count
    attempt: Count
    outcome: Outcome
    #: What the activity set as ``self.output`` (JSON).
    output: Any = None
    #: Why the attempt failed (message and traceback); None when it succeeded.
    error: str | None = None
    #: When the attempt ran, by the worker's clock; None when it never ran (a worker
    #: died running it each time it was delivered).
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: Search attributes the activity set (``set_attribute``); None (and absent on the wire): none.
    attributes: SearchAttributes | None = None

    @classmethod
    def of(cls, workflow_id: str, completed: events.ActivityCompleted) -> AttemptResult:
        """The report of ``completed`` (a child's end, as its parent's activity result)."""
        return cls(
            workflow_id=workflow_id,
            position=completed.position,
            attempt=completed.attempt,
            outcome=completed.outcome,
            output=completed.output,
            error=completed.error,
            started_at=completed.started_at,
            finished_at=completed.finished_at,
        )

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_event(self, now: datetime) -> events.Event:
        return events.ActivityCompleted(
            self.position,
            self.attempt,
            self.outcome,
            occurred_at=now,
            output=self.output,
            error=self.error,
            started_at=self.started_at,
            finished_at=self.finished_at,
            attributes=self.attributes,
        )


@dataclass(frozen=True, kw_only=True)
class AttemptHeartbeat(EngineMessage):
    """``flow.record_heartbeat``: a running attempt is alive (``self.heartbeat()``; the
    worker sends at most one per throttle interval, :mod:`flow.worker.heartbeats`)."""

    ACTOR: ClassVar[str] = RECORD_HEARTBEAT
    STRICT_JSON: ClassVar[frozenset[str]] = frozenset({"details"})

    position: Count
    attempt: Count
    #: What the activity passed (JSON); None: no new details.
    details: Any = None

    def to_event(self, now: datetime) -> events.Event:
        return events.ActivityHeartbeat(self.position, self.attempt, now, self.details)


@dataclass(frozen=True, kw_only=True)
class TimerDue(EngineMessage):
    """``flow.timer_fired``: a timer is due. Only the first release sent it (its timers
    waited in RabbitMQ's delay queue; today's are rows); read so that such a message
    still queued is handled."""

    ACTOR: ClassVar[str] = TIMER_FIRED

    kind: TimerKind
    #: None for the workflow's own timer.
    position: Count | None = None
    attempt: Count

    def to_event(self, now: datetime) -> events.Event:
        return events.TimerFired(self.kind, self.position, self.attempt, occurred_at=now)


@dataclass(frozen=True, kw_only=True)
class CancelWorkflow(EngineMessage):
    """``flow.cancel_workflow``: someone asked to cancel the workflow."""

    ACTOR: ClassVar[str] = CANCEL_WORKFLOW

    reason: str | None = None

    def to_event(self, now: datetime) -> events.Event:
        return events.CancelRequested(occurred_at=now, reason=self.reason)


@dataclass(frozen=True, kw_only=True)
class RetryWorkflow(EngineMessage):
    """``flow.retry_workflow``: someone asked to run a failed or cancelled workflow again."""

    ACTOR: ClassVar[str] = RETRY_WORKFLOW
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"run"})

    #: The run this retry starts (a parent retrying its child); None: the next one.
    run: Count | None = None

    def to_event(self, now: datetime) -> events.Event:
        return events.RetryRequested(occurred_at=now, run=self.run)


@dataclass(frozen=True, kw_only=True)
class RerunWorkflow(EngineMessage):
    """``flow.rerun_workflow``: someone asked to run an ended workflow again from the step
    ``from_step`` (its id), resetting it and what depends on it (:mod:`flow.core.rerun`)."""

    ACTOR: ClassVar[str] = RERUN_WORKFLOW
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(
        {"by", "version", "definition", "child_versions", "input_data", "run"}
    )
    STRICT_JSON: ClassVar[frozenset[str]] = frozenset({"definition", "input_data"})

    from_step: Name
    #: Who asked, for the history.
    by: Name | None = None
    #: The definition version to move to, and its body (the engine reads no definition
    #: table: the door that checked the version sends it), with the newest version of
    #: each child it runs without ``version``; None: the workflow's own.
    version: Count | None = None
    definition: JsonObject | None = None
    child_versions: JsonObject | None = None
    #: The new run's input; None: the workflow's own.
    input_data: JsonObject | None = None
    #: The run this rerun starts (a parent's rerun of its child: ``from_step`` is ``*``); None: the next one.
    run: Count | None = None

    def to_event(self, now: datetime) -> events.Event:
        steps, config = None, None
        if self.definition is not None:
            try:  # its classes were checked when it was registered, and by the door that sent it
                found = definition.parse(self.definition, known_activities=_ANY_CLASS, source="$.definition")
            except DefinitionError as e:
                raise InvalidInput("$.definition", str(e)) from None
            steps, config = found.initial_activities(dict(self.child_versions or {})), found.config
        return events.RerunRequested(
            occurred_at=now,
            from_step=self.from_step,
            by=self.by,
            version=self.version,
            steps=steps,
            config=config,
            input_data=self.input_data,
            run=self.run,
        )


class _AnyClass(Collection[str]):
    """Every class name (a rerun's definition was checked against the classes by its door)."""

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_ANY_CLASS = _AnyClass()


@dataclass(frozen=True, kw_only=True)
class SignalWorkflow(EngineMessage):
    """``flow.signal_workflow``: a signal ``name`` with its JSON ``payload``. ``signal_id``
    names it once for all its deliveries (the API derives it from the idempotency key;
    the shared queue fills in the message id for a sender that gave none). Sent with a
    callback token: for the step at ``position`` in ``run`` only (absent otherwise)."""

    ACTOR: ClassVar[str] = SIGNAL_WORKFLOW
    STRICT_JSON: ClassVar[frozenset[str]] = frozenset({"payload"})
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"position", "run"})

    name: Name
    signal_id: Name
    payload: Any = None
    position: Count | None = None
    run: Count | None = None

    def to_event(self, now: datetime) -> events.Event:
        return events.SignalReceived(now, self.name, self.signal_id, self.payload, self.position, self.run)


@dataclass(frozen=True, kw_only=True)
class PauseWorkflow(EngineMessage):
    """``flow.pause_workflow``: schedule nothing new until it resumes."""

    ACTOR: ClassVar[str] = PAUSE_WORKFLOW

    def to_event(self, now: datetime) -> events.Event:
        return events.PauseRequested(occurred_at=now)


@dataclass(frozen=True, kw_only=True)
class ResumeWorkflow(EngineMessage):
    """``flow.resume_workflow``: a paused workflow goes on."""

    ACTOR: ClassVar[str] = RESUME_WORKFLOW

    def to_event(self, now: datetime) -> events.Event:
        return events.ResumeRequested(occurred_at=now)


#: Messages about one workflow, handled by the engine that holds its partition, by actor name.
ENGINE_MESSAGES: Mapping[str, type[EngineMessage]] = types.MappingProxyType(
    {
        cls.ACTOR: cls
        for cls in (
            StartWorkflow,
            AttemptStarted,
            AttemptResult,
            AttemptHeartbeat,
            TimerDue,
            CancelWorkflow,
            RetryWorkflow,
            RerunWorkflow,
            SignalWorkflow,
            PauseWorkflow,
            ResumeWorkflow,
        )
    }
)


@dataclass(frozen=True, kw_only=True)
class StartChild(Message):
    """``flow.start_child``, on the shared ``<prefix>.engine`` queue: the activity at
    ``position`` of workflow ``workflow_id`` runs ``attempt`` as the child workflow
    ``child_id`` (created unless it exists: see :meth:`flow.service.workflows.WorkflowService.start_child`)."""

    ACTOR: ClassVar[str] = START_CHILD
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"fresh"})

    position: Count
    attempt: Count
    #: The child's id, derived from the parent's and the activity's (:func:`flow.core.lineage.child_id`).
    child_id: Name
    #: The definition the child runs, and its version (None: the newest).
    definition: Name
    version: Count | None = None
    #: The child's input.
    input_data: JsonObject
    #: The parent's partition queue, where the activity's start and result are reported.
    reply_to: Name
    #: The step was reset by its parent's rerun: a child that ended runs again, every step
    #: of it (absent otherwise: a retry takes a finished child's output).
    fresh: bool | None = None
