"""The first released schema: definitions, workflows, activities, events, outbox.

A database created by that release (``flow migrate`` before schema versions existed)
is recognised by its tables and this migration is recorded as applied without running.
"""

import datetime
import json

from peewee import (
    BigAutoField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


class JSONText(TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Definition(Base):
        name = CharField(max_length=128)
        version = IntegerField()
        digest = CharField(max_length=64)
        body = JSONText()
        created_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            table_name = "definitions"
            indexes = ((("name", "version"), True), (("name", "digest"), True))

    class Workflow(Base):
        id = CharField(max_length=36, primary_key=True)
        definition_name = CharField(max_length=128)
        definition_version = IntegerField()
        status = CharField(max_length=16)
        started = BooleanField(default=False)
        run = IntegerField(default=1)
        input_data = JSONText()
        config = JSONText()
        output = JSONText(null=True)
        error = TextField(null=True)
        idempotency_key = CharField(max_length=255, null=True, unique=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        finished_at = DateTimeField(null=True)
        version = IntegerField(default=0)

        class Meta:
            table_name = "workflows"
            indexes = (
                (("created_at", "id"), False),
                (("status", "created_at", "id"), False),
                (("definition_name", "created_at", "id"), False),
            )

    class Activity(Base):
        workflow = ForeignKeyField(Workflow, on_delete="CASCADE")
        position = IntegerField()
        name = CharField(max_length=128)
        independent = BooleanField()
        required = BooleanField()
        config = JSONText()
        retry = JSONText()
        timeouts = JSONText()
        status = CharField(max_length=16)
        attempt = IntegerField(default=0)
        attempts_before = IntegerField(default=0)
        output = JSONText(null=True)
        error = TextField(null=True)
        scheduled_at = DateTimeField(null=True)
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)

        class Meta:
            table_name = "activities"
            indexes = ((("workflow", "position"), True),)

    class Event(Base):
        id = BigAutoField()
        workflow = ForeignKeyField(Workflow, on_delete="CASCADE")
        position = IntegerField(null=True)
        type = CharField(max_length=32)
        data = JSONText()
        occurred_at = DateTimeField()

        class Meta:
            table_name = "events"
            indexes = ((("workflow", "id"), False),)

    class Outbox(Base):
        id = CharField(max_length=32, primary_key=True)
        workflow = CharField(max_length=36, index=True)
        queue_name = CharField(max_length=255)
        actor_name = CharField(max_length=64)
        kwargs = JSONText()
        due_at = DateTimeField()
        send_after = DateTimeField(index=True)

        class Meta:
            table_name = "outbox"

    db.create_tables([Definition, Workflow, Activity, Event, Outbox], safe=True)
