"""Event triggers (docs/design.md, "Event triggers"): ``trigger_events`` (``events`` is
the workflows' history), one row per event received (its id is the key, so a resent
event is found; pruned after ``FLOW_EVENT_DEDUP_S``) with what it started or why nothing; ``event_windows``, the open
debounce or batch window of each (definition, trigger, key) — ``slot`` is derived from
those three — with the inputs it holds and when it closes; ``event_starts``, the
workflows owed by closed windows (and by immediate triggers), each with its derived
workflow id, deleted once the workflow exists.

The partition's engine reads due windows by ``(partition, closes_at)`` and owed starts
by ``(partition, due_at)``; the API lists events by ``received_at``.
"""

from peewee import CharField, DateTimeField, IntegerField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Event(Base):
        id = CharField(max_length=200, primary_key=True)
        type = CharField(max_length=128)
        data = TextField()
        partition = IntegerField()
        received_at = DateTimeField()
        outcome = TextField()

        class Meta:
            table_name = "trigger_events"
            indexes = ((("received_at", "id"), False), (("partition", "received_at"), False))

    class EventWindow(Base):
        slot = CharField(max_length=36, primary_key=True)
        workflow_id = CharField(max_length=36)
        definition = CharField(max_length=128)
        trigger_index = IntegerField()
        key = CharField(max_length=255)
        partition = IntegerField()
        opened_at = DateTimeField()
        closes_at = DateTimeField()
        count = IntegerField()
        inputs = TextField()

        class Meta:
            table_name = "event_windows"
            indexes = ((("partition", "closes_at"), False),)

    class EventStart(Base):
        workflow_id = CharField(max_length=36, primary_key=True)
        definition = CharField(max_length=128)
        trigger_index = IntegerField()
        input_data = TextField()
        partition = IntegerField()
        created_at = DateTimeField()
        due_at = DateTimeField(null=True)
        error = TextField(null=True)

        class Meta:
            table_name = "event_starts"
            indexes = ((("partition", "due_at"), False),)

    db.create_tables([Event, EventWindow, EventStart], safe=True)
