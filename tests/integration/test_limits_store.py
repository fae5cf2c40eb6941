"""Which rows hold a limit's slot, at the store, on SQLite and on PostgreSQL: a run's end
(a cancel, a failure) gives back at once the slot of an attempt that was sent but that no
worker has said it started (every worker is told not to start it); an attempt that did
start holds its slot until it ends, even after its run ended."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flow.clock import utcnow
from flow.core.decide import decide
from flow.core.definition import parse
from flow.core.events import ActivityCompleted, ActivityStarted, CancelRequested, TimerFired
from flow.core.vocabulary import ActivityStatus, Outcome, TimerKind
from flow.engine.planning import Routes, plan
from flow.persistence.engine_store import EngineStore
from flow.persistence.limits import LimitTable
from flow.persistence.records import Transition
from flow.persistence.store import Store
from flow.testing import new_database
from tests.integration.test_fencing import A, started
from tests.integration.test_fencing import _stores as fenced_stores

LIMITED = parse(
    {
        "name": "Pay",
        "config": {"timeouts": {"workflow_s": 60}},
        "activities": [{"id": "charge", "name": "NoopActivity", "concurrency": {"key": "input.tenant", "limit": 1}}],
    },
    known_activities={"NoopActivity"},
)


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request, tmp_path) -> Iterator[tuple[Store, EngineStore]]:
    if request.param == "sqlite":
        yield from _stores(f"sqlite:///{tmp_path / 'flow.db'}")
    else:
        request.getfixturevalue("services")
        with new_database() as url:
            yield from _stores(url)


def _stores(url: str) -> Iterator[tuple[Store, EngineStore]]:
    for store, engine, _ in fenced_stores(url):  # a migrated database, as the fencing tests use
        store.register_definition(LIMITED)
        yield store, engine


def handle(engine: EngineStore, workflow_id: str, event: Any, *, epoch: int) -> None:
    """Decide ``event`` for the stored workflow and commit it, as its engine would."""
    loaded = engine.load(workflow_id)
    decision = decide(loaded.state, event)
    planned = plan(
        decision.state,
        [(c, utcnow()) for c in decision.commands],
        Routes(partition=0, reply_to="flow.engine.0", activity_queue="flow.activities"),
        send_after=utcnow(),
    )
    before = {a.position: a for a in loaded.state.activities}
    transition = Transition(
        workflow_id=workflow_id,
        partition=0,
        epoch=epoch,
        version=loaded.version,
        after=decision.state,
        changed=[a for a in decision.state.activities if before.get(a.position) is not a],
        history=[(h, utcnow()) for h in decision.history],
        owed=planned.owed,
        timers_set=planned.timers_set,
        timers_deleted=planned.timers_deleted,
    )
    assert engine.commit_batch([transition], owner=A).committed == [0]


def sent(store: Store, engine: EngineStore, epoch: int) -> str:
    """A workflow whose limited step was let in and sent: ``Scheduled``."""
    state, _ = store.create_workflow(LIMITED, 1, {"tenant": "acme"}, partition_of=lambda _: 0)
    assert engine.commit_batch([started(engine, state.id, epoch=epoch)], owner=A).committed == [0]
    handle(engine, state.id, TimerFired(TimerKind.SLOT, 0, 1, occurred_at=utcnow()), epoch=epoch)
    assert engine.load(state.id).state.activities[0].status is ActivityStatus.SCHEDULED
    return state.id


@pytest.mark.parametrize(
    "ending",
    [CancelRequested(occurred_at=utcnow()), TimerFired(TimerKind.WORKFLOW, None, 1, occurred_at=utcnow())],
    ids=["cancel", "workflow timeout"],
)
def test_a_runs_end_gives_back_the_slot_of_an_attempt_not_yet_started(stores, ending):
    store, engine = stores
    limits = LimitTable(store.database)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    workflow_id = sent(store, engine, epoch)
    assert limits.holding("Pay:charge", "acme") == 1
    handle(engine, workflow_id, ending, epoch=epoch)
    step = engine.load(workflow_id).state.activities[0]
    assert step.status is ActivityStatus.SCHEDULED  # its late result is still recorded when it comes
    assert limits.holding("Pay:charge", "acme") == 0
    assert limits.usage("Pay:charge") == []  # GET /limits: nothing held, nothing waits
    # A worker had taken it all the same (in the moment before its "started" report): it
    # holds again, until it ends.
    handle(engine, workflow_id, ActivityStarted(0, 1, occurred_at=utcnow()), epoch=epoch)
    assert limits.holding("Pay:charge", "acme") == 1
    handle(engine, workflow_id, ActivityCompleted(0, 1, Outcome.CANCELLED, occurred_at=utcnow()), epoch=epoch)
    assert engine.load(workflow_id).state.activities[0].status is ActivityStatus.CANCELLED
    assert limits.holding("Pay:charge", "acme") == 0


def test_an_attempt_started_holds_its_slot_after_its_run_was_cancelled(stores):
    store, engine = stores
    limits = LimitTable(store.database)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    workflow_id = sent(store, engine, epoch)
    handle(engine, workflow_id, ActivityStarted(0, 1, occurred_at=utcnow()), epoch=epoch)
    handle(engine, workflow_id, CancelRequested(occurred_at=utcnow()), epoch=epoch)
    # Told to stop, but the provider may still be being called: the slot stays held.
    assert limits.holding("Pay:charge", "acme") == 1
    waiting, _ = store.create_workflow(LIMITED, 1, {"tenant": "acme"}, partition_of=lambda _: 0)
    assert engine.commit_batch([started(engine, waiting.id, epoch=epoch)], owner=A).committed == [0]
    assert limits.admit("Pay:charge", utcnow()).grants == []
    handle(engine, workflow_id, ActivityCompleted(0, 1, Outcome.CANCELLED, occurred_at=utcnow()), epoch=epoch)
    assert [g.workflow_id for g in limits.admit("Pay:charge", utcnow()).grants] == [waiting.id]
