"""``WorkflowActor``: the Pykka actor that owns one workflow instance in its engine.

The actor loads its workflow once and keeps the state between events: its engine
holds the workflow's partition, so nobody else changes it (docs/design.md,
"Partitions, leases and fencing"). When woken it takes every event queued for it,
folds :func:`flow.core.decide.decide` over them, submits the result as one transition
to the group committer and waits for the commit before it takes anything more —
an actor never decides on a state that is not durable. A refused commit (the
partition changed hands, or the workflow changed under it) drops the state; the
next event reloads it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import pykka

from actors.registry import Entry
from flow.core.decide import Decision, decide
from flow.core.events import Event
from flow.core.frozen import replace
from flow.core.state import WorkflowState
from flow.errors import WorkflowNotFound, is_retryable


class Stored(Protocol):
    """A workflow as read from the database (:class:`flow.persistence.records.Loaded`)."""

    @property
    def state(self) -> WorkflowState: ...
    @property
    def version(self) -> int: ...
    @property
    def partition(self) -> int: ...


class Committable(Protocol):
    """A transition to commit (:class:`flow.persistence.records.Transition`): the actor
    only needs the state it leads to."""

    @property
    def after(self) -> WorkflowState: ...


#: Each item with the decision ``decide`` made on it.
Decided = list[tuple["Item", Decision]]


#: The transition type an engine's collaborators make and commit (the actor only reads its ``after``).
T = TypeVar("T", bound=Committable)


class Collaborators(Protocol[T]):
    """What a workflow actor is given, and all it may use: its mailbox, the partition's
    epoch, the store's read, the engine's transition and commit, and the ways to settle
    items it does not commit (:class:`flow.engine.collaborators.ActorCollaborators`).
    The actor knows no engine: ``actors/`` imports nothing above it."""

    #: The largest payload a state may hold (``FLOW_MAX_PAYLOAD_BYTES``), which a map's output is held to.
    @property
    def payload_limit(self) -> int: ...

    #: The most bytes of signals a workflow keeps (``FLOW_MAX_INBOX_BYTES``), which its inbox is held to.
    @property
    def inbox_limit(self) -> int: ...

    def take(self, entry: Entry) -> list[Item]:
        """Everything queued for ``entry``; empty means "go idle"."""

    def epoch_of(self, partition: int) -> int | None:
        """The epoch under which this engine holds ``partition`` (``None``: not held)."""

    def load(self, workflow_id: str) -> Stored:
        """The workflow from the database; raises :class:`WorkflowNotFound`."""

    def transition(
        self, state: WorkflowState, items: list[Item], *, version: int, partition: int, epoch: int
    ) -> tuple[T, Decided]:
        """Fold ``decide`` over ``items`` from ``state``; the transition to commit."""

    def commit(self, transition: T) -> T | None:
        """Commit ``transition`` with others' (blocking): the transition committed (``transition``,
        or the outcome it carried in which its queued steps were let in at once); None if refused."""

    def after_decisions(self, workflow_id: str, decided: Decided) -> None:
        """What follows a committed transition (spans, log lines)."""

    def give_back(self, items: list[Item]) -> None:
        """Hand items back to be tried again."""

    def reject(self, items: list[Item], reason: str) -> None:
        """Items that can never be handled: dead-lettered, timers dropped."""

    def drop(self, items: list[Item], reason: str) -> None:
        """Items for a workflow that does not exist: acknowledged and forgotten."""

    def fail_workflow(self, workflow_id: str, epoch: int, reason: str) -> None:
        """Mark a workflow the engine cannot handle failed, with ``reason``."""


logger = logging.getLogger(__name__)

#: The longest pause between attempts while the database is unreachable.
MAX_BACKOFF_S = 5.0


@dataclass(frozen=True)
class Item:
    """One event for a workflow, and where it came from (to settle it after the commit)."""

    event: Event
    #: The broker delivery that carried it (a :class:`flow.engine.transport.Delivery`;
    #: None for a fired timer or a recovery). The actor only hands it back.
    delivery: Any = None
    #: The timer that fired it, whose row the transition deletes.
    timer_id: str | None = None


class WorkflowActor(pykka.ThreadingActor):
    """Serialises one workflow's events: decide, commit (grouped with other actors'), go on."""

    # Daemon threads: a workflow actor must never keep a stopping process alive;
    # its state is already committed, so nothing is lost with it.
    use_daemon_thread = True

    def __init__(self, entry: Entry, parts: Collaborators[Any]) -> None:
        super().__init__()
        self.entry = entry
        self.parts = parts
        self.workflow_id = entry.workflow_id
        self.state: WorkflowState | None = None
        self.version = 0
        self.epoch: int | None = None

    def __repr__(self) -> str:
        return f"<WorkflowActor {self.workflow_id}>"

    def on_receive(self, message: Any) -> None:
        while True:
            items = self.parts.take(self.entry)
            if not items:
                return
            try:
                self.handle(items)
            except BaseException as e:  # noqa: BLE001 - contained on purpose
                # Pykka stops every actor of the process on a BaseException: contain it to
                # this workflow; its events go back to the queue and are tried again.
                logger.error("%r while handling events of workflow %s; trying them again", e, self.workflow_id)
                self.state = None
                self.parts.give_back(items)

    def handle(self, items: list[Item]) -> None:
        """Decide on ``items`` and commit them as one transition (see the module docstring)."""
        backoff = 0.05
        while items:
            if self.entry.closed:
                self.parts.give_back(items)
                return
            epoch = self.parts.epoch_of(self.entry.partition)
            if epoch is None:  # the partition is not ours (any more)
                self.state = None
                self.parts.give_back(items)
                return
            try:
                if self.state is None or self.epoch != epoch:
                    self._load(epoch)
                assert self.state is not None
                transition, decided = self.parts.transition(
                    self.state, items, version=self.version, partition=self.entry.partition, epoch=epoch
                )
                committed = self.parts.commit(transition)
            except WrongPartition as e:
                self.parts.reject(items, str(e))
                return
            except WorkflowNotFound as e:
                # Deleted (the API, retention) while a message for it was on its way, or
                # never created: there is nothing to decide on (docs/design.md, "Retention").
                self.state = None
                self.parts.drop(items, str(e))
                return
            except Exception as e:
                self.state = None
                if is_retryable(e):
                    logger.warning("workflow %s: %s; trying again in %.2f s", self.workflow_id, e, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                # The engine cannot handle this workflow (unreadable state, data the
                # database refuses): it fails with the reason; the others go on.
                reason = f"the engine cannot handle this workflow: {type(e).__name__}: {e}"
                logger.error("workflow %s: %s", self.workflow_id, reason, exc_info=True)
                self.parts.fail_workflow(self.workflow_id, epoch, reason)
                self.parts.reject(items, reason)
                return
            if committed is None:
                self.state = None  # deliveries were handed back (or dropped, if deleted) by the engine
                return
            self.state, self.version = committed.after, self.version + 1
            self.parts.after_decisions(self.workflow_id, decided)
            return

    def _load(self, epoch: int) -> None:
        loaded = self.parts.load(self.workflow_id)
        if loaded.partition != self.entry.partition:
            raise WrongPartition(f"workflow {self.workflow_id} is not in partition {self.entry.partition}")
        # The payload limit is a setting, which a map's output is held to (flow.core.kinds.map);
        # so is the inbox's, which the signals kept are held to (flow.core.kinds.wait).
        state = replace(loaded.state, payload_limit=self.parts.payload_limit, inbox_limit=self.parts.inbox_limit)
        self.state, self.version, self.epoch = state, loaded.version, epoch


class WrongPartition(Exception):
    """Raised when a workflow's stored partition is not the one its message came from."""


def fold(state: WorkflowState, items: list[Item]) -> tuple[WorkflowState, list[tuple[Item, Decision]]]:
    """Decide on each item in turn; return the last state and each item's decision."""
    decided = []
    for item in items:
        decision = decide(state, item.event)
        decided.append((item, decision))
        state = decision.state
    return state, decided


def occurred(item: Item) -> datetime:
    return item.event.occurred_at
