"""The records the engine and its store exchange: a transition to commit, what became of
a batch, a loaded workflow, a timer row."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from flow.clock import utcnow
from flow.core.decide import HistoryEntry
from flow.core.limits import Claim
from flow.core.state import ActivityState, Signal, WorkflowState
from flow.wire.outgoing import Outgoing

T = TypeVar("T")


@dataclass(frozen=True)
class TimerRow:
    """A durable timer (see :class:`flow.persistence.models.TimerRecord`)."""

    id: str
    workflow_id: str
    partition: int
    kind: str
    position: int | None
    attempt: int
    due_at: datetime


def timer_id(workflow_id: str, kind: str, position: int | None, attempt: int) -> str:
    """The id of a workflow's timer: the same timer always gets the same id."""
    return f"{workflow_id}:{kind}:{'-' if position is None else position}:{attempt}"


@dataclass(frozen=True)
class Unreadable:
    """A stored workflow whose rows cannot be read as state (written by hand, or by a
    release with other rules): it fails with ``reason`` instead of stopping the engine."""

    workflow_id: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    state: WorkflowState
    version: int
    partition: int


@dataclass
class Transition:
    """What one actor's handling of one or more events changes, ready to commit."""

    workflow_id: str
    partition: int
    #: The partition's epoch the actor's state was loaded under (the fence).
    epoch: int
    #: The stored version the actor's state was loaded (or last committed) at.
    version: int
    after: WorkflowState
    changed: list[ActivityState]
    history: list[tuple[HistoryEntry, datetime]]
    owed: list[Outgoing] = field(default_factory=list)
    timers_set: list[TimerRow] = field(default_factory=list)
    timers_deleted: list[str] = field(default_factory=list)
    updated_at: datetime = field(default_factory=utcnow)
    #: What the engine settles once the outcome is known (the deliveries); not stored.
    deliveries: list[Any] = field(default_factory=list)
    #: Timers whose firing this transition handles (they fire again if it is refused).
    fired_timers: list[str] = field(default_factory=list)
    #: Activities appended (the items of a map that started): inserted, not updated.
    added: list[ActivityState] = field(default_factory=list)
    #: Signals the inbox gained (with their place in it): a row each, inserted.
    signals_added: list[tuple[int, Signal]] = field(default_factory=list)
    #: Kept signals a step took: their rows lose the payload and name the step.
    signals_taken: list[Signal] = field(default_factory=list)
    #: Search attributes its results set (:func:`flow.persistence.attributes.set_by`): upserted.
    attributes_set: list[tuple[Any, ...]] = field(default_factory=list)
    #: A rerun laid the steps out afresh: every activity row is replaced (:mod:`flow.persistence.rewrites`).
    rewritten: bool = False
    #: The other outcome, in which the steps this transition queues are let in at once (the slots of
    #: ``let_in``'s claims taken): the group commit writes it instead when their keys have room
    #: (:mod:`flow.core.at_once`, :mod:`flow.persistence.at_once`). None: only this outcome.
    at_once: Transition | None = None
    let_in: list[Claim] = field(default_factory=list)


@dataclass
class BatchResult:
    #: Indexes (into the batch) of the transitions that were committed.
    committed: list[int]
    #: Index -> why it was refused: ``"fenced"`` (the partition is not ours under its
    #: epoch any more), ``"version"`` (the workflow changed since the actor loaded it) or
    #: ``"deleted"`` (it no longer exists: deleted through the API or by retention).
    refused: dict[int, str]
    #: Indexes of the committed transitions whose ``at_once`` outcome was written instead.
    let_in: list[int] = field(default_factory=list)


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (statements have a parameter limit)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def to_json(value: Any) -> str | None:
    """A value as the JSON text its column holds (None stays NULL)."""
    import json

    return None if value is None else json.dumps(value, separators=(",", ":"))


def timer_fields(row: TimerRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "workflow": row.workflow_id,
        "partition": row.partition,
        "kind": row.kind,
        "position": row.position,
        "attempt": row.attempt,
        "due_at": row.due_at,
    }


#: Items compared a block at a time by :func:`replaced` (tuple equality runs in C).
_BLOCK = 256


def replaced(before: Sequence[T], after: Sequence[T]) -> list[T]:
    """The items of ``after`` that are not the very objects at their place in ``before``
    (beyond ``before``'s length: none): what a transition changed, since decisions
    replace what they change and keep the rest. A map of 10,000 items compares 10,000
    pairs at each item's event, which a loop in Python made the largest cost of the
    event (200 of 340 µs); a block at a time, tuple equality (C, identity first) passes
    the unchanged blocks at about half that. An item equal to the one it replaced is
    not reported: writing it would write what is stored already."""
    if before is after:
        return []
    found: list[T] = []
    end = min(len(before), len(after))
    for i in range(0, end, _BLOCK):
        j = min(i + _BLOCK, end)
        old, new = tuple(before[i:j]), tuple(after[i:j])
        if old != new:
            found += [b for a, b in zip(old, new, strict=True) if a is not b and a != b]
    return found
