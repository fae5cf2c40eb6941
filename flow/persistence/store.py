"""The store of the starting side and the API: :class:`Store` = its queries
(:mod:`flow.persistence.queries`), writes (:mod:`flow.persistence.starts`) and deletes
(:mod:`flow.persistence.retention`), plus the schema.

The engine's own reads and writes are in :mod:`flow.persistence.engine_store`, the
tables in :mod:`flow.persistence.models`. Models are bound to a database by the entry
points (:func:`flow.persistence.models.bind`), never here.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import peewee

from flow.persistence import schema
from flow.persistence.database import open_database, unit_of_work, write
from flow.persistence.models import OutboxRecord
from flow.persistence.queries import Queries
from flow.persistence.retention import Retention
from flow.persistence.starts import Starts


class Store(Queries, Starts, Retention):
    """Reads and writes of the API and the starting side, on one Peewee database."""

    def __init__(self, database: peewee.Database, *, query_timeout_s: float = 5.0) -> None:
        self.database = database
        self.query_timeout_s = query_timeout_s

    @classmethod
    def from_url(
        cls, url: str, *, pool_size: int = 16, query_timeout_s: float = 5.0, silence_s: float | None = None
    ) -> Store:
        """``silence_s``: give up a PostgreSQL connection that answers nothing this long (None: wait)."""
        return cls(open_database(url, pool_size=pool_size, silence_s=silence_s), query_timeout_s=query_timeout_s)

    def __repr__(self) -> str:
        return f"<Store {type(self.database).__name__} {self.database.database}>"

    def migrate(self, *, partitions: int | None = None) -> list[str]:
        """Apply every pending migration; fix (or check) the partition count."""
        return schema.upgrade(self.database, partitions=partitions)

    def is_migrated(self) -> bool:
        """Every migration applied and the partition count fixed."""
        return not schema.pending(self.database) and self.partitions() is not None

    def partitions(self) -> int | None:
        """The partition count fixed in this database (None before ``flow migrate``)."""
        return schema.stored_partitions(self.database)

    def secret(self) -> str | None:
        """The callback tokens' secret stored by ``flow migrate`` (None before it)."""
        return schema.stored_secret(self.database)

    def ping(self) -> None:
        """Raise :class:`~flow.errors.StoreUnavailable` unless the database answers."""
        with unit_of_work(self.database):
            self.database.execute_sql("SELECT 1")

    def unit_of_work(self) -> AbstractContextManager[None]:
        """Hold one connection for a block (returned to the pool afterwards)."""
        return unit_of_work(self.database)

    def delete_outbox(self, ids: list[str]) -> None:
        """Forget messages that were published."""
        with write(self.database):
            for start in range(0, len(ids), 500):
                OutboxRecord.delete().where(OutboxRecord.id.in_(ids[start : start + 500])).execute()
