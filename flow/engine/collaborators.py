"""What a workflow actor is given (:class:`actors.workflow.Collaborators`), assembled from
the engine's parts: the actor sees its mailbox, the partition's epoch, the store's read,
the transition and the commit, and the settler — never the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from actors.registry import Entry, WorkflowActors
from actors.workflow import Decided, Item
from flow.core.state import WorkflowState
from flow.engine.committer import GroupCommitter
from flow.engine.settling import Settler
from flow.engine.transitions import Transitions
from flow.persistence.engine_store import EngineStore
from flow.persistence.records import Loaded, Transition


@dataclass(frozen=True)
class ActorCollaborators:
    """Implements :class:`actors.workflow.Collaborators` with the engine's parts."""

    actors: WorkflowActors
    store: EngineStore
    transitions: Transitions
    committer: GroupCommitter
    settler: Settler
    epoch_of: Callable[[int], int | None]
    payload_limit: int
    inbox_limit: int

    def __repr__(self) -> str:
        return f"<ActorCollaborators payload_limit={self.payload_limit}>"

    def take(self, entry: Entry) -> list[Item]:
        return self.actors.take(entry)

    def load(self, workflow_id: str) -> Loaded:
        return self.store.load(workflow_id)

    def transition(
        self, state: WorkflowState, items: list[Item], *, version: int, partition: int, epoch: int
    ) -> tuple[Transition, Decided]:
        return self.transitions.transition(state, items, version=version, partition=partition, epoch=epoch)

    def commit(self, transition: Transition) -> Transition | None:
        outcome = self.committer.submit(transition).result()
        return outcome.transition if outcome.committed else None

    def after_decisions(self, workflow_id: str, decided: Decided) -> None:
        self.transitions.after_decisions(workflow_id, decided)

    def give_back(self, items: list[Item]) -> None:
        self.settler.give_back(items)

    def reject(self, items: list[Item], reason: str) -> None:
        self.settler.reject(items, reason)

    def drop(self, items: list[Item], reason: str) -> None:
        self.settler.drop(items, reason)

    def fail_workflow(self, workflow_id: str, epoch: int, reason: str) -> None:
        self.settler.fail_workflow(workflow_id, epoch, reason)
