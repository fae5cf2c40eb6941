"""Concurrency limits in the database: admitting what waits, and what the API shows
(docs/design.md, "Concurrency limits").

What holds a slot is never counted anywhere but in the rows that hold it: a step whose
attempt started, or was sent while its run goes on, with a claim; a workflow of a limit
(:mod:`flow.core.workflow_limit`) ``In Progress``, let in; a grant not yet handled (a ``slot``
timer). Nothing can leak: the commit that ends an attempt, or a run, or deletes a workflow
gives the slot back, and an engine that takes over a partition finds the same rows.

Admitting is one transaction per limit: it locks the limit's row (``FOR UPDATE``, so
engines admit for one limit one at a time), counts the holders per key in one statement
(one snapshot: a grant being handled moves from the timer to the step in one commit, and
is counted once either way), reads what waits, lets in what :func:`flow.core.limits.admit`
says, and inserts a ``slot`` timer per step let in (its partition's owner fires it).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from flow.core.limits import Claim, Waiter, admit, displaced, newest, pace, rate_text, waiting_text
from flow.core.vocabulary import UNENDED, ActivityStatus, TimerKind, WorkflowStatus
from flow.persistence.database import is_postgres, unit_of_work, write
from flow.persistence.records import TimerRow, chunks, timer_id

_IN_FLIGHT = (ActivityStatus.SCHEDULED.value, ActivityStatus.STARTED.value)
_QUEUED = ActivityStatus.QUEUED.value
_SLOT = TimerKind.SLOT.value
_CANCEL = TimerKind.LIMIT_CANCEL.value
_RUNNING, _HOLDING = WorkflowStatus.IN_PROGRESS.value, "', '".join(UNENDED)  # Compensating holds its slot
#: Most waiters of one key read by one admitting transaction (more are let in by the next).
_PER_KEY = 1000


@dataclass(frozen=True)
class Admitted:
    """What one admitting transaction let in, and when a rate limit lets its next waiter
    in (None: no waiter waits for time)."""

    grants: list[TimerRow]
    next_at: datetime | None = None


@dataclass(frozen=True)
class LimitUsage:
    """One limit as ``GET /limits`` shows it."""

    name: str
    #: Its number: set at run time, else the definitions' (None: none set, all wait).
    limit: int | None
    #: Whether ``PUT /limits/{name}`` set the number.
    set_at_run_time: bool
    held: int
    waiting: int
    #: Key values with a step holding or waiting.
    keys: int
    #: Held and waiting per key value (only for one limit's own view).
    by_key: dict[str, tuple[int, int]] | None = None
    #: ``concurrency`` or ``rate``, and a rate limit's rate and burst (``held``: let in, not ended).
    kind: str = "concurrency"
    per_s: float | None = None
    burst: int | None = None


class LimitTable:
    """The limits' rows and the steps that claim them (see the module docstring)."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        self.postgres = is_postgres(database)
        self.param = database.param

    def __repr__(self) -> str:
        return "<LimitTable>"

    # -- admitting ---------------------------------------------------------------------

    def waiting_limits(self) -> list[str]:
        """The limits some step or workflow waits for."""
        p = self.param
        with unit_of_work(self.database):
            rows = self.database.execute_sql(
                f"SELECT DISTINCT limit_name FROM activities WHERE limit_name IS NOT NULL AND status = {p} "
                f"UNION SELECT DISTINCT limit_name FROM workflows WHERE limit_name IS NOT NULL AND status = {p} "
                "AND queued",
                (_QUEUED, _RUNNING),
            ).fetchall()
        return [r[0] for r in rows]

    def admit(self, name: str, now: datetime, *, partitions: set[int] | None = None) -> Admitted:
        """Let in what may start now of what waits for the limit ``name``: the grants made
        (``slot`` timers, committed), and when a rate limit lets its next waiter in. A rate
        limit's waiters only of ``partitions``, the admitting engine's (docs/design.md)."""
        p = self.param
        with write(self.database):
            number, per_s, burst = self._lock(name, now)
            held, full = self._held_and_full(name, number)
            skip = f" AND (a.limit_rate IS TRUE OR a.limit_key NOT IN ({', '.join([p] * len(full))}))" if full else ""
            rows = self.database.execute_sql(
                _WAITERS.replace("%s", p).replace("{skip}", skip), (name, *full, name, _PER_KEY)
            ).fetchall()
            waiters = [
                Waiter(w, pos, attempt, part, key or "", limit_max, priority or 3, _timestamp(at), rate_s, rate_b, how)
                for w, pos, attempt, part, key, limit_max, priority, at, rate_s, rate_b, _, how in rows
            ]
            kinds = [rate for *_, rate, _ in rows]
            rated = [
                w
                for w, rate in zip(waiters, kinds, strict=True)
                if rate and (partitions is None or w.partition in partitions)
            ]
            counted = [w for w, rate in zip(waiters, kinds, strict=True) if not rate]
            let_in: list[Waiter] = []
            cancelled: list[Waiter] = []
            next_at = None
            if counted:
                admitted = admit(counted, held, number)
                let_in += admitted
                cancelled = newest(counted, admitted, number)
                if any(w.strategy == "cancel_in_progress" for w in counted):
                    cancelled += self._displaced(name, counted, admitted, number)
            if rated:
                # A name that definitions use both ways is both: each step by its own rule.
                # Keys idle since their arrival time hold no state worth keeping.
                self.database.execute_sql(
                    f"DELETE FROM limit_rates WHERE name = {p} AND tat < {p}", (name, _db_time(self, now))
                )
                tats = {
                    key: _timestamp(tat)
                    for key, tat in self.database.execute_sql(
                        f"SELECT key, tat FROM limit_rates WHERE name = {p}", (name,)
                    ).fetchall()
                }
                paced, changed, next_at = pace(rated, tats, now, per_s=per_s, burst=burst)
                let_in += paced
                for key, tat in changed.items():
                    self.database.execute_sql(
                        f"INSERT INTO limit_rates (name, key, tat) VALUES ({p}, {p}, {p}) "
                        "ON CONFLICT (name, key) DO UPDATE SET tat = EXCLUDED.tat",
                        (name, key, _db_time(self, tat)),
                    )
            granted = [
                TimerRow(
                    timer_id(w.workflow_id, _SLOT, w.position, w.attempt),
                    w.workflow_id,
                    w.partition,
                    _SLOT,
                    w.position,
                    w.attempt,
                    now,
                )
                for w in let_in
            ] + [
                TimerRow(
                    timer_id(w.workflow_id, _CANCEL, None, w.attempt),
                    w.workflow_id,
                    w.partition,
                    _CANCEL,
                    None,
                    w.attempt,
                    now,
                )
                for w in cancelled
            ]
            for chunk in chunks(granted, 100):  # a statement per 100 grants
                self.database.execute_sql(
                    "INSERT INTO timers (id, workflow, partition, kind, position, attempt, due_at) VALUES "
                    + ", ".join([f"({p}, {p}, {p}, {p}, {p}, {p}, {p})"] * len(chunk))
                    + " ON CONFLICT (id) DO NOTHING",
                    [
                        v
                        for g in chunk
                        for v in (g.id, g.workflow_id, g.partition, g.kind, g.position, g.attempt, _db_time(self, now))
                    ],
                )
        return Admitted(granted, next_at)

    def _displaced(self, name: str, waiters: list[Waiter], let_in: list[Waiter], number: int | None) -> list[Waiter]:
        """The running workflows of a ``cancel_in_progress`` limit that its waiters displace
        (:func:`flow.core.limits.displaced`), read in the admitting transaction."""
        rows = self.database.execute_sql(_HOLDERS.replace("%s", self.param), (name,)).fetchall()
        holders = [
            Waiter(w, None, run, part, key or "", limit_max, priority, _timestamp(at), strategy="cancel_in_progress")
            for w, run, part, key, limit_max, priority, at, told in rows
            if not told
        ]
        cancelling = collections.Counter(row[3] or "" for row in rows if row[7])
        return displaced(waiters, let_in, holders, cancelling, number)

    def _held_and_full(self, name: str, number: int | None) -> tuple[dict[str, int], list[str]]:
        """The slots held per key, and the keys whose steps wait behind full slots (the
        waiters' read skips them; a workflow-level waiter is read anyway: its strategy may
        cancel it or another): one statement, one round trip, one snapshot."""
        rows = self.database.execute_sql(_HELD_AND_WAITING.replace("%s", self.param), (name,) * 5).fetchall()
        held = {key: n for kind, key, n in rows if kind == "held"}
        limits = {key: number if number is not None else smallest for kind, key, smallest in rows if kind == "waiting"}
        return held, [key for key, limit in limits.items() if limit is None or held.get(key or "", 0) >= limit]

    def _lock(self, name: str, now: datetime) -> tuple[int | None, float | None, int | None]:
        """Lock the limit's row (made on first use: one round trip once it exists); its numbers
        set at run time (a concurrency limit's; a rate limit's rate and burst)."""
        p = self.param
        select = f"SELECT max_running, per_s, burst FROM limits WHERE name = {p}" + (" FOR UPDATE" * self.postgres)
        row = self.database.execute_sql(select, (name,)).fetchone()
        if row is None:  # two engines may both insert: one does nothing, both then lock it
            self.database.execute_sql(
                f"INSERT INTO limits (name, updated_at) VALUES ({p}, {p}) ON CONFLICT (name) DO NOTHING",
                (name, _db_time(self, now)),
            )
            row = self.database.execute_sql(select, (name,)).fetchone()
        return (row[0], row[1], row[2]) if row else (None, None, None)

    def granted(self, partitions: list[int]) -> list[TimerRow]:
        """The grants not yet handled of ``partitions`` (this engine's): made by any engine."""
        if not partitions:
            return []
        p = self.param
        marks = ", ".join([p] * len(partitions))
        with unit_of_work(self.database):
            rows = self.database.execute_sql(
                "SELECT id, workflow, partition, kind, position, attempt, due_at FROM timers "
                f"WHERE kind IN ({p}, {p}) AND partition IN ({marks})",
                (_SLOT, _CANCEL, *partitions),
            ).fetchall()
        return [TimerRow(i, w, part, k, pos, a, _timestamp(due)) for i, w, part, k, pos, a, due in rows]

    # -- the API -----------------------------------------------------------------------

    def set(self, name: str, numbers: dict[str, Any], now: datetime) -> None:
        """Set (None: unset) the numbers of the limit ``name`` that ``numbers`` gives
        (``max_running``; ``per_s``, ``burst``; and its ``namespace``), at once for what waits."""
        p = self.param
        columns = [c for c in ("max_running", "per_s", "burst", "namespace") if c in numbers]
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*columns, "updated_at"))
        with write(self.database):
            if "per_s" in numbers or "burst" in numbers:
                # The keys' arrival times were paced at the old rate: start afresh.
                self.database.execute_sql(f"DELETE FROM limit_rates WHERE name = {p}", (name,))
            self.database.execute_sql(
                f"INSERT INTO limits (name, {', '.join(columns)}, updated_at) VALUES "
                f"({', '.join([p] * (len(columns) + 2))}) ON CONFLICT (name) DO UPDATE SET {updates}",
                (name, *(numbers[c] for c in columns), _db_time(self, now)),
            )

    def usage(self, name: str | None = None) -> list[LimitUsage]:
        """Every limit that has a number set or a step holding or waiting (or only ``name``,
        with its keys)."""
        p = self.param
        only = f" AND a.limit_name = {p}" if name is not None else ""
        args: tuple[Any, ...] = (name,) if name is not None else ()
        with unit_of_work(self.database):
            per_key = self.database.execute_sql(_USAGE.replace("%s", p).replace("{only}", only), args).fetchall()
            per_key += self.database.execute_sql(
                _WORKFLOW_USAGE.replace("%s", p).replace("{only}", only.replace("a.", "w.")), args
            ).fetchall()
            numbers = {
                row[0]: row[1:]
                for row in self.database.execute_sql(
                    "SELECT name, max_running, per_s, burst FROM limits"
                    + (f" WHERE name = {p}" if name is not None else ""),
                    args,
                ).fetchall()
            }
        found: dict[str, dict[str, Any]] = {}
        for limit_name, key, held, waiting, limit_max, rate, per_s, burst in per_key:
            entry = found.setdefault(limit_name, _entry())
            entry["held"] += held
            entry["waiting"] += waiting
            was = entry["keys"].get(key or "", (0, 0))  # a named limit may hold steps and workflows
            entry["keys"][key or ""] = (was[0] + held, was[1] + waiting)
            entry["rate"] = entry["rate"] or bool(rate)
            for field, value in (("max", limit_max), ("per_s", per_s), ("burst", burst)):
                if value is not None:
                    entry[field] = max(entry[field] or 0, value)
        for limit_name, (max_running, per_s, _) in numbers.items():
            if limit_name in found:
                continue  # its kind is its steps'
            if max_running is None and per_s is None:
                continue  # a row made to lock an idle limit (or only a burst set): nothing to show
            found[limit_name] = {**_entry(), "rate": max_running is None}
        usages = []
        for limit_name, entry in sorted(found.items()):
            max_running, per_s, burst = numbers.get(limit_name, (None, None, None))
            rate = entry["rate"]
            usages.append(
                LimitUsage(
                    name=limit_name,
                    limit=None if rate else max_running if max_running is not None else entry["max"],
                    set_at_run_time=(per_s if rate else max_running) is not None,
                    held=entry["held"],
                    waiting=entry["waiting"],
                    keys=len(entry["keys"]),
                    by_key=entry["keys"] if name is not None else None,
                    kind="rate" if rate else "concurrency",
                    per_s=(per_s if per_s is not None else entry["per_s"]) if rate else None,
                    burst=(burst if burst is not None else entry["burst"]) if rate else None,
                )
            )
        return usages

    def waiting_for(self, claim: Claim) -> str:
        """What a queued step with ``claim`` waits for: ``waiting for payments: 3 of 3 held``,
        ``waiting for email [acme]: 10 per s``."""
        with unit_of_work(self.database):
            row = self.database.execute_sql(
                f"SELECT max_running, per_s, burst FROM limits WHERE name = {self.param}", (claim.limit,)
            ).fetchone()
        if claim.rate:
            per_s = row[1] if row and row[1] is not None else claim.per_s
            burst = row[2] if row and row[2] is not None else claim.burst
            return rate_text(claim.limit, claim.key, per_s, burst)
        number = row[0] if row and row[0] is not None else claim.max
        return waiting_text(claim.limit, claim.key, self.holding(claim.limit, claim.key), number)

    def holding(self, name: str, key: str) -> int:
        """Slots of ``name`` held for ``key`` (what a queued step's view says it waits for)."""
        with unit_of_work(self.database):
            rows = self.database.execute_sql(_HELD.replace("%s", self.param), (name,) * 4).fetchall()
        return int(dict(rows).get(key, 0))


def _entry() -> dict[str, Any]:
    return {"held": 0, "waiting": 0, "max": None, "per_s": None, "burst": None, "rate": False, "keys": {}}


def _timestamp(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _db_time(table: LimitTable, value: datetime) -> Any:
    """A timestamp as Peewee writes it (SQLite: its text)."""
    return value if table.postgres else str(value)


#: Step rows ``a`` holding a slot: started, or sent while its run goes on (a rerun's ``outlived``).
_ACTIVITY_HOLDS = f"""(a.status = '{_IN_FLIGHT[1]}' OR (a.status = '{_IN_FLIGHT[0]}' AND a.attempt > a.attempts_before
    AND EXISTS (SELECT 1 FROM workflows r WHERE r.id = a.workflow_id AND r.status = '{_RUNNING}')))"""

#: Slots held per key of one concurrency limit, in one statement (one snapshot): its steps
#: in flight (above), its workflows let in and running, and its grants not yet handled (a
#: step's, a workflow's); a rate-limited step of the same name holds none.
_HELD = f"""
SELECT limit_key, count(*) FROM (
    SELECT a.limit_key FROM activities a
    WHERE a.limit_name = %s AND a.limit_rate IS NOT TRUE AND {_ACTIVITY_HOLDS}
    UNION ALL
    SELECT a.limit_key FROM timers t JOIN activities a ON a.workflow_id = t.workflow AND a.position = t.position
    WHERE t.kind = '{_SLOT}' AND a.limit_name = %s AND a.status = '{_QUEUED}' AND t.attempt = a.attempt + 1
        AND a.limit_rate IS NOT TRUE
    UNION ALL
    SELECT w.limit_key FROM workflows w
    WHERE w.limit_name = %s AND w.status IN ('{_HOLDING}') AND w.started AND NOT w.queued
    UNION ALL
    SELECT w.limit_key FROM timers t JOIN workflows w ON w.id = t.workflow
    WHERE t.kind = '{_SLOT}' AND t.position IS NULL AND w.limit_name = %s AND w.status = '{_RUNNING}' AND w.queued
        AND t.attempt = w.run
) held GROUP BY limit_key
"""

#: What waits for one limit and has no grant yet — queued steps (not of a paused
#: workflow: they wait for its resume), and queued workflows (no position; their
#: ``attempt`` is the run, their age the run's start): at most ``%s`` per key, in each
#: key's order.
_WAITERS = f"""
SELECT workflow_id, position, attempt,
    (SELECT w.partition FROM workflows w WHERE w.id = waiting.workflow_id),
    limit_key, limit_max, priority, scheduled_at, rate_per_s, rate_burst, limit_rate, strategy
FROM (
    SELECT q.*, row_number() OVER (
            PARTITION BY q.limit_key ORDER BY q.priority, q.scheduled_at, q.workflow_id, q.position
        ) AS n FROM (
        SELECT a.workflow_id, a.position, a.attempt + 1 AS attempt, a.limit_key, a.limit_max,
            a.priority, a.scheduled_at, a.rate_per_s, a.rate_burst, a.limit_rate, 'queue' AS strategy
        FROM activities a
        WHERE a.limit_name = %s AND a.status = '{_QUEUED}' AND NOT EXISTS (
            SELECT 1 FROM timers t
            WHERE t.id = a.workflow_id || ':{_SLOT}:' || a.position || ':' || (a.attempt + 1)
        ) AND NOT EXISTS (SELECT 1 FROM workflows p WHERE p.id = a.workflow_id AND p.paused){{skip}}
        UNION ALL
        SELECT w.id, NULL, w.run, w.limit_key, w.limit_max, w.priority, w.run_started_at, NULL, NULL, NULL,
            coalesce(w.limit_strategy, 'queue')
        FROM workflows w
        WHERE w.limit_name = %s AND w.status = '{_RUNNING}' AND w.queued AND NOT EXISTS (
            SELECT 1 FROM timers t WHERE t.id IN (w.id || ':{_SLOT}:-:' || w.run, w.id || ':{_CANCEL}:-:' || w.run)
        )
    ) q
) waiting WHERE n <= %s
"""

#: :data:`_HELD`, and the keys steps wait for with their definitions' smallest number: which
#: keys are full, whose waiters the admitting transaction need not read (a big tenant's thousands).
_HELD_AND_WAITING = f"""
SELECT 'held', h.* FROM ({_HELD}) h
UNION ALL
SELECT 'waiting', limit_key, min(limit_max) FROM activities
WHERE limit_name = %s AND status = '{_QUEUED}' AND limit_rate IS NOT TRUE
GROUP BY limit_key
"""

#: Held and waiting per limit and key (a grant not yet handled counts as held).
_USAGE = f"""
SELECT a.limit_name, a.limit_key,
    sum(CASE WHEN a.status <> '{_QUEUED}' OR g.id IS NOT NULL THEN 1 ELSE 0 END),
    sum(CASE WHEN a.status = '{_QUEUED}' AND g.id IS NULL THEN 1 ELSE 0 END),
    max(a.limit_max), max(CASE WHEN a.limit_rate THEN 1 ELSE 0 END), max(a.rate_per_s), max(a.rate_burst)
FROM activities a
LEFT JOIN timers g ON g.kind = '{_SLOT}' AND g.workflow = a.workflow_id AND g.position = a.position
    AND g.attempt = a.attempt + 1
WHERE a.limit_name IS NOT NULL AND (a.status = '{_QUEUED}' OR {_ACTIVITY_HOLDS}){{only}}
GROUP BY a.limit_name, a.limit_key
"""

#: Held and waiting per workflow limit and key (a grant not yet handled counts as held).
_WORKFLOW_USAGE = f"""
SELECT w.limit_name, w.limit_key,
    sum(CASE WHEN NOT w.queued OR g.id IS NOT NULL THEN 1 ELSE 0 END),
    sum(CASE WHEN w.queued AND g.id IS NULL THEN 1 ELSE 0 END),
    max(w.limit_max), 0, NULL, NULL
FROM workflows w
LEFT JOIN timers g ON g.kind = '{_SLOT}' AND g.workflow = w.id AND g.position IS NULL AND g.attempt = w.run
WHERE w.limit_name IS NOT NULL AND w.status IN ('{_HOLDING}') AND w.started{{only}}
GROUP BY w.limit_name, w.limit_key
"""

#: The running workflows of one ``cancel_in_progress`` limit, oldest first, and whether a
#: ``limit-cancel`` timer is already on its way to each.
_HOLDERS = f"""
SELECT w.id, w.run, w.partition, w.limit_key, w.limit_max, w.priority, w.run_started_at,
    CASE WHEN EXISTS (SELECT 1 FROM timers t WHERE t.id = w.id || ':{_CANCEL}:-:' || w.run) THEN 1 ELSE 0 END
FROM workflows w
WHERE w.limit_name = %s AND w.status = '{_RUNNING}' AND w.started AND NOT w.queued
    AND w.limit_strategy = 'cancel_in_progress'
ORDER BY w.run_started_at, w.id
"""
