"""The workflow actor with fake collaborators: it needs only what
:class:`actors.workflow.Collaborators` names — no engine, no database, no broker."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from actors.registry import WorkflowActors
from actors.workflow import Item, WorkflowActor, fold
from flow.core.events import WorkflowStarted
from flow.errors import WorkflowNotFound
from tests.conftest import wait_for
from tests.unit.test_decide import T0, make_state


@dataclass
class Stored:
    state: Any
    version: int
    partition: int


@dataclass
class Transition:
    after: Any
    items: list[Item]


class FakeCollaborators:
    """Records what the actor asks of it."""

    payload_limit = 1234
    inbox_limit = 4321

    def __init__(self, *, exists: bool = True, commit: bool = True) -> None:
        self.actors = WorkflowActors(lambda entry: WorkflowActor.start(entry, self))
        self.exists = exists
        self.committing = commit
        self.committed: list[Transition] = []
        self.dropped: list[tuple[list[Item], str]] = []
        self.given_back: list[Item] = []
        self.after: list[str] = []
        self.loads: list[str] = []
        self.versions: list[int] = []
        self.done = threading.Event()

    def take(self, entry):
        return self.actors.take(entry)

    def epoch_of(self, partition):
        return 7

    def load(self, workflow_id):
        self.loads.append(workflow_id)
        if not self.exists:
            raise WorkflowNotFound(workflow_id)
        return Stored(make_state((False, True)), version=3, partition=0)

    def transition(self, state, items, *, version, partition, epoch):
        assert state.payload_limit == self.payload_limit and partition == 0 and epoch == 7
        self.versions.append(version)
        after, decided = fold(state, items)
        return Transition(after, items), decided

    def commit(self, transition):
        self.committed.append(transition)
        return transition if self.committing else None

    def after_decisions(self, workflow_id, decided):
        self.after.append(workflow_id)
        self.done.set()

    def give_back(self, items):
        self.given_back += items

    def reject(self, items, reason):  # pragma: no cover - not reached here
        raise AssertionError(reason)

    def drop(self, items, reason):
        self.dropped.append((items, reason))
        self.done.set()

    def fail_workflow(self, workflow_id, epoch, reason):  # pragma: no cover - not reached here
        raise AssertionError(reason)


@pytest.fixture
def parts():
    parts = FakeCollaborators()
    yield parts
    parts.actors.stop_all()


def test_an_actor_decides_commits_and_reports_through_its_collaborators_only(parts):
    parts.actors.deliver("wf-1", 0, Item(WorkflowStarted(occurred_at=T0)))
    assert parts.done.wait(10)
    [transition] = parts.committed
    assert transition.after.started and transition.after.payload_limit == 1234
    assert parts.after == ["wf-1"]


def test_an_event_for_a_workflow_that_does_not_exist_is_dropped():
    parts = FakeCollaborators(exists=False)
    try:
        item = Item(WorkflowStarted(occurred_at=T0))
        parts.actors.deliver("wf-1", 0, item)
        assert parts.done.wait(10)
        [(items, reason)] = parts.dropped
        assert items == [item] and "wf-1" in reason
        assert parts.committed == []
    finally:
        parts.actors.stop_all()


def test_a_refused_commit_forgets_the_state_and_the_next_event_reloads_it():
    parts = FakeCollaborators(commit=False)
    try:
        parts.actors.deliver("wf-1", 0, Item(WorkflowStarted(occurred_at=T0)))
        wait_for(lambda: len(parts.committed) == 1)
        parts.actors.deliver("wf-1", 0, Item(WorkflowStarted(occurred_at=T0 + timedelta(seconds=1))))
        wait_for(lambda: len(parts.committed) == 2)
        assert parts.loads == ["wf-1", "wf-1"]
        assert parts.after == []
    finally:
        parts.actors.stop_all()


def test_the_state_stays_in_memory_between_committed_events(parts):
    parts.actors.deliver("wf-1", 0, Item(WorkflowStarted(occurred_at=T0)))
    wait_for(lambda: len(parts.after) == 1)
    parts.actors.deliver("wf-1", 0, Item(WorkflowStarted(occurred_at=T0 + timedelta(seconds=1))))
    wait_for(lambda: len(parts.after) == 2)
    assert parts.loads == ["wf-1"]
    assert parts.versions == [3, 4]  # the version read, then the one its own commit made
