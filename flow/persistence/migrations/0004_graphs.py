"""Workflows as graphs: each activity's id, dependencies, trigger and condition (one
JSON column, null for an activity of the first release's format: id = class name,
positional rule), and why an activity was skipped."""

from peewee import TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("activities", "graph", TextField(null=True)),
        migrator.add_column("activities", "skip_reason", TextField(null=True)),
    )
