"""The state of one workflow instance, as frozen dataclasses.

The database holds the truth; these records are what :func:`flow.core.decide.decide`
reads and returns. Change them with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from flow.core.limits import Claim, StepLimit
from flow.core.lineage import ParentLink
from flow.core.policy import RetryPolicy, Timeouts
from flow.core.strict_json import JSON
from flow.core.vocabulary import ActivityStatus, Trigger, WorkflowStatus

__all__ = [
    "ACTIVITY",
    "Activity",
    "ActivityState",
    "ActivityStatus",
    "Signal",
    "StepSpec",
    "Undo",
    "WorkflowState",
    "WorkflowStatus",
]


class StepSpec:
    """What one kind of step reads from its definition entry (a frozen dataclass per kind,
    in its kind's module under :mod:`flow.core.kinds`); its type is the step's kind.

    ``kind`` names the kind (the API's ``kind``, the key of :data:`flow.core.kinds.KINDS`).
    ``parent`` is the one structural fact the state itself needs of a kind: the position
    of the step an item belongs to (a map's items; None for every other kind)."""

    kind: ClassVar[str]
    #: A step of the workflow's ending (an undo, the failure handler: :mod:`flow.core.saga`),
    #: appended after the definition's steps when its run fails; it runs while the
    #: workflow is ``Compensating``, when the definition's steps no longer do.
    ending: ClassVar[bool] = False

    @property
    def parent(self) -> int | None:
        return None

    def input_of(self, state: WorkflowState) -> Mapping[str, Any]:
        """The input its attempts (or its child workflow) are given: the workflow's."""
        return state.input_data

    def compensating(self, state: WorkflowState) -> Mapping[str, Any] | None:
        """What an undo sees of the activity it undoes (``self.compensating``); None: no undo."""
        return None

    # What :mod:`flow.core.saga` reads of a step: the saga sits below the table of kinds (the
    # ending's kinds call it), so it asks the spec, the kind's type, not ``kind_of``.
    @property
    def undo(self) -> Undo | None:
        """What undoes a step of this kind that succeeded (an activity's ``compensate``); None: nothing."""
        return None

    @property
    def undoes(self) -> int | None:
        """The position of the activity an undo undoes; None: the step is no undo."""
        return None


@dataclass(frozen=True)
class Undo:
    """What undoes an activity that succeeded (``compensate`` in the definition): the
    ``BaseActivity`` subclass ``name`` with its own ``config``."""

    name: str
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Activity(StepSpec):
    """A plain activity: the ``BaseActivity`` subclass ``name`` run by the workers (its
    rules: :mod:`flow.core.kinds.activity`); ``compensate``: its undo, if it has one."""

    kind: ClassVar[str] = "activity"
    compensate: Undo | None = None

    @property
    def undo(self) -> Undo | None:
        return self.compensate


#: The spec of every plain activity (it has no fields, so one is enough).
ACTIVITY = Activity()


@dataclass(frozen=True)
class ActivityState:
    """One step of one workflow instance: what every kind of step has (its place in the
    graph, its status and attempts) and, in ``spec``, what its kind has of its own."""

    #: Index in the definition's ``activities`` list; the activity's id within its workflow.
    position: int
    #: ``BaseActivity`` subclass name (a step that runs none: its kind's name, or a child's definition).
    name: str
    independent: bool
    required: bool
    #: Effective config: workflow config overlaid with the activity's own.
    config: Mapping[str, Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    status: ActivityStatus = ActivityStatus.PENDING
    #: Number of the current (or last) attempt, 1-based; 0 before the first. Never
    #: reused, so a result always names exactly one attempt.
    attempt: int = 0
    #: Attempts made before the workflow's last retry-from-failure; the retry policy
    #: counts only the attempts after it.
    attempts_before: int = 0
    output: Any = None
    #: Message (and traceback) of the last failed attempt.
    error: str | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: Unique within the workflow (``id`` in the definition; see
    #: :func:`flow.core.graph.default_ids`); outputs are keyed by it. Empty: ``name``.
    id: str = ""
    #: Positions of the activities it waits for; None: the positional rule.
    depends_on: tuple[int, ...] | None = None
    trigger: Trigger = Trigger.ALL_SUCCEEDED
    #: JMESPath condition; a false value skips the activity.
    when: str | None = None
    #: Why it was skipped, when it was.
    skip_reason: str | None = None
    #: What its last heartbeat said (``self.heartbeat(details)``; handed to the next
    #: attempt as ``self.last_heartbeat``) and when the engine got it.
    heartbeat: Any = None
    heartbeat_at: datetime | None = None
    #: The worker pool its attempts are sent to (``queue`` in the definition; a map's
    #: items inherit their map's); None: the default pool (:mod:`flow.core.pools`).
    queue: str | None = None
    #: Its kind, and what the kind reads from the definition (:mod:`flow.core.kinds`).
    spec: StepSpec = ACTIVITY
    #: Its concurrency limit, as the definition says it (:mod:`flow.core.limits`).
    limit: StepLimit | None = None
    #: The slot it waits for (``Queued``) or holds (in flight): made when its turn first
    #: comes, kept for its retries.
    claim: Claim | None = None

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)

    @property
    def parent(self) -> int | None:
        """The position of the map this step is an item of; None: not an item."""
        return self.spec.parent


@dataclass(frozen=True, eq=False)
class StoredJSON:
    """A kept signal's payload as the JSON text it was stored as, decoded only when a step
    takes it (:meth:`Signal.taken_payload`): loading a workflow whose inbox keeps a thousand
    signals decoded a thousand payloads, most of which no step ever takes (issue 25)."""

    text: str

    def __repr__(self) -> str:
        return f"StoredJSON({self.text[:40]!r})"

    def value(self) -> JSON:
        """The payload itself (decoding is deterministic, so replay sees the same)."""
        decoded: JSON = json.loads(self.text)
        return decoded

    def __eq__(self, other: object) -> bool:
        # Equal to the payload it stands for: a loaded inbox equals the one in memory.
        if isinstance(other, StoredJSON):
            return self.text == other.text or self.value() == other.value()
        return bool(self.value() == other)

    __hash__ = None  # type: ignore[assignment]  # as the payloads it stands for (dicts, lists)


@dataclass(frozen=True)
class Signal:
    """A signal in a workflow's inbox: kept until a step waiting for ``name`` takes it
    (``consumed_by``: that step's position; its payload is then dropped, the step's
    output holds it). Consumed signals stay, by id and digest, so a repeated send is
    recognised, and a send of the same id with another payload told apart.
    A signal sent with a callback token is kept for its step (``position``) in its
    ``run`` only; one sent by name (both None) for the first wait for its name."""

    id: str
    name: str
    received_at: datetime
    payload: Any = None
    consumed_by: int | None = None
    position: int | None = None
    run: int | None = None
    #: Bytes of the payload's JSON (what a kept signal counts against the inbox's limit).
    size: int = 0
    #: SHA-256 of the payload's canonical JSON (:func:`payload_digest`); None: unknown
    #: (a signal stored before migration 0013 and already taken).
    digest: str | None = None

    def taken_payload(self) -> JSON:
        """The payload, decoded if it was loaded as its stored text (:class:`StoredJSON`)."""
        return self.payload.value() if isinstance(self.payload, StoredJSON) else self.payload

    def is_for(self, signal: str, position: int, run: int) -> bool:
        """Whether the wait for ``signal`` at ``position`` in ``run`` may take this signal
        (when it is kept)."""
        if self.consumed_by is not None or self.name != signal:
            return False
        return self.position is None or (self.position == position and self.run == run)


@dataclass(frozen=True)
class WorkflowState:
    """One workflow instance: its status and every activity's."""

    id: str
    name: str
    definition_version: int
    status: WorkflowStatus
    input_data: Mapping[str, Any]
    config: Mapping[str, Any]
    activities: tuple[ActivityState, ...]
    created_at: datetime
    #: ``False`` until the engine handled the start (the start-workflow decision).
    started: bool = False
    #: 1, then 2 after the first retry-from-failure, ...
    run: int = 1
    #: When the current run started (its workflow timeout counts from here).
    run_started_at: datetime | None = None
    output: Any = None
    error: str | None = None
    finished_at: datetime | None = None
    #: Signals received, kept until a wait takes them, and taken (see :class:`Signal`).
    inbox: tuple[Signal, ...] = ()
    #: Paused: no activity, map item or child is started until it resumes; attempts in
    #: flight (and their retries), sleeps and waits go on and are recorded.
    paused: bool = False
    #: The W3C ``traceparent`` of the workflow's span (its current run's), which every
    #: attempt it dispatches carries; None while tracing is off. Opaque here: only the
    #: shells (:mod:`flow.observability.tracing`) make or read it, ``decide`` never looks at it.
    traceparent: str | None = None
    #: The parent's activity this child workflow reports to; None: not a child.
    parent: ParentLink | None = None
    #: 1 (first) to 5 (last), from its start request; 3 unless it said otherwise. What waits
    #: for a concurrency limit is admitted in priority order (:mod:`flow.core.limits`).
    priority: int = 3
    #: Its claim on the definition's workflow concurrency limit (:mod:`flow.core.workflow_limit`),
    #: made from its input when it is created; None: the definition has none.
    claim: Claim | None = None
    #: Its run waits for a slot of that limit: started, but no step is scheduled until let in.
    queued: bool = False
    #: A lower bound of the first position whose activity has not ended (every
    #: activity before it has), so that finding the next sequential activity costs
    #: O(what changed), not O(activities). Derived, never stored; -1 means unknown.
    frontier: int = field(default=-1, compare=False, repr=False)
    #: For each position, the positions whose ``depends_on`` names it. Derived once
    #: (``replace`` carries it along: the graph never changes), never stored.
    dependents: tuple[tuple[int, ...], ...] = field(default=(), compare=False, repr=False)
    #: For each position, the positions of its ``map`` items in index order. Derived
    #: like ``dependents`` (again when a map's start appends items), never stored.
    items: tuple[tuple[int, ...], ...] = field(default=(), compare=False, repr=False)
    #: How many activities the definition has: the items of maps come after them.
    size: int = field(default=-1, compare=False, repr=False)
    #: Per running map, where its items are (:class:`flow.core.kinds.map.Progress`), so that an
    #: item's end costs O(1), not O(items). Derived, never stored: absent after a load
    #: or a retry-from-failure, then counted once.
    map_progress: Mapping[int, Any] = field(default_factory=dict, compare=False, repr=False)
    #: ``FLOW_MAX_PAYLOAD_BYTES``, which a map's output (its items' outputs together)
    #: must not exceed; set by the engine that loads the state, None: unbounded.
    payload_limit: int | None = field(default=None, compare=False, repr=False)
    #: ``FLOW_MAX_INBOX_BYTES``, which the payloads of the signals kept (not yet taken)
    #: together must not exceed; set by the engine that loads the state, None: unbounded.
    inbox_limit: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.dependents) != len(self.activities) or len(self.items) != len(self.activities):
            dependents: list[list[int]] = [[] for _ in self.activities]
            items: list[list[int]] = [[] for _ in self.activities]
            size = len(self.activities)
            for a in self.activities:
                for dependency in a.depends_on or ():
                    dependents[dependency].append(a.position)
                if a.parent is not None:
                    items[a.parent].append(a.position)
                if a.parent is not None or a.spec.ending:
                    size = min(size, a.position)
            object.__setattr__(self, "dependents", tuple(map(tuple, dependents)))
            object.__setattr__(self, "items", tuple(map(tuple, items)))  # appended in index order
            object.__setattr__(self, "size", size)

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts.from_config(self.config)

    @property
    def definition_activities(self) -> tuple[ActivityState, ...]:
        """The definition's activities, without the items of maps."""
        return self.activities[: self.size]

    def runs(self, step: ActivityState) -> bool:
        """Whether ``step`` may still be attempted: a definition's step (or a map's item)
        while the workflow is In Progress, a step of its ending while it is Compensating."""
        return self.status is (WorkflowStatus.COMPENSATING if step.spec.ending else WorkflowStatus.IN_PROGRESS)

    def activity(self, position: int) -> ActivityState | None:
        if 0 <= position < len(self.activities):
            return self.activities[position]
        return None

    def __repr__(self) -> str:
        return f"<WorkflowState {self.name} {self.id} {self.status}>"
