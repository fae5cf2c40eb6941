"""Bulk operations (docs/design.md, "Bulk operations"): ``batches``, one row a batch with
what it asks, where its engine got (the keyset cursor over the matching workflows'
``(created_at, id)``) and its counts; ``batch_items``, one row for each workflow a batch
matched, with its outcome: the record that makes a replayed page do nothing twice.

The engine reads its partitions' live batches by ``(partition, status)``; a batch's
pending items by ``(batch_id, outcome)``.
"""

from peewee import BigIntegerField, BooleanField, CharField, CompositeKey, DateTimeField, IntegerField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Batch(Base):
        id = CharField(max_length=36, primary_key=True)
        partition = IntegerField()
        operation = CharField(max_length=16)
        filter = TextField()
        options = TextField(null=True)
        status = CharField(max_length=16)
        matched = BigIntegerField(default=0)
        done = BigIntegerField(default=0)
        failed = BigIntegerField(default=0)
        skipped = BigIntegerField(default=0)
        cursor_created_at = DateTimeField(null=True)
        cursor_id = CharField(max_length=36, null=True)
        exhausted = BooleanField(default=False)
        created_by = CharField(max_length=128, null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        finished_at = DateTimeField(null=True)

        class Meta:
            table_name = "batches"
            indexes = ((("partition", "status"), False), (("created_at", "id"), False))

    class BatchItem(Base):
        batch_id = CharField(max_length=36)
        workflow_id = CharField(max_length=36)
        outcome = CharField(max_length=16)
        run = IntegerField()
        reason = TextField(null=True)
        updated_at = DateTimeField()

        class Meta:
            table_name = "batch_items"
            primary_key = CompositeKey("batch_id", "workflow_id")
            indexes = ((("batch_id", "outcome"), False),)

    db.create_tables([Batch, BatchItem], safe=True)
