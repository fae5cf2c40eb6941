"""Partitioned engines: leases, engines, durable timers, meta; a partition on workflows
and outbox rows; when each workflow run started.

Timers that the first release kept as outbox rows (``flow.timer_fired`` messages
longer than its broker delay) move to the ``timers`` table. Partition numbers of
existing rows are filled in by ``flow migrate`` once the partition count is known
(:func:`flow.persistence.schema.configure_partitions`).
"""

import json

from peewee import BigIntegerField, CharField, DateTimeField, IntegerField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Meta_(Base):
        key = CharField(max_length=64, primary_key=True)
        value = TextField()

        class Meta:
            table_name = "flow_meta"

    class Timer(Base):
        id = CharField(max_length=128, primary_key=True)
        workflow = CharField(max_length=36)
        partition = IntegerField()
        kind = CharField(max_length=32)
        position = IntegerField(null=True)
        attempt = IntegerField()
        due_at = DateTimeField()

        class Meta:
            table_name = "timers"
            indexes = ((("partition", "due_at"), False), (("workflow",), False))

    class PartitionLease(Base):
        partition = IntegerField(primary_key=True)
        owner = CharField(max_length=128, null=True)
        epoch = BigIntegerField(default=0)
        expires_at = DateTimeField(null=True)

        class Meta:
            table_name = "partition_leases"

    class Engine(Base):
        id = CharField(max_length=128, primary_key=True)
        host = CharField(max_length=255)
        pid = IntegerField()
        started_at = DateTimeField()
        heartbeat_at = DateTimeField(index=True)
        partitions_held = IntegerField(default=0)
        refused_commits = BigIntegerField(default=0)

        class Meta:
            table_name = "engines"

    db.create_tables([Meta_, Timer, PartitionLease, Engine], safe=True)
    migrator.migrate(
        migrator.add_column("workflows", "partition", IntegerField(default=0)),
        migrator.add_column("workflows", "run_started_at", DateTimeField(null=True)),
        migrator.add_column("outbox", "partition", IntegerField(default=0)),
        migrator.add_index("workflows", ("partition", "status"), False),
        migrator.add_index("outbox", ("partition", "send_after"), False),
    )
    # Runs so far started when they were created (retries are rare; a retried run's
    # timeout then counts from its creation, which only makes it end sooner).
    db.execute_sql("UPDATE workflows SET run_started_at = created_at WHERE started")

    # Long timers of the first release waited in the outbox as flow.timer_fired messages.
    rows = db.execute_sql(
        "SELECT id, workflow, kwargs, due_at FROM outbox WHERE actor_name = 'flow.timer_fired'"
    ).fetchall()
    for outbox_id, workflow_id, kwargs, due_at in rows:
        timer = json.loads(kwargs)
        position = timer.get("position")
        timer_id = f"{workflow_id}:{timer['kind']}:{'-' if position is None else position}:{timer['attempt']}"
        Timer.insert(
            id=timer_id,
            workflow=workflow_id,
            partition=0,
            kind=timer["kind"],
            position=position,
            attempt=timer["attempt"],
            due_at=due_at,
        ).on_conflict_ignore().execute()
        db.execute_sql(f"DELETE FROM outbox WHERE id = {db.param}", (outbox_id,))
