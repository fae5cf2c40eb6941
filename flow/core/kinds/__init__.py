"""The kinds of step, and the one table everything dispatches through.

A definition's ``activities`` are steps of several kinds; each kind is a type (its
:class:`~flow.core.state.StepSpec`) with its rules in one module
(docs/design.md, "Step kinds"):

=============  ==================================================  =====================
kind           what the definition says                            module
=============  ==================================================  =====================
``activity``   ``name``: a ``BaseActivity`` class, run by workers   :mod:`.activity`
``map``        ``name`` and ``map``: that class once per item       :mod:`.map`
``item``       (an item of a map, appended when the map starts)     :mod:`.item`
``sleep``      ``sleep_s`` or ``sleep_until``                       :mod:`.sleep`
``wait``       ``wait_for``: a signal                               :mod:`.wait`
``child``      ``workflow``: a child workflow                       :mod:`.child`
``compensation`` (an undo, appended when the run fails)            :mod:`.compensation`
``on_failure`` (the failure handler, appended after the undos)     :mod:`.on_failure`
=============  ==================================================  =====================

Adding a kind is a module with its :class:`StepKind` and a line in :data:`KINDS`; the
definition's schema, the storage of specs, ``decide``, recovery, the API's views and
the CLI's lines find it here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from flow.core.commands import CancelTimer, Command
from flow.core.kinds.activity import ACTIVITY_KIND
from flow.core.kinds.base import Change, DueTimer, Owed, PathOf, StepKind, Tokens, Turn
from flow.core.kinds.child import CHILD
from flow.core.kinds.compensation import COMPENSATION
from flow.core.kinds.item import ITEM
from flow.core.kinds.map import MAP
from flow.core.kinds.on_failure import ON_FAILURE
from flow.core.kinds.sleep import SLEEP
from flow.core.kinds.wait import WAIT
from flow.core.state import ACTIVITY, ActivityState, StepSpec, WorkflowState
from flow.core.steps import HistoryEntry
from flow.core.vocabulary import HistoryType, TimerKind

#: Every kind, by name, in the order the definition's problems name them.
KINDS: Mapping[str, StepKind] = {
    kind.name: kind for kind in (ACTIVITY_KIND, MAP, ITEM, CHILD, SLEEP, WAIT, COMPENSATION, ON_FAILURE)
}

_HELPS = [kind.help for kind in KINDS.values() if kind.help]
#: "a step is an activity (...), ... or a wait for a signal (...)": what an entry of no kind is told.
HELP = "a step is " + ", ".join(_HELPS[:-1]) + " or " + _HELPS[-1]
#: Every key of the API's activity view that a kind fills.
VIEW_KEYS = tuple(dict.fromkeys(key for kind in KINDS.values() for key in kind.view_schema))


def kind_of(step: ActivityState) -> StepKind:
    """The kind of ``step``."""
    return KINDS[step.spec.kind]


def named(name: Any) -> StepKind | None:
    """The kind called ``name`` (an activity view's ``kind``), if there is one."""
    return KINDS.get(name) if isinstance(name, str) else None


# -- the definition --------------------------------------------------------------------------


def properties() -> dict[str, Any]:
    """The JSON Schema of every kind's own keys of a definition entry."""
    return {key: schema for kind in KINDS.values() for key, schema in kind.properties.items()}


def dependent_required() -> dict[str, list[str]]:
    return {key: needs for kind in KINDS.values() for key, needs in kind.dependent_required.items()}


def of_entry(entry: Mapping[str, Any]) -> StepKind:
    """The kind of a definition entry that has exactly one kind (see :func:`problems`)."""
    return next(kind for kind in KINDS.values() if kind.claims(entry))


def problems(entry: Mapping[str, Any], path: PathOf, known_activities: Collection[str]) -> list[tuple[str, str]]:
    """What is wrong with a definition entry (valid against the schema) as a step: no kind
    or two, another kind's keys, and what its kind finds wrong with it."""
    present = [key for kind in KINDS.values() for key in kind.identity if key in entry]
    if len(present) != 1:
        what = " and ".join(present) + " cannot be used together" if present else "needs a name"
        return [(path(), f"{what}: {HELP}")]
    kind = of_entry(entry)
    found = [
        (path(key), message)
        for other in KINDS.values()
        if other is not kind
        for key, message in other.foreign.items()
        if key in entry
    ]
    if "queue" in entry and not kind.takes_queue:
        found.append((path("queue"), f"queue names the worker pool of an activity or a map; {kind.help} runs on none"))
    return found + kind.problems(entry, path, known_activities)


def default_name(entry: Mapping[str, Any]) -> str:
    """An entry's ``name``: its class, its child's definition, or its kind's name (for an
    entry of no kind, which :func:`problems` refuses, the first kind's that claims it)."""
    kind = next((kind for kind in KINDS.values() if kind.claims(entry)), None)
    return kind.default_name(entry) if kind is not None else str(entry.get("name", "step"))


# -- storage -----------------------------------------------------------------------------------


def spec_to_json(spec: StepSpec) -> dict[str, Any]:
    """A spec as the keys of an activity row's ``graph`` column."""
    return KINDS[spec.kind].to_json(spec)


def spec_from_json(graph: Mapping[str, Any] | None) -> StepSpec:
    """The spec a ``graph`` column holds (a plain activity's, which has no keys, when it
    holds none of another kind)."""
    for kind in KINDS.values():
        spec = kind.from_json(graph or {})
        if spec is not None:
            return spec
    return ACTIVITY


# -- decide ------------------------------------------------------------------------------------


def end_of_run_timers(state: WorkflowState) -> list[Command]:
    """What the run's end makes pointless: its timeout and each step's timers (retries
    that will not run, sleeps, the timeouts of waits)."""
    commands = [c for a in state.activities for c in kind_of(a).end_of_run(a)]
    if state.queued:  # a grant of the workflow's limit not yet handled holds a slot
        commands.append(CancelTimer(TimerKind.SLOT, None, state.run))
    if state.timeouts.workflow_s:
        commands.append(CancelTimer(TimerKind.WORKFLOW, None, state.run))
    return commands


def stop_running(state: WorkflowState) -> list[Command]:
    """What the run's end (failed or cancelled) tells what still runs: each attempt in
    flight a cancel notice, each child in flight its cancel (Temporal's default
    parent-close policy). Sent at once, not at an attempt's next heartbeat."""
    return [c for a in state.activities for c in kind_of(a).on_cancel(a)]


def on_resume(
    state: WorkflowState, now: datetime, history: list[HistoryEntry]
) -> tuple[WorkflowState, list[Command], list[ActivityState]]:
    """The workflow resumed after a pause: what each kind starts now, and the steps that ended."""
    commands: list[Command] = []
    ended: list[ActivityState] = []
    for kind in KINDS.values():
        state, started, finished = kind.on_resume(state, now, history)
        commands += started
        ended += finished
    return state, commands, ended


# -- views -------------------------------------------------------------------------------------


def view(state: WorkflowState, step: ActivityState, tokens: Tokens | None = None) -> dict[str, Any]:
    """The kind's part of a step's API view: its ``kind``, and every kind's keys (null
    but its own), so that a client reads a step's kind rather than infers it."""
    kind = kind_of(step)
    return {"kind": kind.name, **dict.fromkeys(VIEW_KEYS), **kind.view(state, step, tokens)}


def kind_view_schemas() -> dict[str, Any]:
    """The JSON Schemas of every kind's keys of the API's activity view."""
    return {key: schema for kind in KINDS.values() for key, schema in kind.view_schema.items()}


def line(kind: str, data: Mapping[str, Any], step: Mapping[str, Any] | None, workflow: Mapping[str, Any]) -> str | None:
    """What a history entry of type ``kind`` says in ``flow run``, as its step's kind (or,
    for an entry about no step, any kind) words it; None: no kind has a line for it."""
    own = named(step.get("kind")) if step else None
    if own is not None and step is not None:
        said = own.line(kind, data, step, workflow)
        if said is not None and kind == HistoryType.SCHEDULE_ACTIVITY and step.get("queue"):
            return f"{said} on pool {step['queue']}"  # the pool is common to kinds: every attempt goes there
        return said
    if kind not in HistoryType.__members__.values():
        return None
    for candidate in KINDS.values():
        found = candidate.lines.get(HistoryType(kind))  # type: ignore[call-arg]  # a lookup by value: no __new__
        if found is not None:
            return found(data)
    return None


def timer_line(timer: Any) -> str | None:
    """What a timer of kind ``timer`` firing says, when a step kind words it."""
    for kind in KINDS.values():
        found = kind.timer_lines.get(timer)
        if found is not None:
            return found
    return None


__all__ = [
    "HELP",
    "KINDS",
    "VIEW_KEYS",
    "Change",
    "DueTimer",
    "Owed",
    "StepKind",
    "Turn",
    "default_name",
    "dependent_required",
    "end_of_run_timers",
    "kind_view_schemas",
    "kind_of",
    "line",
    "named",
    "of_entry",
    "on_resume",
    "problems",
    "properties",
    "spec_from_json",
    "spec_to_json",
    "stop_running",
    "timer_line",
    "view",
]
