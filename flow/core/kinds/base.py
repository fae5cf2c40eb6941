"""What a kind of step is: :class:`StepKind`, the hooks every kind answers, each with the
answer of a step that has nothing to say about it.

A kind owns everything about its steps (docs/design.md, "Step kinds"): the keys it reads
from a definition entry (its JSON Schema fragment, its problems, its :class:`StepSpec`),
how its spec is stored, what it does when its turn comes, on its events and timers, at
the end of the run and after a restart, and how the API and the CLI show it.
:func:`flow.core.decide.decide` asks the kind of the step an event is about
(:func:`flow.core.kinds.kind_of`); it never tests which kind a step is.

Pure, like the rest of :mod:`flow.core`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from flow.core import graph
from flow.core.commands import Command, RunActivity, RunChild
from flow.core.events import ActivityCompleted, ActivityHeartbeat, ActivityStarted, TimerFired
from flow.core.policy import Timeouts
from flow.core.state import ActivityState, Signal, StepSpec, WorkflowState
from flow.core.steps import Decision, HistoryEntry, pending_again, stale
from flow.core.vocabulary import HistoryType, TimerKind


class Tokens(Protocol):
    """What a view needs of the callback tokens (:class:`flow.core.callback_tokens.CallbackTokens`)."""

    def of(self, state: WorkflowState, step: ActivityState) -> str | None: ...


#: Schedules that a decision has made but not yet sent: (position, commands, history
#: entry), sent only if nothing in the same decision fails the workflow.
Scheduled = list[tuple[int, list[Command], HistoryEntry]]
#: ``path(*keys)``: the JSON path of a key of the definition entry being checked.
PathOf = Callable[..., str]
#: What a history entry's line in ``flow run``/``flow events`` says, from its ``data``.
Line = Callable[[Mapping[str, Any]], str]


@dataclass
class Turn:
    """The working copy of one decision while steps are given their turn: the workflow as
    it was (``state``), its steps and inbox as changed so far, the event's time, and the
    schedules made so far. A kind's :meth:`StepKind.start` changes ``activities`` (and
    ``inbox``) in place and adds to ``scheduled``."""

    state: WorkflowState
    activities: list[ActivityState]
    inbox: list[Signal]
    now: datetime
    scheduled: Scheduled = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    """A step's new state from one of its kind's rules and the commands it owes.
    :func:`~flow.core.decide.decide` puts it in the workflow; once the step has ended,
    the workflow goes on (or fails: with ``failure`` as its error when given)."""

    step: ActivityState
    commands: tuple[Command, ...] = ()
    failure: str | None = None


@dataclass(frozen=True)
class DueTimer:
    """A timer a workflow waits for, due at ``due_at`` (naive UTC)."""

    kind: TimerKind
    position: int | None
    attempt: int
    due_at: datetime


#: What a step is owed after a restart: the runs to send again, the timers to set again.
Owed = tuple[list[RunActivity | RunChild], list[DueTimer]]

#: A kind's answer to an event about one of its steps: the whole decision, a change of
#: the step for ``decide`` to carry on with, or None when the event is stale for it.
Answer = Decision | Change | None


class StepKind:
    """One kind of step. Subclasses set the class attributes and override the hooks their
    steps take part in; the defaults are the answers of a step that has none."""

    #: The kind's name: ``kind`` in the API and in stored specs; the key in :data:`KINDS`.
    name: ClassVar[str]
    #: Definition keys whose presence makes an entry this kind (exactly one kind's).
    identity: ClassVar[tuple[str, ...]] = ()
    #: JSON Schema of the definition keys this kind reads (besides the common ones).
    properties: ClassVar[Mapping[str, Any]] = {}
    #: Keys that need another of its keys (JSON Schema ``dependentRequired``).
    dependent_required: ClassVar[Mapping[str, list[str]]] = {}
    #: What a definition's key of this kind means on an entry of another kind (the
    #: problem reported there), by key.
    foreign: ClassVar[Mapping[str, str]] = {}
    #: How the problem "a step is ..." describes this kind.
    help: ClassVar[str] = ""
    #: Its steps' attempts run on the activity workers (and heartbeat, and are told to stop).
    runs_on_workers: ClassVar[bool] = False
    #: Its steps' attempts may wait for a concurrency limit (``concurrency``; a map's: its
    #: items'), see :mod:`flow.core.limits`.
    queues: ClassVar[bool] = False
    #: Its steps (or their items) may name the worker pool their attempts go to (``queue``).
    takes_queue: ClassVar[bool] = False
    #: ``flow run``'s table shows its steps' attempts (a map's are its items').
    has_attempts: ClassVar[bool] = True
    #: Its steps are a failed run's ending (an undo, the failure handler: :mod:`flow.core.saga`),
    #: not the definition's: never "optional", never in the graph.
    ending: ClassVar[bool] = False
    #: The keys of the API's activity view that this kind fills (every other kind's are
    #: null in its steps' views), with their JSON Schemas (the OpenAPI document's).
    view_schema: ClassVar[Mapping[str, Any]] = {}
    #: The lines of its history entries in ``flow run`` and ``flow events``.
    lines: ClassVar[Mapping[HistoryType, Line]] = {}
    #: What the line of one of its timers firing says (the others say "<kind> timer fired").
    timer_lines: ClassVar[Mapping[TimerKind, str]] = {}

    def __repr__(self) -> str:
        return f"<StepKind {self.name}>"

    # -- the definition --------------------------------------------------------------------

    def claims(self, entry: Mapping[str, Any]) -> bool:
        """Whether ``entry`` (valid against the schema) is a step of this kind."""
        return any(key in entry for key in self.identity)

    def default_name(self, entry: Mapping[str, Any]) -> str:
        """The ``name`` of a step of this kind that has none of its own."""
        return str(entry.get("name", self.name))

    def problems(
        self, entry: Mapping[str, Any], path: PathOf, known_activities: Collection[str]
    ) -> list[tuple[str, str]]:
        """What is wrong with an entry of this kind that the schema cannot say (``path``:
        the JSON path of one of its keys; ``known_activities``: the discovered classes)."""
        return []

    def parse(self, entry: Mapping[str, Any]) -> StepSpec:
        raise NotImplementedError

    def step_timeouts(self, timeouts: Timeouts) -> Timeouts:
        """The timeouts its steps keep of the ones their config gives."""
        return timeouts

    # -- storage ---------------------------------------------------------------------------

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        """The spec as the keys of an activity row's ``graph`` column."""
        return {}

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        """The spec stored in a ``graph`` column, if the column holds one of this kind."""
        return None

    # -- decide ----------------------------------------------------------------------------

    def start(self, turn: Turn, position: int) -> graph.Verdict:
        """The step at ``position`` is pending and its turn has come: set it going (in
        ``turn``). :data:`graph.WAIT` when handled, or a failing verdict (it fails before
        it ran, with that reason)."""
        raise NotImplementedError

    def on_started(self, state: WorkflowState, step: ActivityState, event: ActivityStarted) -> Decision | None:
        """A worker started the step's current attempt (None: stale for this kind)."""
        return None

    def on_heartbeat(self, state: WorkflowState, step: ActivityState, event: ActivityHeartbeat) -> Decision:
        """A heartbeat of one of the step's attempts."""
        fact = HistoryEntry(HistoryType.ACTIVITY_HEARTBEAT, event.position, {"attempt": event.attempt})
        return Decision(state, (), (stale(fact), HistoryEntry(HistoryType.DO_NOTHING)))

    def on_completed(
        self, state: WorkflowState, step: ActivityState, event: ActivityCompleted, history: list[HistoryEntry]
    ) -> Answer:
        """The current attempt, in flight, reported its result."""
        return None

    def on_timer(
        self, state: WorkflowState, step: ActivityState, event: TimerFired, history: list[HistoryEntry]
    ) -> Answer:
        """A timer of the step's current attempt fired."""
        return None

    def after_end(
        self,
        state: WorkflowState,
        step: ActivityState,
        now: datetime,
        commands: list[Command],
        history: list[HistoryEntry],
    ) -> tuple[WorkflowState, ActivityState | None]:
        """The step (in ``state``) has ended: the step whose end the workflow now goes on
        from (this one; or another it ended, as an item may end its map; None: no step
        ended that others wait for)."""
        return state, step

    def rerun(self, step: ActivityState) -> ActivityState:
        """The step as a retry-from-failure leaves it (it failed, was skipped or cancelled)."""
        return pending_again(step)

    def reset(self, step: ActivityState) -> ActivityState:
        """The step as a rerun that resets it leaves it (:mod:`flow.core.rerun`): pending again."""
        return pending_again(step)

    def moved(self, step: ActivityState, parent: int) -> ActivityState:
        """The step, which belongs to the step now at ``parent``, as a rerun that lays the
        steps out afresh moves it there (a map's item); a step that belongs to none is itself."""
        return step

    def diverges(self, step: ActivityState, now: ActivityState) -> list[tuple[str, str]]:
        """How a new definition's ``now`` (of this kind) differs from the decided ``step`` in
        what only this kind reads, as (change, reason) pairs (:mod:`flow.core.replay`)."""
        return []

    def may_retry(self, state: WorkflowState, step: ActivityState) -> bool:
        """Whether a failed attempt of the step may be tried again (its policy allowing)."""
        return True

    def end_of_run(self, step: ActivityState) -> list[Command]:
        """What the workflow's end (finished, failed, cancelled) makes pointless for the step."""
        return []

    def on_cancel(self, step: ActivityState) -> list[Command]:
        """What the workflow's end (cancelled or failed) owes the step besides its end of
        run: stop what runs."""
        return []

    def outlived(self, step: ActivityState) -> ActivityState:
        """The step as a retry-from-failure finds it still in flight: its attempt is the
        run before's, which that run's end told to stop."""
        return step

    def on_resume(
        self, state: WorkflowState, now: datetime, history: list[HistoryEntry]
    ) -> tuple[WorkflowState, list[Command], list[ActivityState]]:
        """The workflow resumed after a pause: what this kind's steps start now; the steps
        that ended meanwhile."""
        return state, [], []

    def owed(self, state: WorkflowState, step: ActivityState) -> Owed:
        """What the step waits for after a restart on the in-process broker (every message
        lost): runs to send again, timers due (each from its stored timestamps)."""
        return [], []

    def item(self, step: ActivityState) -> tuple[int, Any] | None:
        """(index, item) of a step that runs for one item of a list: its attempts are given
        that item instead of the workflow's input and outputs. None: it runs for no item."""
        return None

    # -- views -----------------------------------------------------------------------------

    def view(self, state: WorkflowState, step: ActivityState, tokens: Tokens | None) -> dict[str, Any]:
        """Its keys of the API's activity view (:attr:`view_keys`)."""
        return {}

    def label(self, view: Mapping[str, Any]) -> str:
        """How ``flow run`` names a step of this kind, from its activity view."""
        step_id = view.get("id") or view["name"]
        return step_id if step_id == view["name"] else f"{step_id} ({view['name']})"

    def note(self, view: Mapping[str, Any]) -> str:
        """What ``flow run``'s table says of the step when it has no error or skip reason."""
        return ""

    def line(
        self, kind: str, data: Mapping[str, Any], step: Mapping[str, Any], workflow: Mapping[str, Any]
    ) -> str | None:
        """What the history entry of type ``kind`` (with ``data``) about one of its steps
        says in ``flow run``; ``step`` and ``workflow``: their API views. None: nothing
        of its own (the entry's general line)."""
        if kind not in HistoryType.__members__.values():
            return None
        found = self.lines.get(HistoryType(kind))  # type: ignore[call-arg]  # a lookup by value: no __new__
        return found(data) if found is not None else None
