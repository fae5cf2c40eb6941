"""A limited step let in within the commit that queues it, on PostgreSQL (docs/design.md,
"Concurrency limits"): when its key has a free slot and nothing of its key waits, the commit that
queues it writes it ``Scheduled`` with its attempt's message, and no grant is made; when the key is
full, or a waiter of the key is ahead of it, it is committed ``Queued`` for the admission loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.workflow import Item
from flow.clock import utcnow
from flow.core.definition import parse
from flow.core.events import WorkflowStarted
from flow.core.vocabulary import ActivityStatus, HistoryType
from flow.engine.spans import WorkflowSpans
from flow.engine.transitions import Transitions
from flow.persistence.engine_store import EngineStore
from flow.persistence.limits import LimitTable
from flow.persistence.records import Transition
from flow.persistence.store import Store
from flow.settings import Settings
from flow.testing import new_database
from tests.integration.test_fencing import A
from tests.integration.test_fencing import _stores as fenced_stores

LIMITED = parse(
    {
        "name": "Pay",
        "activities": [{"id": "charge", "name": "NoopActivity", "concurrency": {"key": "input.tenant", "limit": 2}}],
    },
    known_activities={"NoopActivity"},
)


@pytest.fixture
def stores(services) -> Iterator[tuple[Store, EngineStore, int]]:
    with new_database() as url:
        for store, engine, _ in fenced_stores(url):
            store.register_definition(LIMITED)
            epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
            yield store, engine, epoch


def starts(store: Store, engine: EngineStore, epoch: int, tenants: list[str]) -> list[Transition]:
    """Each tenant's new workflow's start, as the engine builds it: both outcomes offered."""
    transitions = Transitions(Settings.from_env({}), WorkflowSpans(), partitions=4, at_once=True)
    made = []
    for tenant in tenants:
        state, _ = store.create_workflow(LIMITED, 1, {"tenant": tenant}, partition_of=lambda _: 0)
        loaded = engine.load(state.id)
        transition, _ = transitions.transition(
            loaded.state, [Item(WorkflowStarted(utcnow()))], version=loaded.version, partition=0, epoch=epoch
        )
        made.append(transition)
    return made


def status(engine: EngineStore, transition: Transition) -> ActivityStatus:
    return engine.load(transition.workflow_id).state.activities[0].status


def test_a_step_whose_key_has_room_is_scheduled_in_the_commit_that_queues_it(stores):
    store, engine, epoch = stores
    [first] = starts(store, engine, epoch, ["acme"])
    assert first.after.activities[0].status is ActivityStatus.QUEUED
    assert first.at_once is not None and [c.key for c in first.let_in] == ["acme"]
    result = engine.commit_batch([first], owner=A)
    assert result.committed == [0] and result.let_in == [0]
    assert status(engine, first) is ActivityStatus.SCHEDULED
    # As the grant would have: the slot's timer-fired, then the attempt scheduled, in the same commit.
    types = [entry.type for entry, _ in first.at_once.history]
    assert types[-2:] == [HistoryType.TIMER_FIRED, HistoryType.SCHEDULE_ACTIVITY]
    assert HistoryType.QUEUE_ACTIVITY in types
    assert LimitTable(store.database).holding("Pay:charge", "acme") == 1
    # Its attempt's message is in the same commit's outbox; no grant is made.
    assert len(first.at_once.owed) == 1 and first.owed == []
    outbox = store.database.execute_sql("SELECT count(*) FROM outbox WHERE workflow = %s", (first.workflow_id,))
    assert outbox.fetchone()[0] == 1
    assert LimitTable(store.database).admit("Pay:charge", utcnow()).grants == []


def test_a_full_key_queues_and_the_commit_lets_in_no_more_than_the_limit(stores):
    store, engine, epoch = stores
    batch = starts(store, engine, epoch, ["acme", "acme", "acme", "other"])
    result = engine.commit_batch(batch, owner=A)
    assert result.committed == [0, 1, 2, 3]
    assert result.let_in == [0, 1, 3]  # two of acme's (its limit), and the other tenant's
    assert [status(engine, t) for t in batch] == [
        ActivityStatus.SCHEDULED,
        ActivityStatus.SCHEDULED,
        ActivityStatus.QUEUED,
        ActivityStatus.SCHEDULED,
    ]
    assert LimitTable(store.database).holding("Pay:charge", "acme") == 2


def test_a_step_behind_a_waiter_of_its_key_waits_its_turn(stores):
    store, engine, epoch = stores
    # acme full (2 held) and one of acme's queued: the loop lets the waiter in first.
    assert engine.commit_batch(starts(store, engine, epoch, ["acme"] * 3), owner=A).let_in == [0, 1]
    table = LimitTable(store.database)
    with store.database.atomic():
        # One holder ends: a slot is free, but the waiter queued before is ahead of a newcomer.
        store.database.execute_sql(
            "UPDATE activities SET status = 'Succeeded' WHERE workflow_id = ("
            "SELECT workflow_id FROM activities WHERE status = 'Scheduled' ORDER BY workflow_id LIMIT 1)"
        )
    [late] = starts(store, engine, epoch, ["acme"])
    result = engine.commit_batch([late], owner=A)
    assert result.committed == [0] and result.let_in == []
    assert status(engine, late) is ActivityStatus.QUEUED
    # The admission loop lets the first waiter in: round-robin and age are its.
    assert len(table.admit("Pay:charge", utcnow()).grants) == 1
