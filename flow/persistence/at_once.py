"""Which transitions of a group commit let their queued steps in at once (docs/design.md,
"Concurrency limits"; the other outcome is :mod:`flow.core.at_once`'s).

Run inside the committing transaction, before the batch's statement, on PostgreSQL only. It locks
the rows of the limits the batch's offers claim, in name order (two engines' commits lock in the same
order, and the admission loop locks one limit at a time, so none deadlocks), as the admission loop's
transaction locks one (``SELECT … FOR UPDATE``: one statement for them all); then it counts in one
statement, per limit and key, the slots held (the same rows the loop counts) and what waits (steps
queued, workflows queued). A transition's offer is taken when, for every key its steps claim,
nothing waits (fairness and priority stay the loop's: nobody is ahead of a step let in at once) and
the key's holders, with what this commit lets in before it, leave room for its steps. Else it is
committed queued, and the loop lets it in in its turn. The locks are held until the commit, so the
slots counted are the slots taken: no engine's admission or commit can count them in between.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import peewee

from flow.core.vocabulary import ActivityStatus, WorkflowStatus
from flow.persistence.limits import _HELD
from flow.persistence.records import Transition

#: Held and waiting per key of one limit: :data:`flow.persistence.limits._HELD`, then the keys' queued
#: steps (a concurrency limit's) and queued workflows.
_HELD_AND_WAITERS = f"""
SELECT 'held', h.* FROM ({_HELD}) h
UNION ALL
SELECT 'waiting', limit_key, count(*) FROM activities
WHERE limit_name = %s AND status = '{ActivityStatus.QUEUED.value}' AND limit_rate IS NOT TRUE GROUP BY limit_key
UNION ALL
SELECT 'waiting', limit_key, count(*) FROM workflows
WHERE limit_name = %s AND status = '{WorkflowStatus.IN_PROGRESS.value}' AND queued GROUP BY limit_key
"""


def choose(database: peewee.Database, batch: list[Transition], now: datetime) -> set[int]:
    """The indexes of ``batch`` whose ``at_once`` outcome to commit (see the module docstring)."""
    offers = [i for i, t in enumerate(batch) if t.at_once is not None and t.let_in]
    if not offers:
        return set()
    names = sorted({c.limit for i in offers for c in batch[i].let_in})
    numbers = _lock(database, names, now)
    held: dict[tuple[str, str], int] = {}
    waiting: set[tuple[str, str]] = set()
    # Counted after every lock is taken (a statement's snapshot is taken at its start): one statement.
    count = " UNION ALL ".join(f"SELECT %s, x.* FROM ({_HELD_AND_WAITERS}) x" for _ in names)
    for name, kind, key, n in database.execute_sql(count, [v for limit in names for v in (limit,) * 7]).fetchall():
        if kind == "held":
            held[(name, key or "")] = n
        elif n:
            waiting.add((name, key or ""))
    chosen: set[int] = set()
    for i in offers:
        claims = batch[i].let_in
        needs = Counter((c.limit, c.key) for c in claims)
        room = True
        for (name, key), need in needs.items():
            own = [c.max for c in claims if (c.limit, c.key) == (name, key) and c.max is not None]
            number = numbers[name] if numbers[name] is not None else min(own, default=None)
            if (name, key) in waiting or number is None or held.get((name, key), 0) + need > number:
                room = False
                break
        if room:
            chosen.add(i)
            for slot, need in needs.items():
                held[slot] = held.get(slot, 0) + need
    return chosen


__all__ = ["choose"]


def _lock(database: peewee.Database, names: list[str], now: datetime) -> dict[str, int | None]:
    """Lock the limits' rows in name order, as the admitting transaction locks one (made on first
    use); their numbers set at run time."""
    marks = ", ".join(["%s"] * len(names))
    select = f"SELECT name, max_running FROM limits WHERE name IN ({marks}) ORDER BY name FOR UPDATE"
    rows = dict(database.execute_sql(select, names).fetchall())
    missing = [name for name in names if name not in rows]
    if missing:  # two engines may both insert: one does nothing, both then lock it
        database.execute_sql(
            "INSERT INTO limits (name, updated_at) VALUES "
            + ", ".join(["(%s, %s)"] * len(missing))
            + " ON CONFLICT (name) DO NOTHING",
            [v for name in missing for v in (name, now)],
        )
        rows = dict(database.execute_sql(select, names).fetchall())
    return {name: rows.get(name) for name in names}
