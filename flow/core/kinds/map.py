"""``map``: one activity run once per item of a list an expression gives, and its items.

When a map's turn comes, its ``over`` expression (JMESPath, over the same context as
``when``) gives the list. Each item becomes a step of its own (kind ``item``,
:mod:`flow.core.kinds.item`), appended after the definition's steps (its :class:`Item`
spec: the map's position, the item's index and value), so an item has its own attempts
and retry budget and reuses, as they are, the attempt rules of
:mod:`flow.core.kinds.activity`: messages, timers, stale-result checks and recovery.
The map itself is ``Running`` meanwhile: it owes no message.

- At most ``max_concurrency`` items are in flight (scheduled, started, or waiting for
  a retry); the next pending item, in list order, is scheduled as one ends.
- Every item succeeded: the map succeeds, its output the list of the items' outputs
  in order. An empty list succeeds at once with ``[]``.
- An item failed permanently: the map fails, naming the item; items not yet run are
  skipped, items in flight run to their end and their results are recorded. Whether
  the map's failure fails the workflow is its ``required``'s business.
- A retry-from-failure resumes the items of the failed map: the ones that succeeded
  are not run again, and ``over`` is not evaluated again.
- Paused, a map starts no item; resumed, it schedules what the pause held back.

Pure: no I/O, no clock (docs/design.md, "Graphs").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from flow.core import expressions, graph, strict_json
from flow.core.commands import Command
from flow.core.failure import cause
from flow.core.frozen import replace
from flow.core.kinds.activity import ACTIVITY_KIND, class_problems
from flow.core.kinds.base import Line, PathOf, StepKind, Tokens, Turn
from flow.core.kinds.claims import claims
from flow.core.state import ActivityState, StepSpec, WorkflowState
from flow.core.steps import HistoryEntry, pending_again
from flow.core.vocabulary import ActivityStatus, HistoryType
from flow.errors import InvalidJson

#: Most items one map may have; a longer list fails the map before any item runs.
#: Each item is a row (and a message per attempt): 10,000 keeps a workflow's state in
#: the engine's memory, and its load after a restart, within a few megabytes.
MAX_ITEMS = 10_000
#: Most bytes of JSON a map's items may hold together: as many as one evaluation may
#: build. Items can share what they hold (``[input.big, input.big]`` builds two
#: pointers), but each is stored, sent and loaded in full, so their count alone does
#: not bound them.
MAX_ITEMS_BYTES = expressions.MAX_EVALUATION_BYTES

#: What a resume runs again: items that did not succeed and owe nothing.
_RERUN = frozenset({ActivityStatus.FAILED, ActivityStatus.SKIPPED, ActivityStatus.CANCELLED})
#: Items that count against ``max_concurrency``: those owed a result or a retry.
_ACTIVE = frozenset(
    {ActivityStatus.QUEUED, ActivityStatus.SCHEDULED, ActivityStatus.STARTED, ActivityStatus.WAITING_RETRY}
)


@dataclass(frozen=True)
class Map(StepSpec):
    """``map``: the JMESPath expression giving the items, and how many may run at once
    (None: all)."""

    kind: ClassVar[str] = "map"
    over: str
    max_concurrency: int | None = None


@dataclass(frozen=True)
class Item(StepSpec):
    """An item of a map: the map's position, the item's index in its list, the item."""

    kind: ClassVar[str] = "item"
    map: int
    index: int
    item: Any = None

    @property
    def parent(self) -> int | None:
        return self.map


@dataclass(frozen=True)
class Progress:
    """Where a running map's items are, as indexes into its items: every item before
    ``done`` has succeeded, none before ``next`` is pending, ``active`` are in flight or
    waiting for a retry. Kept in :attr:`WorkflowState.map_progress` from one event to
    the next (a retry resets nothing but pending items, and drops it)."""

    done: int
    next: int
    active: int


def _map_line(data: Mapping[str, Any]) -> str:
    items = data.get("items")
    at_a_time = f", {data['max_concurrency']} at a time" if data.get("max_concurrency") else ""
    return f"map over {items} item{'s' * (items != 1)}{at_a_time}"


def _end_line(data: Mapping[str, Any]) -> str:
    how = f": item {data['item']} failed" if data.get("item") is not None else f" ({data.get('items')} items)"
    return f"map {data.get('outcome')}{how}"


class MapKind(StepKind):
    """A ``map`` (see the module docstring)."""

    name: ClassVar[str] = "map"
    queues: ClassVar[bool] = True  # its items wait for the limit
    properties: ClassVar[Mapping[str, Any]] = {
        "map": {
            "type": "object",
            "required": ["over"],
            "additionalProperties": False,
            "properties": {
                "over": {"type": "string", "minLength": 1, "maxLength": graph.MAX_EXPRESSION_CHARS},
                "max_concurrency": {"type": "integer", "minimum": 1, "maximum": MAX_ITEMS},
            },
        }
    }
    foreign: ClassVar[Mapping[str, str]] = {"map": "map runs an activity: it needs a name"}
    has_attempts: ClassVar[bool] = False
    takes_queue: ClassVar[bool] = True  # its items' attempts go to its pool
    view_schema: ClassVar[Mapping[str, Any]] = {
        "map": {
            "type": ["object", "null"],
            "description": "A map: the expression giving its items and how many run at once.",
            "properties": {"over": {"type": "string"}, "max_concurrency": {"type": ["integer", "null"]}},
        },
        "items": {
            "type": ["object", "null"],
            "description": "A map's items by status (the items are steps of their own, of kind item, after the "
            "definition's, with parent set).",
            "additionalProperties": {"type": "integer"},
        },
    }
    lines: ClassVar[Mapping[HistoryType, Line]] = {HistoryType.START_MAP: _map_line, HistoryType.END_MAP: _end_line}

    def claims(self, entry: Mapping[str, Any]) -> bool:
        return "name" in entry and "map" in entry

    def problems(
        self, entry: Mapping[str, Any], path: PathOf, known_activities: Collection[str]
    ) -> list[tuple[str, str]]:
        found = graph.expression_problems(entry["map"]["over"], path("map", "over"))
        return found + class_problems(entry, path, known_activities)

    def parse(self, entry: Mapping[str, Any]) -> StepSpec:
        return Map(entry["map"]["over"], entry["map"].get("max_concurrency"))

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        assert isinstance(spec, Map)
        return {"map": {"over": spec.over, "max_concurrency": spec.max_concurrency}}

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        found = graph.get("map")
        return Map(found["over"], found.get("max_concurrency")) if found else None

    def diverges(self, step: ActivityState, now: ActivityState) -> list[tuple[str, str]]:
        """A map that listed its items lists them from the same ``over``."""
        old, new = _map(step).over, _map(now).over
        why = f"map {step.id} listed its items from {old!r}, and now from {new!r}"
        return [] if new == old else [("map-source", why)]

    # -- decide ----------------------------------------------------------------------------

    def start(self, turn: Turn, position: int) -> graph.Verdict:
        """The map is ready: list its items (or resume them) and schedule the first ones.
        (Nothing stores its progress: the next item's end counts it once.)"""
        state, activities, now = turn.state, turn.activities, turn.now
        parent = activities[position]
        spec = _map(parent)
        existing = state.items[position] if position < len(state.items) else ()
        if existing:
            count = len(existing)
            for p in existing:  # a resume (after a retry): what did not succeed runs again
                if activities[p].status in _RERUN:
                    activities[p] = pending_again(activities[p])
        else:
            over = _evaluate(spec.over, graph.condition_context(state.input_data, activities))
            if isinstance(over, str):
                return graph.Verdict(fail=over)
            count = len(over)
            first = len(activities)
            items = [_item(parent, first + index, index, value) for index, value in enumerate(over)]
            if parent.limit is not None:
                claimed = claims(state, activities, items)
                if isinstance(claimed, str):
                    return graph.Verdict(fail=claimed)
                items = claimed
            activities.extend(items)
            existing = tuple(range(first, first + count))
        parent = replace(parent, status=ActivityStatus.RUNNING, scheduled_at=now, started_at=now, finished_at=None)
        activities[position] = parent
        data: dict[str, Any] = {"items": count}
        if spec.max_concurrency is not None:
            data["max_concurrency"] = spec.max_concurrency
        turn.scheduled.append((position, [], HistoryEntry(HistoryType.START_MAP, position, data)))
        progress = _schedule_next(activities, parent, existing, _counted(activities, existing), now, turn.scheduled)
        if progress.done == count:  # an empty list, or a resume whose items had all succeeded
            ended, entry = _succeeded(parent, [activities[p] for p in existing], now, state.payload_limit)
            if ended.status is ActivityStatus.FAILED:
                activities[position] = replace(parent, status=ActivityStatus.PENDING)
                return graph.Verdict(fail=ended.error)
            activities[position] = ended
            turn.scheduled.append((position, [], entry))
        return graph.WAIT

    def on_resume(
        self, state: WorkflowState, now: datetime, history: list[HistoryEntry]
    ) -> tuple[WorkflowState, list[Command], list[ActivityState]]:
        """The workflow resumed: each running map schedules the items its pause held back (a
        map whose items all succeeded meanwhile ends)."""
        running = [
            a for a in state.definition_activities if a.status is ActivityStatus.RUNNING and isinstance(a.spec, Map)
        ]
        if not running:
            return state, [], []
        activities = list(state.activities)
        commands: list[Command] = []
        ended: list[ActivityState] = []
        kept = dict(state.map_progress)
        for parent in running:
            positions = state.items[parent.position]
            progress = _counted(activities, positions)
            parent, kept[parent.position] = _go_on(state, activities, parent, progress, now, commands, history)
            if parent.status.ended:
                del kept[parent.position]
                ended.append(parent)
        return replace(state, activities=tuple(activities), map_progress=kept), commands, ended

    def view(self, state: WorkflowState, step: ActivityState, tokens: Tokens | None) -> dict[str, Any]:
        spec = _map(step)
        items = state.items[step.position] if step.position < len(state.items) else ()
        return {
            "map": {"over": spec.over, "max_concurrency": spec.max_concurrency},
            "items": dict(Counter(state.activities[p].status.value for p in items)),
        }

    def note(self, view: Mapping[str, Any]) -> str:
        """A map's items by status: ``1000 items: 998 Succeeded, 2 Failed``."""
        items = view.get("items") or {}
        counts = ", ".join(f"{n} {status}" for status, n in sorted(items.items(), key=lambda kv: -kv[1]))
        total = sum(items.values())
        return f"{total} item{'s' * (total != 1)}" + (f": {counts}" if counts else "")


def item_ended(
    state: WorkflowState, step: ActivityState, now: datetime, commands: list[Command], history: list[HistoryEntry]
) -> tuple[WorkflowState, ActivityState | None]:
    """An item (in ``state``) has ended: schedule the next one, or end its map (then the
    step whose end the workflow goes on from; None while the map goes on)."""
    assert step.parent is not None
    parent = state.activities[step.parent]
    if parent.status is not ActivityStatus.RUNNING:
        # The map ended already (another item failed) or the workflow's retry reset it.
        history.append(HistoryEntry(HistoryType.DO_NOTHING, step.position, {"reason": f"map {parent.status}"}))
        return state, None
    activities = list(state.activities)
    progress: Progress | None = state.map_progress.get(parent.position)
    # The item was in flight (only an attempt in flight has a result that counts).
    positions = state.items[parent.position]
    progress = _counted(activities, positions) if progress is None else replace(progress, active=progress.active - 1)
    if step.status is ActivityStatus.FAILED:
        parent = _failed(activities, parent, step, positions, now, commands, history)
    else:
        parent, progress = _go_on(state, activities, parent, progress, now, commands, history)
    kept = {p: v for p, v in state.map_progress.items() if p != parent.position}
    if not parent.status.ended:
        kept[parent.position] = progress
    state = replace(state, activities=tuple(activities), map_progress=kept)
    return state, parent if parent.status.ended else None


def _map(step: ActivityState) -> Map:
    assert isinstance(step.spec, Map)
    return step.spec


def _counted(activities: list[ActivityState], positions: tuple[int, ...]) -> Progress:
    """A map's progress counted from its items (after a load or a retry): O(items), once."""
    statuses = [activities[p].status for p in positions]
    done = next((i for i, s in enumerate(statuses) if s is not ActivityStatus.SUCCEEDED), len(statuses))
    pending = next((i for i, s in enumerate(statuses) if s is ActivityStatus.PENDING), len(statuses))
    return Progress(done, pending, sum(1 for s in statuses if s in _ACTIVE))


def _go_on(
    state: WorkflowState,
    activities: list[ActivityState],
    parent: ActivityState,
    progress: Progress,
    now: datetime,
    commands: list[Command],
    history: list[HistoryEntry],
) -> tuple[ActivityState, Progress]:
    """Schedule the map's next items while slots are free (none while the workflow is
    paused), and end it when every item succeeded: the map and its progress."""
    scheduled: list[tuple[int, list[Command], HistoryEntry]] = []
    positions = state.items[parent.position]
    progress = _schedule_next(activities, parent, positions, progress, now, scheduled, start=not state.paused)
    if progress.done == len(positions):
        parent, entry = _succeeded(parent, [activities[p] for p in positions], now, state.payload_limit)
        activities[parent.position] = parent
        history.append(entry)
    for _, run, entry in scheduled:
        commands.extend(run)
        history.append(entry)
    return parent, progress


def _schedule_next(
    activities: list[ActivityState],
    parent: ActivityState,
    positions: tuple[int, ...],
    progress: Progress,
    now: datetime,
    out: list[tuple[int, list[Command], HistoryEntry]],
    *,
    start: bool = True,
) -> Progress:
    """Schedule pending items, in list order, while slots are free (none while the
    workflow is paused: ``start`` False); the new progress."""
    limit = _map(parent).max_concurrency
    free = (len(positions) if limit is None else limit - progress.active) if start else 0
    active, index = progress.active, progress.next
    while index < len(positions) and free > 0:
        p = positions[index]
        if activities[p].status is ActivityStatus.PENDING:
            activities[p], run, entry = ACTIVITY_KIND.again(activities[p], now)  # an item's attempt
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
    index = item.spec.index if isinstance(item.spec, Item) else None
    reason = f"item {index} of the map failed"
    for p in positions:
        a = activities[p]
        commands.extend(ACTIVITY_KIND.end_of_run(a))  # a retry timer, a slot not yet taken
        if a.status in (ActivityStatus.PENDING, ActivityStatus.QUEUED, ActivityStatus.WAITING_RETRY):
            activities[p] = replace(a, status=ActivityStatus.SKIPPED, skip_reason=reason, finished_at=now)
    why = cause(item.error) or "no error given"
    parent = replace(parent, status=ActivityStatus.FAILED, error=f"item {index} failed: {why}", finished_at=now)
    activities[parent.position] = parent
    history.append(HistoryEntry(HistoryType.END_MAP, parent.position, {"outcome": "failed", "item": index}))
    return parent


def _item(parent: ActivityState, position: int, index: int, value: Any) -> ActivityState:
    return ActivityState(
        position=position,
        name=parent.name,
        independent=False,
        required=False,  # the map's failure, not the item's, is what ``required`` is about
        config=parent.config,
        retry=parent.retry,
        timeouts=parent.timeouts,
        queue=parent.queue,
        id=f"{parent.id}[{index}]",  # the map's id and the item's index: fetch[3]
        spec=Item(parent.position, index, value),
        limit=parent.limit,
    )


def _evaluate(expression: str, context: Mapping[str, Any]) -> list[Any] | str:
    """The list ``over`` gives, or why there is none (the map then fails before it runs)."""
    try:
        value = graph.evaluate(expression, context)
    except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
        return graph.unevaluable("map.over", expression, e)
    if not isinstance(value, list):
        return graph.storable(f"map.over {expression!r} gave {graph.quoted(value)}, not a list")
    if len(value) > MAX_ITEMS:
        return f"map.over {expression!r} gave {len(value)} items; a map may have at most {MAX_ITEMS}"
    try:
        # Stored, sent and shown: every door's checks (no NaN, infinity, NUL or lone surrogate; bounded nesting).
        strict_json.check(value, path="items")
    except InvalidJson as e:
        return graph.storable(f"map.over {expression!r} gave an item that is not JSON every client reads: {e}")
    if _too_large(value):
        return (
            f"map.over {graph.shown(expression)} gave items of more than {MAX_ITEMS_BYTES:,} bytes of JSON"
            f" together; a map's items may hold at most {MAX_ITEMS_BYTES:,}"
        )
    return value


def _too_large(items: list[Any]) -> bool:
    """Whether ``items`` take more than :data:`MAX_ITEMS_BYTES` as JSON (counted as it is
    encoded, and stopped there: never the whole text of a list that is too large)."""
    size = 0
    for chunk in json.JSONEncoder(separators=(",", ":")).iterencode(items):
        size += len(chunk)  # ASCII (ensure_ascii): at least the bytes stored
        if size > MAX_ITEMS_BYTES:
            return True
    return False


MAP = MapKind()

__all__ = ["MAP", "MAX_ITEMS", "MAX_ITEMS_BYTES", "Item", "Map", "MapKind", "Progress", "item_ended"]
