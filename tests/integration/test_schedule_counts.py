"""A schedule's ``fired`` counter and its ``schedule_runs`` rows agree, on SQLite and on
PostgreSQL, whatever writes race an engine's pass: a run is recorded and counted in one
transaction, so a pass whose compare-and-set loses to a pause still counts the ticks it
started and recorded, a tick recorded twice (two engines during a takeover) is counted
once, and a manual trigger is counted with its run."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import peewee
import pytest

from flow.core.schedules import Overlap, RunTrigger, ScheduleSpec, tick_workflow_id
from flow.engine.schedules import ScheduleTicker
from flow.errors import StoreUnavailable
from flow.persistence.database import unit_of_work
from flow.persistence.schedules import ScheduleRunRecord, ScheduleTable

PARTITION = 0
START = datetime(2026, 3, 1, 12, 0, 0)
#: As the fault test's: every tick starts its workflow, whatever the previous one does.
EVERY_SECOND = ScheduleSpec(
    name="every-second", workflow="Tick", cron="* * * * * *", overlap=Overlap.ALLOW_ALL, catch_up_s=120
)


@pytest.fixture
def table(migrated) -> ScheduleTable:
    return ScheduleTable(migrated)


class Starter:
    """Starts nothing; ``during_start`` runs inside each start (a write racing the pass)."""

    def __init__(self, during_start=None) -> None:
        self.during_start = during_start
        self.started: list[str] = []

    def start_tick(self, spec: ScheduleSpec, workflow_id: str) -> None:
        self.started.append(workflow_id)
        if self.during_start is not None:
            self.during_start()

    def sync_files(self) -> None:
        pass


def runs(table: ScheduleTable, name: str) -> list[datetime]:
    with unit_of_work(table.database):
        query = ScheduleRunRecord.select(ScheduleRunRecord.tick_at).where(ScheduleRunRecord.schedule == name)
        return sorted(row[0] for row in query.tuples())


def ticker(table: ScheduleTable, starter: Starter, now: datetime) -> ScheduleTicker:
    return ScheduleTicker(table, held=lambda: {PARTITION}, starter=starter, clock=lambda: now)


def test_a_pause_racing_a_pass_leaves_the_runs_it_recorded_counted(table):
    table.put(EVERY_SECOND, partition=PARTITION, now=START)
    now = START + timedelta(seconds=4)

    def pause() -> None:  # the API's pause commits while the pass is starting its ticks
        if not table.get(EVERY_SECOND.name).spec.paused:
            table.put(replace(EVERY_SECOND, paused=True), partition=PARTITION, now=now)

    starter = Starter(during_start=pause)
    ticker(table, starter, now).sweep()

    stored = table.get(EVERY_SECOND.name)
    assert stored.spec.paused
    recorded = runs(table, EVERY_SECOND.name)
    assert recorded == [START + timedelta(seconds=i) for i in range(1, 5)]
    assert starter.started == [tick_workflow_id(EVERY_SECOND.name, t) for t in recorded]
    assert (stored.fired, stored.skipped) == (len(recorded), 0)
    assert stored.last_workflow_id == tick_workflow_id(EVERY_SECOND.name, recorded[-1])

    # Resumed, it ticks from the resume on: the runs before stay counted once.
    later = now + timedelta(seconds=3)
    table.put(EVERY_SECOND, partition=PARTITION, now=later)
    ticker(table, Starter(), later + timedelta(seconds=2)).sweep()
    stored = table.get(EVERY_SECOND.name)
    assert stored.fired == len(runs(table, EVERY_SECOND.name)) == 6


def test_two_engines_firing_the_same_ticks_count_each_tick_once(table):
    table.put(EVERY_SECOND, partition=PARTITION, now=START)
    now = START + timedelta(seconds=3)
    read_before = table.get(EVERY_SECOND.name)
    # One engine fires ticks 1..3; the other read the row before and fires them too.
    ticker(table, Starter(), now).sweep()
    ticker(table, Starter(), now).fire(read_before, now)
    stored = table.get(EVERY_SECOND.name)
    assert runs(table, EVERY_SECOND.name) == [START + timedelta(seconds=i) for i in range(1, 4)]
    assert (stored.fired, stored.skipped, stored.last_tick_at) == (3, 0, now)


def test_recording_a_tick_again_counts_it_once(table):
    table.put(EVERY_SECOND, partition=PARTITION, now=START)
    tick = START + timedelta(seconds=1)
    workflow_id = tick_workflow_id(EVERY_SECOND.name, tick)
    for _ in range(2):
        table.record_run(EVERY_SECOND.name, tick, workflow_id, RunTrigger.CRON, now=tick)
    assert table.get(EVERY_SECOND.name).fired == len(runs(table, EVERY_SECOND.name)) == 1


def test_a_run_whose_counter_cannot_be_written_is_not_recorded(table, monkeypatch):
    """The run row and the counter commit together: a failure between them leaves neither."""
    table.put(EVERY_SECOND, partition=PARTITION, now=START)
    update = peewee.ModelUpdate.execute

    def failing(self, *args, **kwargs):
        raise peewee.OperationalError("the connection dropped")

    monkeypatch.setattr(peewee.ModelUpdate, "execute", failing)
    with pytest.raises(StoreUnavailable):
        table.record_trigger(EVERY_SECOND.name, "wf-1", now=START)
    monkeypatch.setattr(peewee.ModelUpdate, "execute", update)
    assert runs(table, EVERY_SECOND.name) == []
    table.record_trigger(EVERY_SECOND.name, "wf-1", now=START)
    stored = table.get(EVERY_SECOND.name)
    assert (stored.fired, stored.last_workflow_id, runs(table, EVERY_SECOND.name)) == (1, "wf-1", [START])
