"""Cron schedules (docs/design.md, "Schedules"): ``schedules``, one row a schedule with
what its user set and how far its engine got, and ``schedule_runs``, one row for each
workflow a schedule started, keyed by schedule and tick time.

The engine reads due schedules by ``(partition, next_tick_at)``; recent runs are read
by ``(schedule, tick_at)``, the primary key.
"""

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Schedule(Base):
        name = CharField(max_length=128, primary_key=True)
        partition = IntegerField()
        workflow = CharField(max_length=128)
        input_data = TextField()
        cron = CharField(max_length=255)
        timezone = CharField(max_length=64)
        overlap = CharField(max_length=16)
        catch_up_s = IntegerField()
        paused = BooleanField(default=False)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        last_tick_at = DateTimeField()
        next_tick_at = DateTimeField(null=True)
        buffered_tick_at = DateTimeField(null=True)
        last_fired_at = DateTimeField(null=True)
        last_workflow_id = CharField(max_length=36, null=True)
        fired = BigIntegerField(default=0)
        skipped = BigIntegerField(default=0)
        last_skipped_at = DateTimeField(null=True)
        last_error = TextField(null=True)
        file_digest = CharField(max_length=64, null=True)
        version = BigIntegerField(default=0)

        class Meta:
            table_name = "schedules"
            indexes = ((("partition", "next_tick_at"), False),)

    class ScheduleRun(Base):
        schedule = CharField(max_length=128)
        tick_at = DateTimeField()
        workflow_id = CharField(max_length=36)
        trigger = CharField(max_length=16)
        created_at = DateTimeField()

        class Meta:
            table_name = "schedule_runs"
            primary_key = CompositeKey("schedule", "tick_at")

    db.create_tables([Schedule, ScheduleRun], safe=True)
