"""The outbox's concurrent parts: Acks (batched deletes of sent rows), OutboxSender
(publish, re-send what the broker did not confirm, sweep what is overdue), and the
store's claim (rows past their time, held so the next pass does not send them twice)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from flow.clock import utcnow
from flow.engine.outbox import Acks, OutboxSender
from flow.persistence.database import open_database
from flow.persistence.engine_store import EngineStore
from flow.persistence.models import OutboxRecord, bind
from flow.persistence.store import Store
from flow.wire.outgoing import Outgoing
from tests.conftest import wait_for

# -- Acks ----------------------------------------------------------------------------------------


class Deletes:
    def __init__(self, fail_times: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.fail_times = fail_times
        self.lock = threading.Lock()

    def __call__(self, ids: list[str]) -> None:
        with self.lock:
            if self.fail_times:
                self.fail_times -= 1
                raise ConnectionError("database went away")
            self.batches.append(list(ids))

    @property
    def deleted(self) -> list[str]:
        with self.lock:
            return [i for batch in self.batches for i in batch]


def test_acks_delete_in_batches_off_the_callers_thread():
    deletes = Deletes()
    acks = Acks(deletes, every_s=0.05)
    acks.add(["a", "b"])
    acks.add(["c"])
    wait_for(lambda: sorted(deletes.deleted) == ["a", "b", "c"], what="the batch delete")
    acks.close()


def test_closing_flushes_what_is_pending():
    deletes = Deletes()
    acks = Acks(deletes, every_s=3600)
    acks.add(["a"])
    acks.close()
    assert deletes.deleted == ["a"]


def test_a_failed_delete_is_logged_not_raised_and_later_ids_still_go(caplog):
    deletes = Deletes(fail_times=1)
    acks = Acks(deletes, every_s=3600)
    acks.add(["lost"])
    acks.flush()  # fails: the row stays and its message is sent again later (a duplicate, not a loss)
    assert "will be sent again" in caplog.text
    acks.add(["kept"])
    acks.close()
    assert deletes.deleted == ["kept"]


def test_ids_added_from_many_threads_are_deleted_exactly_once():
    deletes = Deletes()
    acks = Acks(deletes, every_s=0.01)

    def add(first: int) -> None:
        for n in range(first, first + 500):
            acks.add([str(n)])

    threads = [threading.Thread(target=add, args=(i * 500,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acks.close()
    assert sorted(deletes.deleted, key=int) == [str(n) for n in range(4000)]


# -- OutboxSender ---------------------------------------------------------------------------------


def owed(partition: int = 0) -> Outgoing:
    return Outgoing("flow.activities", "flow.run_activity", {"workflow_id": "w"}, partition, utcnow())


class FakeTransport:
    """Publishes by calling back at once: ids in ``refuse`` are not confirmed."""

    def __init__(self) -> None:
        self.connected = True
        self.published: list[str] = []
        self.refuse: set[str] = set()

    def publish(self, messages, on_done) -> None:
        ids = [m.id for m in messages]
        self.published += ids
        on_done([i for i in ids if i not in self.refuse], [i for i in ids if i in self.refuse])


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, Outgoing] = {}
        self.deleted: list[str] = []
        self.claims: list[list[int]] = []

    def delete_outbox(self, ids: list[str]) -> None:
        self.deleted += ids
        for i in ids:
            self.rows.pop(i, None)

    def outbox_by_id(self, ids: list[str]) -> list[Outgoing]:
        return [self.rows[i] for i in ids if i in self.rows]

    def claim_outbox(self, partitions, *, now, hold_s, every=False, limit=500) -> list[Outgoing]:
        self.claims.append(sorted(partitions))
        return [o for o in self.rows.values() if o.partition in partitions and (every or o.send_after <= now)][:limit]


@pytest.fixture
def sender() -> Iterator[tuple[OutboxSender, FakeStore, FakeTransport]]:
    store, transport = FakeStore(), FakeTransport()
    sender = OutboxSender(store, transport, held=lambda: {0, 1}, grace_s=30, poll_s=0.02)  # type: ignore[arg-type]
    yield sender, store, transport
    sender.stop()
    sender.close()


def test_confirmed_messages_have_their_rows_deleted(sender):
    sender, store, transport = sender
    message = owed()
    store.rows[message.id] = message
    sender.publish([message])
    sender.flush()
    assert store.deleted == [message.id]


def test_an_unconfirmed_message_stays_owed_and_is_sent_again_once_confirmed(sender):
    sender, store, transport = sender
    message = owed(partition=7)  # a partition nobody sweeps: only the re-send path can send it
    store.rows[message.id] = message
    transport.refuse.add(message.id)
    sender.publish([message])
    sender.flush()
    assert store.deleted == []
    transport.refuse.clear()
    sender.start()
    wait_for(lambda: store.deleted == [message.id], what="the re-send to be confirmed")
    assert transport.published == [message.id, message.id]


def test_nothing_is_re_sent_while_the_broker_is_away(sender):
    sender, store, transport = sender
    message = owed(partition=7)
    store.rows[message.id] = message
    transport.refuse.add(message.id)
    sender.publish([message])
    transport.connected = False
    sender.start()
    wait_for(lambda: len(store.claims) >= 3, what="a few passes")
    assert transport.published == [message.id]
    transport.connected, transport.refuse = True, set()
    wait_for(lambda: store.deleted == [message.id], what="the re-send once the broker is back")


def test_each_pass_sweeps_the_held_partitions_for_overdue_rows(sender):
    sender, store, transport = sender
    overdue = owed(partition=1)
    elsewhere = owed(partition=5)
    store.rows.update({overdue.id: overdue, elsewhere.id: elsewhere})
    sender.start()
    wait_for(lambda: overdue.id in store.deleted, what="the overdue row to be sent")
    assert store.claims[0] == [0, 1]
    assert elsewhere.id not in transport.published


# -- the claim, on a real (SQLite) store -----------------------------------------------------------


@pytest.fixture
def engine_store(tmp_path) -> Iterator[EngineStore]:
    database = open_database(f"sqlite:///{tmp_path / 'flow.db'}")
    bind(database)
    Store(database).migrate(partitions=4)
    yield EngineStore(database)
    database.close()


def insert(partition: int, send_after_s: float) -> str:
    row = owed(partition)
    OutboxRecord.create(
        id=row.id,
        workflow="w",
        partition=partition,
        queue_name=row.queue_name,
        actor_name=row.actor_name,
        kwargs=row.kwargs,
        due_at=utcnow(),
        send_after=utcnow() + timedelta(seconds=send_after_s),
    )
    return row.id


def test_a_claim_returns_overdue_rows_of_the_given_partitions_only(engine_store):
    due_here, due_there, not_yet = insert(0, -1), insert(3, -1), insert(0, 60)
    claimed = engine_store.claim_outbox([0], now=utcnow(), hold_s=30)
    assert [o.id for o in claimed] == [due_here]
    assert due_there not in [o.id for o in claimed] and not_yet not in [o.id for o in claimed]


def test_a_claimed_row_is_held_so_the_next_pass_does_not_send_it_again(engine_store):
    row = insert(0, -1)
    now = utcnow()
    assert [o.id for o in engine_store.claim_outbox([0], now=now, hold_s=30)] == [row]
    assert engine_store.claim_outbox([0], now=now + timedelta(seconds=29), hold_s=30) == []
    assert [o.id for o in engine_store.claim_outbox([0], now=now + timedelta(seconds=31), hold_s=30)] == [row]


def test_a_takeover_claims_every_row_of_the_partition_due_or_not(engine_store):
    rows = {insert(2, -1), insert(2, 600)}
    assert {o.id for o in engine_store.claim_outbox([2], now=utcnow(), hold_s=30, every=True)} == rows


def test_a_claim_is_bounded_and_oldest_first(engine_store):
    ids = [insert(1, -100 + i) for i in range(5)]
    assert [o.id for o in engine_store.claim_outbox([1], now=utcnow(), hold_s=30, limit=3)] == ids[:3]


def test_a_claim_carries_what_the_message_needs(engine_store):
    row = insert(0, -1)
    [claimed] = engine_store.claim_outbox([0], now=utcnow(), hold_s=30)
    assert (claimed.id, claimed.queue_name, claimed.actor_name, claimed.kwargs, claimed.partition) == (
        row,
        "flow.activities",
        "flow.run_activity",
        {"workflow_id": "w"},
        0,
    )


def test_unconfirmed_messages_are_a_warning_said_once_with_what_happens_next(sender, caplog):
    # While RabbitMQ blocks the engine, every batch fails: an ERROR for each said "not
    # confirmed" without saying that nothing is lost, nor when it is sent again.
    sender, store, transport = sender
    transport.blocked = True
    messages = [owed(partition=7) for _ in range(3)]
    transport.refuse.update(m.id for m in messages)
    with caplog.at_level("DEBUG", logger="flow.engine.outbox"):
        for message in messages:
            sender.publish([message])
        transport.blocked, transport.refuse = False, set()
        sender.publish([owed(partition=7)])
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "flow.engine.outbox"]
    assert said[0] == (
        "WARNING",
        "1 message(s) not confirmed by RabbitMQ (it blocks publishers: a memory or disk alarm); they stay in "
        "the outbox and will be published again once it takes publishes, by the outbox's next pass (every 0.02 s)",
    )
    assert [level for level, _ in said] == ["WARNING", "DEBUG", "DEBUG", "INFO"]
    assert said[-1][1] == "RabbitMQ confirms again; 3 message(s) it did not confirm meanwhile are sent again"
    assert not any(r.levelno >= 40 for r in caplog.records)
