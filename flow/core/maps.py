"""``map``: one activity run once per item of a list an expression gives.

When a map's turn comes, its ``over`` expression (JMESPath, over the same context as
``when``) gives the list. Each item becomes an activity of its own, appended after
the definition's activities (``parent``: the map's position; ``index``; ``item``),
so an item has its own attempts and retry budget and reuses, as they are, the
attempt messages, timers, stale-result checks and recovery of any activity. The map
itself is ``Running`` meanwhile: it owes no message.

- At most ``max_concurrency`` items are in flight (scheduled, started, or waiting for
  a retry); the next pending item, in list order, is scheduled as one ends.
- Every item succeeded: the map succeeds, its output the list of the items' outputs
  in order. An empty list succeeds at once with ``[]``.
- An item failed permanently: the map fails, naming the item; items not yet run are
  skipped, items in flight run to their end and their results are recorded. Whether
  the map's failure fails the workflow is its ``required``'s business.
- A retry-from-failure resumes the items of the failed map: the ones that succeeded
  are not run again, and ``over`` is not evaluated again.

Pure: no I/O, no clock (docs/design.md, "Graphs").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flow.core import graph, strict_json
from flow.core.commands import CancelTimer, Command
from flow.core.failure import cause
from flow.core.state import ActivityState, WorkflowState
from flow.core.steps import HistoryEntry, pending_again, schedule
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind
from flow.errors import InvalidJson

#: Most items one map may have; a longer list fails the map before any item runs.
#: Each item is a row (and a message per attempt): 10,000 keeps a workflow's state in
#: the engine's memory, and its load after a restart, within a few megabytes.
MAX_ITEMS = 10_000

#: What a resume runs again: items that did not succeed and owe nothing.
_RERUN = frozenset({ActivityStatus.FAILED, ActivityStatus.SKIPPED, ActivityStatus.CANCELLED})
#: Items that count against ``max_concurrency``: those owed a result or a retry.
_ACTIVE = frozenset({ActivityStatus.SCHEDULED, ActivityStatus.STARTED, ActivityStatus.WAITING_RETRY})

#: What :func:`start` adds to ``_advance``'s list of deferred schedules: (position,
#: commands, history entry); sent only if nothing in the same decision fails the workflow.
Scheduled = list[tuple[int, list[Command], HistoryEntry]]


def item_id(map_id: str, index: int) -> str:
    """An item's id: the map's id and the item's index, ``fetch[3]``."""
    return f"{map_id}[{index}]"


@dataclass(frozen=True)
class Progress:
    """Where a running map's items are, as indexes into its items: every item before
    ``done`` has succeeded, none before ``next`` is pending, ``active`` are in flight or
    waiting for a retry. Kept in :attr:`WorkflowState.map_progress` from one event to
    the next (a retry resets nothing but pending items, and drops it)."""

    done: int
    next: int
    active: int


def start(
    state: WorkflowState,
    activities: list[ActivityState],
    position: int,
    now: datetime,
    scheduled: Scheduled,
) -> graph.Verdict:
    """The map at ``position`` is ready: list its items (or resume them) and schedule the
    first ones into ``scheduled``. ``activities`` (the decision's working list) gets the
    new items appended and the map's new status. Returns :data:`graph.WAIT` when
    handled, or a failing :class:`graph.Verdict` when ``over`` gave no usable list.
    (The caller stores no progress: the next item's end counts it once.)"""
    parent = activities[position]
    existing = state.items[position] if position < len(state.items) else ()
    if existing:
        count = len(existing)
        for p in existing:  # a resume (after a retry): what did not succeed runs again
            if activities[p].status in _RERUN:
                activities[p] = pending_again(activities[p])
    else:
        over = _evaluate(parent, graph.condition_context(state.input_data, activities))
        if isinstance(over, str):
            return graph.Verdict(fail=over)
        count = len(over)
        first = len(activities)
        activities.extend(_item(parent, first + index, index, value) for index, value in enumerate(over))
        existing = tuple(range(first, first + count))
    parent = replace(parent, status=ActivityStatus.RUNNING, scheduled_at=now, started_at=now, finished_at=None)
    activities[position] = parent
    data: dict[str, Any] = {"items": count}
    if parent.max_concurrency is not None:
        data["max_concurrency"] = parent.max_concurrency
    scheduled.append((position, [], HistoryEntry(HistoryType.START_MAP, position, data)))
    progress = _schedule_next(activities, parent, existing, _counted(activities, existing), now, scheduled)
    if progress.done == count:  # an empty list, or a resume whose items had all succeeded
        ended, entry = _succeeded(parent, [activities[p] for p in existing], now, state.payload_limit)
        if ended.status is ActivityStatus.FAILED:
            activities[position] = replace(parent, status=ActivityStatus.PENDING)
            return graph.Verdict(fail=ended.error)
        activities[position] = ended
        scheduled.append((position, [], entry))
    return graph.WAIT


def may_retry(state: WorkflowState, activity: ActivityState) -> bool:
    """Whether a failed attempt may be retried: not an item's once its map stopped
    running (it failed, or the workflow's retry reset it): its result is recorded, no
    new attempt is sent for it."""
    return activity.parent is None or state.activities[activity.parent].status is ActivityStatus.RUNNING


def item_ended(
    state: WorkflowState, item: ActivityState, now: datetime, commands: list[Command], history: list[HistoryEntry]
) -> tuple[WorkflowState, ActivityState | None]:
    """``item`` (already in ``state``) has ended: schedule the next one, or end its map.

    Returns the new state and the map when it has ended (its dependents are the
    caller's business), else None. Adds to ``commands`` and ``history``."""
    assert item.parent is not None
    parent = state.activities[item.parent]
    if parent.status is not ActivityStatus.RUNNING:
        # The map ended already (another item failed) or the workflow's retry reset it.
        history.append(HistoryEntry(HistoryType.DO_NOTHING, item.position, {"reason": f"map {parent.status}"}))
        return state, None
    activities = list(state.activities)
    positions = state.items[parent.position]
    progress: Progress | None = state.map_progress.get(parent.position)
    # The item was in flight (only an attempt in flight has a result that counts).
    progress = _counted(activities, positions) if progress is None else replace(progress, active=progress.active - 1)
    if item.status is ActivityStatus.FAILED:
        parent = _failed(activities, parent, item, positions, now, commands, history)
    else:
        scheduled: Scheduled = []
        progress = _schedule_next(activities, parent, positions, progress, now, scheduled, start=not state.paused)
        if progress.done == len(positions):
            items = [activities[p] for p in positions]
            activities[parent.position], entry = _succeeded(parent, items, now, state.payload_limit)
            parent = activities[parent.position]
            history.append(entry)
        for _, run, entry in scheduled:
            commands.extend(run)
            history.append(entry)
    kept = {p: v for p, v in state.map_progress.items() if p != parent.position}
    if not parent.status.ended:
        kept[parent.position] = progress
    state = replace(state, activities=tuple(activities), map_progress=kept)
    return state, parent if parent.status.ended else None


def resume(
    state: WorkflowState, now: datetime, history: list[HistoryEntry]
) -> tuple[WorkflowState, list[Command], list[ActivityState]]:
    """The workflow resumed: each running map schedules the items its pause held back (a
    map whose items all succeeded meanwhile ends). The commands owed, the maps ended."""
    running = [a for a in state.definition_activities if a.status is ActivityStatus.RUNNING]
    if not running:
        return state, [], []
    activities = list(state.activities)
    commands: list[Command] = []
    ended: list[ActivityState] = []
    kept = dict(state.map_progress)
    for parent in running:
        positions = state.items[parent.position]
        scheduled: Scheduled = []
        progress = _schedule_next(activities, parent, positions, _counted(activities, positions), now, scheduled)
        kept[parent.position] = progress
        if progress.done == len(positions):
            activities[parent.position], entry = _succeeded(
                parent, [activities[p] for p in positions], now, state.payload_limit
            )
            history.append(entry)
            del kept[parent.position]
            ended.append(activities[parent.position])
        for _, run, entry in scheduled:
            commands.extend(run)
            history.append(entry)
    return replace(state, activities=tuple(activities), map_progress=kept), commands, ended


def _counted(activities: list[ActivityState], positions: tuple[int, ...]) -> Progress:
    """A map's progress counted from its items (after a load or a retry): O(items), once."""
    statuses = [activities[p].status for p in positions]
    done = next((i for i, s in enumerate(statuses) if s is not ActivityStatus.SUCCEEDED), len(statuses))
    pending = next((i for i, s in enumerate(statuses) if s is ActivityStatus.PENDING), len(statuses))
    return Progress(done, pending, sum(1 for s in statuses if s in _ACTIVE))


def _schedule_next(
    activities: list[ActivityState],
    parent: ActivityState,
    positions: tuple[int, ...],
    progress: Progress,
    now: datetime,
    out: Scheduled,
    *,
    start: bool = True,
) -> Progress:
    """Schedule pending items, in list order, while slots are free (none while the
    workflow is paused: ``start`` False); the new progress."""
    free = len(positions) if parent.max_concurrency is None else parent.max_concurrency - progress.active
    free = free if start else 0
    active, index = progress.active, progress.next
    while index < len(positions) and free > 0:
        p = positions[index]
        if activities[p].status is ActivityStatus.PENDING:
            activities[p], run, entry = schedule(activities[p], now)
            out.append((p, run, entry))
            free -= 1
            active += 1
        index += 1
    done = progress.done
    while done < len(positions) and activities[positions[done]].status is ActivityStatus.SUCCEEDED:
        done += 1
    return Progress(done, index, active)


def _succeeded(
    parent: ActivityState, items: list[ActivityState], now: datetime, limit: int | None
) -> tuple[ActivityState, HistoryEntry]:
    """Every item succeeded: the map succeeds with their outputs, unless together they
    are over the payload limit (each was under it), as any output over it fails."""
    output = [a.output for a in items]
    size = len(json.dumps(output)) if limit is not None else 0
    if limit is not None and size > limit:
        error = f"its items' outputs add up to {size} bytes of JSON, over the limit of {limit} (FLOW_MAX_PAYLOAD_BYTES)"
        parent = replace(parent, status=ActivityStatus.FAILED, error=error, finished_at=now)
        return parent, HistoryEntry(HistoryType.END_MAP, parent.position, {"outcome": "failed", "error": error})
    parent = replace(parent, status=ActivityStatus.SUCCEEDED, output=output, error=None, finished_at=now)
    return parent, HistoryEntry(HistoryType.END_MAP, parent.position, {"outcome": "succeeded", "items": len(items)})


def _failed(
    activities: list[ActivityState],
    parent: ActivityState,
    item: ActivityState,
    positions: tuple[int, ...],
    now: datetime,
    commands: list[Command],
    history: list[HistoryEntry],
) -> ActivityState:
    """``item`` failed permanently: the map fails; items not yet run are skipped."""
    reason = f"item {item.index} of the map failed"
    for p in positions:
        a = activities[p]
        if a.status is ActivityStatus.WAITING_RETRY:
            commands.append(CancelTimer(TimerKind.RETRY, p, a.attempt + 1))
        if a.status in (ActivityStatus.PENDING, ActivityStatus.WAITING_RETRY):
            activities[p] = replace(a, status=ActivityStatus.SKIPPED, skip_reason=reason, finished_at=now)
    why = cause(item.error) or "no error given"
    parent = replace(parent, status=ActivityStatus.FAILED, error=f"item {item.index} failed: {why}", finished_at=now)
    activities[parent.position] = parent
    history.append(HistoryEntry(HistoryType.END_MAP, parent.position, {"outcome": "failed", "item": item.index}))
    return parent


def _item(parent: ActivityState, position: int, index: int, value: Any) -> ActivityState:
    return ActivityState(
        position=position,
        name=parent.name,
        independent=False,
        # The map's failure, not the item's, is what ``required`` is about.
        required=False,
        config=parent.config,
        retry=parent.retry,
        timeouts=parent.timeouts,
        id=item_id(parent.id, index),
        parent=parent.position,
        index=index,
        item=value,
    )


def _evaluate(parent: ActivityState, context: Mapping[str, Any]) -> list[Any] | str:
    """The list ``over`` gives, or why there is none (the map then fails before it runs)."""
    assert parent.map_over is not None
    expression = parent.map_over
    try:
        value = graph.evaluate(expression, context)
    except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
        return graph.storable(f"map.over {expression!r} could not be evaluated: {type(e).__name__}: {e}")
    if not isinstance(value, list):
        return graph.storable(f"map.over {expression!r} gave {graph.quoted(value)}, not a list")
    if len(value) > MAX_ITEMS:
        return f"map.over {expression!r} gave {len(value)} items; a map may have at most {MAX_ITEMS}"
    try:
        # Items are stored, sent and shown: the checks every door makes (no NaN or
        # infinity, no NUL or lone surrogate, bounded nesting).
        strict_json.check(value, path="items")
    except InvalidJson as e:
        return graph.storable(f"map.over {expression!r} gave an item that is not JSON every client reads: {e}")
    return value
