"""``python -m bench.namespace_rates``: what the deployment-wide starts-per-second quota
costs a start (issue 27).

On a new PostgreSQL database (and a SQLite file unless ``--postgres-only``), migrated,
one :class:`~flow.service.quotas.NamespaceQuotas` in this process calls ``admit`` in a
loop, in four setups: a namespace without a quota (nothing to do), one whose quota is
far above the loop's pace (every start admitted: the local check, then the shared row's
statement), a ``SELECT 1`` (one round trip, for scale), and a flooding namespace (a quota
of 5 a second, tried as fast as the loop goes: the local check refuses nearly all). Prints
microseconds per call (the median of ``--rounds`` rounds of ``--calls``) and the SQL
statements each setup ran, as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peewee

from flow.core.namespaces import Quota, TokensFile
from flow.errors import QuotaExceeded
from flow.persistence.database import open_database, unit_of_work
from flow.persistence.models import bind
from flow.persistence.store import Store
from flow.service.quotas import NamespaceQuotas
from flow.testing.services import new_database
from flow.testing.statements import counted


def per_call_us(call: Callable[[], Any], calls: int, rounds: int) -> float:
    figures = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        figures.append((time.perf_counter() - started) / calls * 1e6)
    return round(statistics.median(figures), 1)


def measure(database: peewee.Database, calls: int, rounds: int) -> dict[str, Any]:
    bind(database)
    Store(database).migrate(partitions=4)
    tokens = TokensFile(quotas={"fast": Quota(starts_per_s=999_999), "flood": Quota(starts_per_s=5)})
    quotas = NamespaceQuotas(tokens, database)

    def flood() -> None:
        try:
            quotas.admit("flood")
        except QuotaExceeded:
            pass

    def select_one() -> None:
        with unit_of_work(database):
            database.execute_sql("SELECT 1").fetchone()

    figures: dict[str, Any] = {}
    for name, call in (
        ("no quota", lambda: quotas.admit("calm")),
        ("admitted (local check + shared row)", lambda: quotas.admit("fast")),
        ("SELECT 1", select_one),
        ("flood at 5/s (refused but a few)", flood),
    ):
        with counted(database) as statements:
            us = per_call_us(call, calls, rounds)
        figures[name] = {"us_per_call": us, "statements": len(statements), "calls": calls * rounds}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres-only", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with new_database() as url:
        database = open_database(url)
        result["postgres"] = measure(database, args.calls, args.rounds)
        database.close()
    if not args.postgres_only:
        with tempfile.TemporaryDirectory() as folder:
            database = open_database(f"sqlite:///{Path(folder) / 'flow.db'}")
            result["sqlite"] = measure(database, args.calls, args.rounds)
            database.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
