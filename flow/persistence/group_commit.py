"""Group commit: the transitions of many workflow actors in one transaction, fenced.

On PostgreSQL the whole batch is one prepared statement (:data:`COMMIT_SQL`), one round trip. It
locks the lease rows of the partitions involved (``FOR KEY SHARE``: a renewal does not wait for it,
a takeover's ``FOR UPDATE`` does), drops every transition whose partition is no longer ours under
the epoch it was decided under (fencing), then updates the workflows whose stored version is still
the one the actor holds (the version check); only those transitions' activities, history, outbox
rows, timers and signals are written. On SQLite the same steps run statement by statement in one
``IMMEDIATE`` transaction (docs/design.md, "Group commit" and "Fencing").
"""

from __future__ import annotations

import json
from typing import Any

import peewee

from flow.clock import utcnow
from flow.persistence import at_once, history_marks
from flow.persistence import attributes as stored_attributes
from flow.persistence.database import is_postgres, unit_of_work, write
from flow.persistence.mapping import (
    ACTIVITY_INSERT_COLUMNS,
    SIGNAL_INSERT_COLUMNS,
    activity_changes,
    activity_row,
    heartbeat_column,
    signal_row,
    workflow_changes,
)
from flow.persistence.models import (
    ActivityRecord,
    EventRecord,
    OutboxRecord,
    PartitionLease,
    TimerRecord,
    WorkflowRecord,
)
from flow.persistence.prepared import execute_prepared
from flow.persistence.records import BatchResult, Transition, chunks, timer_fields, to_json
from flow.persistence.rewrites import _sqlite_value, rewrite
from flow.wire.outgoing import Outgoing


class GroupCommit:
    """Commits batches of transitions on one database (see the module docstring)."""

    def __init__(self, database: peewee.Database, *, before: Any = None, history_warn: int = 10_000) -> None:
        self.database = database
        self.postgres = is_postgres(database)
        #: Called before each commit (fault injection); None in production.
        self.before = before
        #: ``FLOW_HISTORY_WARN``: the commit that takes a history past it logs a warning.
        self.history_warn = history_warn

    def _maybe_fail(self) -> None:
        if self.before is not None:
            self.before()

    def commit(self, batch: list[Transition], *, owner: str) -> BatchResult:
        """Commit every transition of ``batch`` that passes the fence and the version check."""
        if self.postgres:
            with unit_of_work(self.database):
                self._maybe_fail()
                if not any(t.rewritten or t.at_once for t in batch):
                    return self._commit_postgres(batch, owner)
                with self.database.atomic():  # a rerun's rows, the limits' locks: with the commit
                    chosen = at_once.choose(self.database, batch, utcnow())
                    result = self._commit_postgres(
                        [t.at_once or t if i in chosen else t for i, t in enumerate(batch)], owner
                    )
                    rewrite(self.database, [batch[i] for i in result.committed])
                    result.let_in = [i for i in result.committed if i in chosen]
                    return result
        refused: dict[int, str] = {}
        with write(self.database):
            self._maybe_fail()
            epochs: dict[int, int] = {}
            for t in batch:
                epochs.setdefault(t.partition, t.epoch)
            ours = self.held(epochs, owner, every_epoch=batch)
            candidates = []
            for i, t in enumerate(batch):
                if (t.partition, t.epoch) in ours:
                    candidates.append(i)
                else:
                    refused[i] = "fenced"
            updated = self._update_workflows([batch[i] for i in candidates])
            committed = []
            for i in candidates:
                if batch[i].workflow_id in updated:
                    committed.append(i)
                else:
                    refused[i] = "version"
            accepted = [batch[i] for i in committed]
            self._insert_activities(accepted)
            self._update_activities(accepted)
            self._write_signals(accepted)
            stored_attributes.write(self.database, [row for t in accepted for row in t.attributes_set])
            self._insert_history(accepted)
            self._insert_outbox([(t.workflow_id, o) for t in accepted for o in t.owed])
            self._write_timers(accepted)
            rewrite(self.database, accepted)
            self._mark_deleted(batch, refused)
        return BatchResult(committed, refused)

    def _mark_deleted(self, batch: list[Transition], refused: dict[int, str]) -> None:
        """Tell a version refusal whose workflow no longer exists (it was deleted: the API,
        retention) as ``"deleted"``: its events are dropped, not tried again. Only refused
        transitions are looked up, so a commit that lost nothing pays nothing."""
        ids = {batch[i].workflow_id for i, why in refused.items() if why == "version"}
        if not ids:
            return
        found = {r[0] for r in WorkflowRecord.select(WorkflowRecord.id).where(WorkflowRecord.id.in_(ids)).tuples()}
        for i, why in refused.items():
            if why == "version" and batch[i].workflow_id not in found:
                refused[i] = "deleted"

    def _commit_postgres(self, batch: list[Transition], owner: str) -> BatchResult:
        """The whole batch in one prepared statement (:data:`COMMIT_SQL`): one round trip,
        no planning, and atomic as any single statement is."""
        t = batch
        activities = [(x.workflow_id, a) for x in t for a in x.changed]
        events = [(x.workflow_id, entry, at) for x in t for entry, at in x.history]
        owed = [(x.workflow_id, o) for x in t for o in x.owed]
        deleted = [(x.workflow_id, tid) for x in t for tid in x.timers_deleted]
        timers = [r for x in t for r in x.timers_set]
        taken = [(x.workflow_id, s) for x in t for s in x.signals_taken]
        params = [
            owner,
            sorted({x.partition for x in t}),
            [x.workflow_id for x in t],
            [x.partition for x in t],
            [x.epoch for x in t],
            [x.version for x in t],
            [x.after.status.value for x in t],
            [x.after.started for x in t],
            [x.after.run for x in t],
            [x.after.run_started_at for x in t],
            [to_json(x.after.output) for x in t],
            [x.after.error for x in t],
            [x.after.finished_at for x in t],
            [x.updated_at for x in t],
            [w for w, _ in activities],
            [a.position for _, a in activities],
            [a.status.value for _, a in activities],
            [a.attempt for _, a in activities],
            [a.attempts_before for _, a in activities],
            [to_json(a.output) for _, a in activities],
            [a.error for _, a in activities],
            [a.scheduled_at for _, a in activities],
            [a.started_at for _, a in activities],
            [a.finished_at for _, a in activities],
            [a.skip_reason for _, a in activities],
            [w for w, _, _ in events],
            [e.position for _, e, _ in events],
            [e.type for _, e, _ in events],
            [to_json(dict(e.data)) for _, e, _ in events],
            [at for _, _, at in events],
            [o.id for _, o in owed],
            [w for w, _ in owed],
            [o.partition for _, o in owed],
            [o.queue_name for _, o in owed],
            [o.actor_name for _, o in owed],
            [to_json(o.kwargs) for _, o in owed],
            [o.send_after for _, o in owed],
            [tid for _, tid in deleted],
            [w for w, _ in deleted],
            [r.id for r in timers],
            [r.workflow_id for r in timers],
            [r.partition for r in timers],
            [r.kind for r in timers],
            [r.position for r in timers],
            [r.attempt for r in timers],
            [r.due_at for r in timers],
            [x.after.traceparent for x in t],
            json.dumps([activity_row(x.workflow_id, a) for x in t for a in x.added], default=str),
            json.dumps([signal_row(x.workflow_id, n, s) for x in t for n, s in x.signals_added], default=str),
            [x.after.paused for x in t],
            [to_json(heartbeat_column(a)) for _, a in activities],
            [w for w, _ in taken],
            [s.id for _, s in taken],
            [s.consumed_by for _, s in taken],
            [a.claim.limit if a.claim else None for _, a in activities],
            [a.claim.key if a.claim else None for _, a in activities],
            [a.claim.max if a.claim else None for _, a in activities],
            [a.claim.priority if a.claim else None for _, a in activities],
            [a.claim.per_s if a.claim else None for _, a in activities],
            [a.claim.burst if a.claim else None for _, a in activities],
            [a.claim.rate if a.claim else None for _, a in activities],
            [x.after.queued for x in t],
            *stored_attributes.arrays(stored_attributes.last_wins(r for x in t for r in x.attributes_set)),
            [len(x.history) for x in t],
            self.history_warn,
            [o.priority for _, o in owed],
        ]
        rows = execute_prepared(self.database, "flow_commit", COMMIT_SQL, COMMIT_TYPES, params)
        updated = {value for kind, value in rows if kind == "w"}
        fenced_ok = {value for kind, value in rows if kind == "f"}
        for workflow_id, length in (v.rsplit(":", 1) for kind, v in rows if kind == "h"):
            history_marks.warn(workflow_id, int(length), self.history_warn)  # passed by this commit
        committed: list[int] = []
        refused: dict[int, str] = {}
        for i, x in enumerate(batch):
            if x.workflow_id in updated:
                committed.append(i)
            elif f"{x.partition}:{x.epoch}" not in fenced_ok:
                refused[i] = "fenced"
            else:
                refused[i] = "version"
        self._mark_deleted(batch, refused)
        return BatchResult(committed, refused)

    def held(
        self, epochs: dict[int, int], owner: str, every_epoch: list[Transition] | None = None
    ) -> set[int] | set[tuple[int, int]]:
        """Lock the lease rows of ``epochs``' partitions; return the ``(partition, epoch)``
        pairs that are ours (for ``every_epoch``: each epoch a transition carries)."""
        query = PartitionLease.select(PartitionLease.partition, PartitionLease.owner, PartitionLease.epoch).where(
            PartitionLease.partition.in_(list(epochs))
        )
        if self.postgres:
            query = query.for_update("FOR KEY SHARE")
        held = {p: e for p, o, e in query.tuples() if o == owner}
        if every_epoch is None:
            return {p for p, e in epochs.items() if held.get(p) == e}
        return {(t.partition, t.epoch) for t in every_epoch if held.get(t.partition) == t.epoch}

    def _update_workflows(self, transitions: list[Transition]) -> set[str]:
        updated = set()
        for t in transitions:
            added, changes = len(t.history), workflow_changes(t.after)
            changes.update(updated_at=t.updated_at, version=t.version + 1)
            query = WorkflowRecord.update(**changes, history_length=WorkflowRecord.history_length + added)
            query = query.where((WorkflowRecord.id == t.workflow_id) & (WorkflowRecord.version == t.version))
            rows = list(query.returning(WorkflowRecord.history_length).tuples().execute())
            if len(rows) == 1:
                updated.add(t.workflow_id)
                if history_marks.passed(rows[0][0], added, self.history_warn):
                    history_marks.warn(t.workflow_id, rows[0][0], self.history_warn)
        return updated

    def _insert_activities(self, transitions: list[Transition]) -> None:
        rows = [activity_row(t.workflow_id, a) for t in transitions for a in t.added]
        if not rows:
            return
        marks = ", ".join([self.database.param] * len(ACTIVITY_INSERT_COLUMNS))
        sql = f"INSERT INTO activities ({', '.join(ACTIVITY_INSERT_COLUMNS)}) VALUES ({marks})"
        for row in rows:
            self.database.execute_sql(sql, [_sqlite_value(row[c]) for c in ACTIVITY_INSERT_COLUMNS])

    def _write_signals(self, transitions: list[Transition]) -> None:
        """A row per signal the inbox gained; a taken one loses its payload. Nothing for
        a transition that did not change the inbox (docs/design.md, "Waiting")."""
        marks = ", ".join([self.database.param] * len(SIGNAL_INSERT_COLUMNS))
        insert = f"INSERT INTO signals ({', '.join(SIGNAL_INSERT_COLUMNS)}) VALUES ({marks})"
        take = (
            f"UPDATE signals SET payload = NULL, consumed_by = {self.database.param} "
            f"WHERE workflow_id = {self.database.param} AND signal_id = {self.database.param}"
        )
        for t in transitions:
            for n, signal in t.signals_added:
                row = signal_row(t.workflow_id, n, signal)
                self.database.execute_sql(insert, [_sqlite_value(row[c]) for c in SIGNAL_INSERT_COLUMNS])
            for signal in t.signals_taken:
                self.database.execute_sql(take, (signal.consumed_by, t.workflow_id, signal.id))

    def _update_activities(self, transitions: list[Transition]) -> None:
        for t in transitions:
            for a in t.changed:
                ActivityRecord.update(**activity_changes(a)).where(
                    (ActivityRecord.workflow == t.workflow_id) & (ActivityRecord.position == a.position)
                ).execute()

    def _insert_history(self, transitions: list[Transition]) -> None:
        rows = [
            {
                "workflow": t.workflow_id,
                "position": entry.position,
                "type": entry.type,
                "data": dict(entry.data),
                "occurred_at": occurred_at,
            }
            for t in transitions
            for entry, occurred_at in t.history
        ]
        for chunk in chunks(rows, 1000):
            EventRecord.insert_many(chunk).execute()

    def _insert_outbox(self, owed: list[tuple[str, Outgoing]]) -> None:
        # The row names the workflow whose transition owes it (as on PostgreSQL), which
        # is not always the one the message is about (a child reporting to its parent).
        rows = [
            {
                "id": o.id,
                "workflow": workflow_id,
                "partition": o.partition,
                "queue_name": o.queue_name,
                "actor_name": o.actor_name,
                "kwargs": o.kwargs,
                "due_at": o.send_after,
                "send_after": o.send_after,
                "priority": o.priority,
            }
            for workflow_id, o in owed
        ]
        for chunk in chunks(rows, 1000):
            OutboxRecord.insert_many(chunk).execute()

    def _write_timers(self, transitions: list[Transition]) -> None:
        deleted = [i for t in transitions for i in t.timers_deleted]
        for chunk in chunks(deleted, 1000):
            TimerRecord.delete().where(TimerRecord.id.in_(chunk)).execute()
        timer_rows = [timer_fields(r) for t in transitions for r in t.timers_set]
        for batch in chunks(timer_rows, 1000):
            # The same timer set again (a recovery, a redelivered event) keeps one row.
            TimerRecord.insert_many(batch).on_conflict(
                conflict_target=[TimerRecord.id], preserve=[TimerRecord.due_at]
            ).execute()


#: Parameter types of :data:`COMMIT_SQL`, in order: the owner, the partitions, then one
#: array per column of each table written (empty arrays where a batch writes nothing).
COMMIT_TYPES = (
    "text, int[], "
    "text[], int[], bigint[], int[], text[], bool[], int[], timestamp[], text[], text[], timestamp[], timestamp[], "
    "text[], int[], text[], int[], int[], text[], text[], timestamp[], timestamp[], timestamp[], text[], "
    "text[], int[], text[], text[], timestamp[], "
    "text[], text[], int[], text[], text[], text[], timestamp[], "
    "text[], text[], "
    "text[], text[], int[], text[], int[], int[], timestamp[], "
    "text[], json, json, bool[], text[], "
    "text[], text[], int[], "
    "text[], text[], int[], int[], "
    "float8[], int[], bool[], "
    "bool[], " + ", ".join(stored_attributes.ARRAY_TYPES) + ", int[], int, int[]"
)

#: A group commit as one statement of data-modifying CTEs (docs/design.md, "Group
#: commit"): ``fence`` locks the lease rows we still hold (FOR KEY SHARE: a takeover's
#: FOR UPDATE waits for it, a renewal does not); ``w`` updates the workflows whose
#: partition epoch and version both match and returns their ids; every other write
#: keeps only those workflows' rows; events are inserted in the order given, which
#: their ids (the history's order) follow.
COMMIT_SQL = (
    """
WITH fence AS (
    SELECT partition, epoch FROM partition_leases WHERE owner = $1 AND partition = ANY($2) FOR KEY SHARE
), wv AS (
    SELECT * FROM unnest($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $47, $50, $62, $69)
        AS x(id, partition, epoch, version, status, started, run, run_started_at, output, error, finished_at,
             updated_at, traceparent, paused, queued, added)
), w AS (
    UPDATE workflows AS t SET status = wv.status, started = wv.started, run = wv.run,
        run_started_at = wv.run_started_at, output = wv.output, error = wv.error, finished_at = wv.finished_at,
        updated_at = wv.updated_at, version = wv.version + 1, traceparent = wv.traceparent,
        paused = wv.paused, queued = wv.queued, history_length = t.history_length + wv.added
    FROM wv JOIN fence ON fence.partition = wv.partition AND fence.epoch = wv.epoch
    WHERE t.id = wv.id AND t.version = wv.version
    RETURNING t.id, t.history_length AS length, wv.added
), a AS (
    UPDATE activities AS t SET status = av.status, attempt = av.attempt, attempts_before = av.attempts_before,
        output = av.output, error = av.error, scheduled_at = av.scheduled_at, started_at = av.started_at,
        finished_at = av.finished_at, skip_reason = av.skip_reason, heartbeat = av.heartbeat,
        limit_name = av.limit_name, limit_key = av.limit_key, limit_max = av.limit_max, priority = av.priority,
        rate_per_s = av.rate_per_s, rate_burst = av.rate_burst, limit_rate = av.limit_rate
    FROM unnest($15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $51, $55, $56, $57, $58, $59, $60, $61)
        AS av(workflow_id, position, status, attempt, attempts_before, output, error, scheduled_at, started_at,
              finished_at, skip_reason, heartbeat, limit_name, limit_key, limit_max, priority, rate_per_s,
              rate_burst, limit_rate)
    WHERE t.workflow_id = av.workflow_id AND t.position = av.position AND av.workflow_id IN (SELECT id FROM w)
), e AS (
    INSERT INTO events (workflow_id, position, type, data, occurred_at)
    SELECT ev.workflow_id, ev.position, ev.type, ev.data, ev.occurred_at
    FROM unnest($26, $27, $28, $29, $30) WITH ORDINALITY AS ev(workflow_id, position, type, data, occurred_at, n)
    WHERE ev.workflow_id IN (SELECT id FROM w) ORDER BY ev.n
), o AS (
    INSERT INTO outbox (id, workflow, partition, queue_name, actor_name, kwargs, due_at, send_after, priority)
    SELECT id, workflow, partition, queue_name, actor_name, kwargs, send_after, send_after, priority
    FROM unnest($31, $32, $33, $34, $35, $36, $37, $71)
        AS ov(id, workflow, partition, queue_name, actor_name, kwargs, send_after, priority)
    WHERE ov.workflow IN (SELECT id FROM w)
), td AS (
    DELETE FROM timers AS t USING unnest($38, $39) AS d(id, workflow)
    WHERE t.id = d.id AND d.workflow IN (SELECT id FROM w)
), ti AS (
    INSERT INTO timers (id, workflow, partition, kind, position, attempt, due_at)
    SELECT tv.id, tv.workflow, tv.partition, tv.kind, tv.position, tv.attempt, tv.due_at
    FROM unnest($40, $41, $42, $43, $44, $45, $46) AS tv(id, workflow, partition, kind, position, attempt, due_at)
    WHERE tv.workflow IN (SELECT id FROM w)
    ON CONFLICT (id) DO UPDATE SET due_at = EXCLUDED.due_at
), ai AS (
    INSERT INTO activities (ACTIVITY_INSERT_COLUMNS)
    SELECT ACTIVITY_INSERT_COLUMNS FROM json_populate_recordset(NULL::activities, $48) AS r
    WHERE r.workflow_id IN (SELECT id FROM w)
), si AS (
    INSERT INTO signals (SIGNAL_INSERT_COLUMNS)
    SELECT SIGNAL_INSERT_COLUMNS FROM json_populate_recordset(NULL::signals, $49) AS r
    WHERE r.workflow_id IN (SELECT id FROM w)
), st AS (
    UPDATE signals AS t SET payload = NULL, consumed_by = sv.consumed_by
    FROM unnest($52, $53, $54) AS sv(workflow_id, signal_id, consumed_by)
    WHERE t.workflow_id = sv.workflow_id AND t.signal_id = sv.signal_id AND sv.workflow_id IN (SELECT id FROM w)
), at AS (
    ATTRIBUTES_UPSERT
)
SELECT 'w', id FROM w UNION ALL SELECT 'f', partition || ':' || epoch FROM fence
UNION ALL SELECT 'h', id || ':' || length FROM w WHERE length >= $70 AND length - added < $70
""".replace("ACTIVITY_INSERT_COLUMNS", ", ".join(ACTIVITY_INSERT_COLUMNS))
    .replace("SIGNAL_INSERT_COLUMNS", ", ".join(SIGNAL_INSERT_COLUMNS))
    .replace("ATTRIBUTES_UPSERT", stored_attributes.upsert_sql(63, only_written=True))
)
