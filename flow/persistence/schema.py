"""Creating and upgrading the schema (``flow migrate``), and the partition count it fixes.

Migrations are the numbered files in :mod:`flow.persistence.migrations`, applied by
peewee's runner (``playhouse.migrations``), which records each in the table
``schema_migration``. A database made by the first release, before that table
existed, is recognised by its ``workflows`` table: its first migration is recorded
as applied, and the later ones run on its data.

The number of partitions is chosen when the database is created and stored in
``flow_meta``: every workflow id hashes onto it, so changing it later would move
workflows between partitions under the engines' feet. A different
``FLOW_PARTITIONS`` is refused with an error that says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import peewee
from playhouse.migrations import Runner

from flow.errors import ConfigurationError, StoreUnavailable
from flow.persistence.database import patience, translated, write
from flow.persistence.models import MetaRecord, OutboxRecord, PartitionLease, TimerRecord, WorkflowRecord

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
HISTORY_TABLE = "schema_migration"
#: Partitions of a new database unless ``FLOW_PARTITIONS`` says otherwise.
DEFAULT_PARTITIONS = 64
MAX_PARTITIONS = 1024
#: The ``flow_meta`` key of the callback tokens' secret (:mod:`flow.core.callback_tokens`).
SECRET_KEY = "callback_secret"


def _runner(database: peewee.Database) -> Runner:
    return Runner(database, str(MIGRATIONS_DIR), table_name=HISTORY_TABLE)


def pending(database: peewee.Database) -> list[str]:
    """Migrations not applied yet (all of them for an empty database)."""
    with translated(), database.connection_context():
        runner = _runner(database)
        if _is_first_release(database, runner):
            return [m.name for m in runner.migrations()][1:]
        return [m.name for m in runner.status() if m.applied is None and m.path is not None]


def upgrade(database: peewee.Database, *, partitions: int | None) -> list[str]:
    """Apply every pending migration, then fix (or check) the partition count; return what ran.

    With :func:`patience`: a migration's statement (an index built over a large table, a
    lock waited for) may run longer than ``FLOW_DATABASE_TIMEOUT_S`` without a byte."""
    with translated(), patience(), database.connection_context():
        runner = _runner(database)
        if _is_first_release(database, runner):
            logger.info("database made by the first release: recording 0001_initial as applied")
            runner.fake("0001_initial")
        applied: list[str] = runner.up()
    configure_partitions(database, partitions)
    return applied


def _is_first_release(database: peewee.Database, runner: Runner) -> bool:
    return not runner.History.table_exists() and database.table_exists("workflows")


def stored_partitions(database: peewee.Database) -> int | None:
    """The partition count fixed in this database, or None before ``flow migrate``."""
    with translated(), database.connection_context():
        if not database.table_exists(MetaRecord._meta.table_name):
            return None
        # On ``database`` itself: the models' proxy may be bound to another one, or none.
        rows = MetaRecord.select(MetaRecord.value).where(MetaRecord.key == "partitions").tuples().execute(database)
        return next((int(value) for (value,) in rows), None)


def stored_secret(database: peewee.Database) -> str | None:
    """The callback tokens' secret that ``flow migrate`` generated (migration 0012)."""
    with translated(), database.connection_context():
        if not database.table_exists(MetaRecord._meta.table_name):
            return None
        rows = MetaRecord.select(MetaRecord.value).where(MetaRecord.key == SECRET_KEY).tuples().execute(database)
        return next((value for (value,) in rows), None)


def check_partitions(stored: int | None, wanted: int | None) -> int:
    """The partition count to use; :class:`ConfigurationError` if ``wanted`` contradicts the database."""
    if stored is None:
        raise StoreUnavailable("the database has no partition count yet: run `flow migrate`")
    if wanted is not None and wanted != stored:
        raise ConfigurationError(
            f"FLOW_PARTITIONS={wanted}, but this database was created with {stored} partitions; "
            "the count is fixed when the database is created (unset FLOW_PARTITIONS or set it to "
            f"{stored})"
        )
    return stored


def configure_partitions(database: peewee.Database, wanted: int | None) -> int:
    """Store the partition count on first use (and number every existing row); check it after."""
    stored = stored_partitions(database)
    if stored is not None:
        return check_partitions(stored, wanted)
    count = wanted or DEFAULT_PARTITIONS
    if not 1 <= count <= MAX_PARTITIONS:
        raise ConfigurationError(f"FLOW_PARTITIONS must be between 1 and {MAX_PARTITIONS}, not {count}")
    from flow.core.partitions import partition_of  # the one hash, shared with every router

    with write(database):
        MetaRecord.insert(key="partitions", value=str(count)).execute()
        PartitionLease.insert_many([{"partition": p, "epoch": 0} for p in range(count)]).execute()
        # Rows written before partitions existed (an upgraded first-release database).
        by_partition: dict[int, list[str]] = {}
        for row in WorkflowRecord.select(WorkflowRecord.id).tuples():
            by_partition.setdefault(partition_of(row[0], count), []).append(row[0])
        by_partition.pop(0, None)  # the column's default
        for p, ids in by_partition.items():
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                WorkflowRecord.update(partition=p).where(WorkflowRecord.id.in_(chunk)).execute()
                OutboxRecord.update(partition=p).where(OutboxRecord.workflow.in_(chunk)).execute()
                TimerRecord.update(partition=p).where(TimerRecord.workflow.in_(chunk)).execute()
    logger.info("partitions: %d", count)
    return count
