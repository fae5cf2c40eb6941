"""The event tables on a real (SQLite) store: an event, its windows and its owed starts are
written together; a resent id within the dedup window changes nothing and one sent after
it is a new event; a window closes once, only when its time has come, with the last
input; a full batch is owed at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from flow.clock import utcnow
from flow.core.event_triggers import Event, EventTrigger, match
from flow.errors import QuotaExceeded
from flow.persistence.database import open_database
from flow.persistence.events import EventStartRecord, EventTable, EventWindowRecord
from flow.persistence.models import bind
from flow.persistence.store import Store
from flow.service.events import EventService

T0 = datetime(2026, 12, 7, 9, 0, 0)
DAY_S = 86_400.0
IMMEDIATE = EventTrigger("OnPaid", 0, "order.paid")
DEBOUNCE = EventTrigger("OrderSync", 0, "order.updated", key="data.order_id", debounce_s=2)
BATCH = EventTrigger("Batched", 0, "file.uploaded", batch_max=3, batch_wait_s=5)


@pytest.fixture
def table(tmp_path) -> Iterator[EventTable]:
    database = open_database(f"sqlite:///{tmp_path / 'flow.db'}")
    bind(database)
    Store(database).migrate(partitions=4)
    yield EventTable(database)
    database.close()


def receive(table: EventTable, trigger: EventTrigger, event: Event, now: datetime):
    return table.receive(
        event, match([trigger], event), now=now, dedup_s=DAY_S, start_grace_s=30, partition_of=lambda _: 0
    )


def trigger_of(trigger: EventTrigger):
    return lambda definition, index: trigger


def test_a_resent_id_changes_nothing_within_the_dedup_window_and_is_new_after_it(table):
    paid = Event("order.paid", "pay-1", {"total": 5})
    first = receive(table, IMMEDIATE, paid, T0)
    assert not first.duplicate and len(first.starts) == 1
    again = receive(table, IMMEDIATE, paid, T0 + timedelta(hours=23))
    assert again.duplicate and again.starts == () and again.event.outcome == first.event.outcome
    assert EventStartRecord.select().count() == 1  # the first start only (the door has not run it here)
    later = receive(table, IMMEDIATE, paid, T0 + timedelta(days=1, seconds=1))
    assert not later.duplicate and len(later.starts) == 1
    assert later.starts[0].workflow_id != first.starts[0].workflow_id
    assert table.get("pay-1").received_at == T0 + timedelta(days=1, seconds=1)


def test_a_debounce_window_closes_once_when_its_time_has_come_with_the_last_input(table):
    for seq in range(3):
        event = Event("order.updated", f"u-{seq}", {"order_id": 7, "seq": seq})
        received = receive(table, DEBOUNCE, event, T0 + timedelta(seconds=seq))
        assert received.starts == ()
    [slot] = table.due_windows([0], now=T0 + timedelta(seconds=4))
    # Not yet: the last event came at T0+2 s, so the window closes at T0+4 s.
    assert table.close(slot, trigger_of(DEBOUNCE), now=T0 + timedelta(seconds=3), partition_of=lambda _: 0) is None
    start = table.close(slot, trigger_of(DEBOUNCE), now=T0 + timedelta(seconds=4), partition_of=lambda _: 0)
    assert start is not None and start.input_data == {"order_id": 7, "seq": 2}
    assert start.workflow_id == table.get("u-0").outcome["matched"][0]["workflow_id"]
    # Closed once: the second engine of a takeover finds no window.
    assert table.close(slot, trigger_of(DEBOUNCE), now=T0 + timedelta(seconds=5), partition_of=lambda _: 0) is None
    assert [s.workflow_id for s in table.owed([0], now=T0 + timedelta(seconds=5))] == [start.workflow_id]
    table.started(start.workflow_id)
    assert table.owed([0], now=T0 + timedelta(days=1)) == []
    assert EventWindowRecord.select().count() == 0


def test_a_full_batch_is_owed_in_the_transaction_of_its_last_event(table):
    owed = []
    for n in range(4):
        owed += receive(table, BATCH, Event("file.uploaded", f"f-{n}", {"n": n}), T0).starts
    assert [s.input_data for s in owed] == [{"events": [{"n": 0}, {"n": 1}, {"n": 2}]}]
    [open_window] = EventWindowRecord.select()
    assert open_window.count == 1 and open_window.workflow_id != owed[0].workflow_id


def test_an_owed_start_that_can_never_work_is_kept_with_its_error_and_not_tried_again(table):
    [start] = receive(table, IMMEDIATE, Event("order.paid", "pay-2"), T0).starts
    table.failed(start.workflow_id, "could not start OnPaid: no definition named 'OnPaid'")
    assert table.owed([0], now=T0 + timedelta(days=1)) == []
    assert table.workflows([start.workflow_id])[start.workflow_id]["state"] == "failed"
    assert table.prune([0], before=T0 + timedelta(seconds=1)) == 1
    assert table.get("pay-2") is None and EventStartRecord.select().count() == 0


def test_an_event_after_a_window_s_time_opens_the_next_even_before_its_engine_closed_it(table):
    first = receive(table, DEBOUNCE, Event("order.updated", "u-1", {"order_id": 7, "seq": 1}), T0)
    # The window closed at T0+2 s; no engine has moved it yet when the next event comes.
    late = receive(table, DEBOUNCE, Event("order.updated", "u-2", {"order_id": 7, "seq": 2}), T0 + timedelta(seconds=2))
    [owed] = late.starts
    assert owed.workflow_id == first.event.outcome["matched"][0]["workflow_id"]
    assert owed.input_data == {"order_id": 7, "seq": 1}
    [window] = EventWindowRecord.select()
    assert window.workflow_id == late.event.outcome["matched"][0]["workflow_id"] != owed.workflow_id
    assert window.inputs == [{"order_id": 7, "seq": 2}]


def test_a_batch_starts_before_its_events_would_outgrow_a_workflow_input(table):
    # Five events of about 600 bytes, a batch of at most 1000 and an input limit of
    # 2,000 bytes: held whole, the batch could never start (its input over the limit)
    # and its row would be rewritten whole with every event. It starts as it is when
    # the next event would not fit, and that event opens the next window.
    big = EventTrigger("Batched", 0, "file.uploaded", batch_max=1000, batch_wait_s=60)
    owed = []
    for n in range(5):
        event = Event("file.uploaded", f"big-{n}", {"n": n, "blob": "x" * 580})
        owed += table.receive(
            event,
            match([big], event),
            now=T0,
            dedup_s=DAY_S,
            start_grace_s=30,
            partition_of=lambda _: 0,
            max_input_bytes=2000,
        ).starts
    assert [[e["n"] for e in start.input_data["events"]] for start in owed] == [[0, 1, 2]]
    assert all(len(json.dumps(start.input_data)) <= 2000 for start in owed)
    [row] = EventWindowRecord.select()
    assert [given["n"] for given in row.inputs] == [3, 4]
    assert row.workflow_id == table.get("big-3").outcome["matched"][0]["workflow_id"] != owed[0].workflow_id


def test_an_owed_start_refused_for_its_namespace_s_quota_waits_out_the_refusal_s_retry_after(table):
    """Not tried at every pass of the engine (four a second, each counting the namespace's
    running workflows): after the Retry-After the quota's refusal gave."""

    class FullNamespace:
        settings = None
        store = type("Store", (), {"database": table.database})()

        def start(self, *args: object, **kwargs: object) -> None:
            raise QuotaExceeded("namespace 'door' has 1 workflows in progress, its quota is 1", retry_after_s=5)

    now = utcnow()
    [start] = receive(table, IMMEDIATE, Event("order.paid", "pay-9"), now - timedelta(minutes=1)).starts
    assert table.owed([0], now=now) == [start]
    assert EventService(FullNamespace()).run(start) is False  # type: ignore[arg-type]
    assert table.owed([0], now=utcnow()) == []
    assert table.owed([0], now=now + timedelta(seconds=6)) == [start]
