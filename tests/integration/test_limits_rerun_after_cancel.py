"""The hold rule (a Scheduled attempt holds its limit's slot only while
its workflow is In Progress): what a rerun of the ended workflow does to the slot."""

from __future__ import annotations

from flow.clock import utcnow
from flow.core.definition import parse
from flow.core.events import CancelRequested, RerunRequested, TimerFired
from flow.core.vocabulary import ActivityStatus, TimerKind, WorkflowStatus
from flow.persistence.limits import LimitTable
from tests.integration.test_fencing import A, started
from tests.integration.test_limits_store import handle, stores  # noqa: F401 (a fixture)

#: A limited step beside another one: a rerun from the other leaves the limited one as it is.
BESIDE = parse(
    {
        "name": "PayBeside",
        "activities": [
            {
                "id": "charge",
                "name": "NoopActivity",
                "independent": True,
                "concurrency": {"key": "input.tenant", "limit": 1},
            },
            {"id": "note", "name": "NoopActivity", "independent": True},
        ],
    },
    known_activities={"NoopActivity"},
)


def test_a_rerun_of_a_cancelled_workflow_does_not_take_a_slot_given_to_another(stores):  # noqa: F811
    store, engine = stores
    store.register_definition(BESIDE)
    limits = LimitTable(store.database)
    epoch = engine.leases.acquire(A, 4, lease_s=60, dead_owners=set())[0]
    first, _ = store.create_workflow(BESIDE, 1, {"tenant": "acme"}, partition_of=lambda _: 0)
    assert engine.commit_batch([started(engine, first.id, epoch=epoch)], owner=A).committed == [0]
    handle(engine, first.id, TimerFired(TimerKind.SLOT, 0, 1, occurred_at=utcnow()), epoch=epoch)
    assert engine.load(first.id).state.activities[0].status is ActivityStatus.SCHEDULED
    handle(engine, first.id, CancelRequested(occurred_at=utcnow()), epoch=epoch)
    # The cancel gave its slot back (its attempt was sent, not started): the next one is let in.
    waiting, _ = store.create_workflow(BESIDE, 1, {"tenant": "acme"}, partition_of=lambda _: 0)
    assert engine.commit_batch([started(engine, waiting.id, epoch=epoch)], owner=A).committed == [0]
    assert [g.workflow_id for g in limits.admit("PayBeside:charge", utcnow()).grants] == [waiting.id]
    handle(engine, waiting.id, TimerFired(TimerKind.SLOT, 0, 1, occurred_at=utcnow()), epoch=epoch)
    assert limits.holding("PayBeside:charge", "acme") == 1
    # A rerun of the cancelled one from its other step while the limited attempt is still
    # queued: that step stays Scheduled (a retry-from-failure keeps what is in flight), and
    # so holds a slot again without being let in.
    handle(engine, first.id, RerunRequested(occurred_at=utcnow(), from_step="note"), epoch=epoch)
    rerun = engine.load(first.id).state
    assert rerun.status is WorkflowStatus.IN_PROGRESS
    assert limits.holding("PayBeside:charge", "acme") <= 1
