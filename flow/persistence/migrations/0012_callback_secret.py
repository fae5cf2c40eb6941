"""Callback tokens: the deployment's secret that signs them (flow.core.callback_tokens),
generated once here and kept in ``flow_meta`` beside the partition count, so that every
API and engine process of a database reads the same one. ``FLOW_SECRET_KEY``, when
set, is used instead."""

import secrets

from peewee import CharField, Model, TextField


def up(migrator, db):
    class Meta_(Model):
        key = CharField(max_length=64, primary_key=True)
        value = TextField()

        class Meta:
            database = db
            table_name = "flow_meta"

    # Ignored if a secret is there already (a database seeded by hand keeps its own).
    Meta_.insert(key="callback_secret", value=secrets.token_hex(32)).on_conflict_ignore().execute()
