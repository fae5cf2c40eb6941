"""Which transitions of a group commit let their queued steps in at once (docs/design.md,
"Concurrency limits"; the other outcome is :mod:`flow.core.at_once`'s).

Run inside the committing transaction, before the batch's statement, on PostgreSQL only. For each
limit the batch's offers claim, in name order (two engines' commits lock in the same order, so they
never deadlock), it locks the limit's row as the admission loop's transaction does
(:meth:`flow.persistence.limits.LimitTable.lock`: ``SELECT … FOR UPDATE``), then counts in one
statement the slots held per key (the same rows the loop counts) and what waits per key (steps
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
from flow.persistence.limits import _HELD, LimitTable
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
    table = LimitTable(database)
    names = sorted({c.limit for i in offers for c in batch[i].let_in})
    numbers: dict[str, int | None] = {}
    held: dict[tuple[str, str], int] = {}
    waiting: set[tuple[str, str]] = set()
    for name in names:
        numbers[name] = table.lock(name, now)[0]
        for kind, key, n in database.execute_sql(_HELD_AND_WAITERS, (name,) * 6).fetchall():
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
