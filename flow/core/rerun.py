"""Rerun from a chosen step: which steps a rerun from step X resets, and the workflow as
the rerun leaves it before ``decide`` starts its new run. Pure.

A rerun is a retry-from-failure (what the run's end left undone runs again) that also
resets X and everything that depends on X, by the graph rules (docs/design.md, "Rerun
from a step"):

- a step with ``depends_on`` depends on the steps it names;
- a step on the positional rule that is not ``independent`` depends on every step listed
  before it;
- a map's items belong to their map (reset with it; a rerun from an item resets its map,
  whose output is its items' outputs);
- a child step is a step like any other; its reset runs its child workflow again, every
  step of it (:meth:`~flow.core.kinds.base.StepKind.reset`).

"Depends" is followed transitively. Every other step keeps its outcome and its output.

A rerun may also move the workflow to another version of its definition (:func:`rebuilt`
with the version's ``steps``): only when that version takes over what the rerun keeps
of the history (:func:`divergences`, by :mod:`flow.core.replay`'s rules).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from flow.core import replay, saga
from flow.core.events import RerunRequested
from flow.core.frozen import replace
from flow.core.kinds import kind_of
from flow.core.state import ActivityState, WorkflowState
from flow.core.vocabulary import ActivityStatus, WorkflowStatus

#: The ``skip_reason`` of the steps a workflow's failure skipped (they never had their turn).
SKIPPED_BY_FAILURE = "the workflow failed"
#: The ``from_step`` of a parent's rerun of its child: every step of the child runs again.
EVERY_STEP = "*"
#: The statuses a workflow may be rerun from.
RERUNNABLE = (WorkflowStatus.FAILED, WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)


def position_of(state: WorkflowState, step_id: str) -> int | None:
    """The position of the step (or map item) with id ``step_id``; None: no such step."""
    return next((a.position for a in state.activities if a.id == step_id), None)


def refusal(state: WorkflowState, *, run: int | None = None) -> str | None:
    """Why ``state`` cannot be rerun now (None: it can). Only an ended workflow can;
    a child only through its parent (``run``: the run its parent's attempt asks for),
    whose attempts its runs answer."""
    if run is not None and run <= state.run:
        return f"run {run} was started already"
    if state.status not in RERUNNABLE:
        return f"workflow {state.id} is {state.status}; only a Failed, Finished or Cancelled workflow can be rerun"
    if state.parent is not None and run is None:
        return f"workflow {state.id} is a child of {state.parent.workflow_id}: rerun its parent from the child's step"
    return None


def downstream(state: WorkflowState, position: int) -> frozenset[int]:
    """The positions a rerun from ``position`` resets: that step and every step that
    depends on it (module docstring), with the items of every map among them. O(steps +
    dependencies): the positional rule is walked once, from the lowest position reached."""
    start = state.activities[position]
    first = start.parent if start.parent is not None else position
    reset = {position, first}
    work = deque([first])
    lowest = state.size  # every positional step after this one is reset already
    while work:
        p = work.popleft()
        found = list(state.dependents[p])
        if p < lowest and p < state.size:
            found += [q for q in range(p + 1, lowest) if _positional(state.activities[q])]
            lowest = p
        for q in found:
            if q not in reset:
                reset.add(q)
                work.append(q)
    for p in list(reset):
        if p < len(state.items):
            reset.update(state.items[p])
    return frozenset(reset)


def reset(state: WorkflowState, positions: frozenset[int]) -> tuple[ActivityState, ...]:
    """The steps as the rerun leaves them: those in ``positions`` pending again (their
    outcome and output dropped, as their kind resets them); of the others, what the run's end left undone treated
    as a retry-from-failure treats it; every other step as it was."""
    return tuple(
        kind_of(a).reset(a) if a.position in positions else _as_retried(a) if _left_undone(a) else a
        for a in state.activities
    )


def restarted(state: WorkflowState, event: RerunRequested) -> tuple[WorkflowState, dict[str, Any]] | str:
    """The workflow as the rerun ``event`` leaves it, before its new run starts, with what
    the history says of it; or why the rerun cannot apply (nothing changes then)."""
    every = event.from_step == EVERY_STEP and state.size > 0
    position = 0 if every else position_of(state, event.from_step)
    reason = refusal(state, run=event.run) or (f"no step {event.from_step!r}" if position is None else None)
    if reason is not None or position is None:
        return reason or ""
    if event.steps is not None:
        verdict = divergences(state, position, event.steps)
        if not verdict.compatible:
            why = "; ".join(d.reason for d in verdict.divergences)
            return f"version {event.version} cannot take over what the rerun keeps: {why}"
    positions = frozenset(range(len(state.activities))) if every else downstream(state, position)
    if (undone := saga.rerun_refusal(state, positions)) is not None:
        return undone
    done: dict[str, Any] = {"from": event.from_step, "reset": described(state, positions)}
    if event.version is not None:
        done["version"] = event.version
    if event.input_data is not None:
        done["input_changed"] = True
    rerun = replace(
        state,
        activities=rebuilt(state, positions, event.steps),
        definition_version=event.version or state.definition_version,
        config=state.config if event.config is None else event.config,
        input_data=state.input_data if event.input_data is None else event.input_data,
        dependents=(),  # derived again: the steps (and the maps' items) were laid out afresh
        items=(),
    )
    return rerun, done


def divergences(state: WorkflowState, position: int, steps: Sequence[ActivityState]) -> replay.Verdict:
    """Whether the definition of ``steps`` takes over what a rerun from ``position`` keeps.
    A step still in flight must also keep its position: its attempt's result names it so."""
    kept = replace(state, activities=reset(state, downstream(state, position)))
    verdict = replay.check(kept, steps)
    moved = [
        replay.Divergence(a.id, "order", f"{a.id} is still running at position {a.position}, which the version moves")
        for a in kept.definition_activities
        if a.status.in_flight and (a.position >= len(steps) or steps[a.position].id != a.id)
    ]
    return replace(verdict, divergences=verdict.divergences + tuple(moved))


def rebuilt(
    state: WorkflowState, positions: frozenset[int], steps: Sequence[ActivityState] | None = None
) -> tuple[ActivityState, ...]:
    """Every step as the rerun leaves it (:func:`reset`), laid out afresh: the steps of the
    definition (``steps``, a new version's, each keeping the outcome of the step of its id;
    None: the workflow's own), then the items of the maps that keep their outcome. A reset
    map's items are dropped: its start lists them again, from the outputs of this run."""
    kept = reset(state, positions)
    own = kept[: state.size]
    by_id = {a.id: a for a in own}
    definition = own if steps is None else tuple(_carried(s, by_id.get(s.id)) for s in steps)
    activities = list(definition)
    for step in definition:
        before = by_id.get(step.id)
        if before is None or before.position in positions or before.position >= len(state.items):
            continue
        for p in state.items[before.position]:
            item = kind_of(kept[p]).moved(kept[p], step.position)
            activities.append(replace(item, position=len(activities)))
    return tuple(activities)


#: What a step of a new version takes from the step of its id that it replaces: the
#: outcome so far and the attempt numbers (a late result of an old attempt stays stale).
_CARRIED = (
    "status",
    "attempt",
    "attempts_before",
    "output",
    "error",
    "scheduled_at",
    "started_at",
    "finished_at",
    "skip_reason",
    "heartbeat",
    "heartbeat_at",
    "claim",
)


def _carried(step: ActivityState, before: ActivityState | None) -> ActivityState:
    """A new version's ``step`` with what it takes from the step it replaces (:data:`_CARRIED`)."""
    if before is None:
        return step
    return replace(step, **{name: getattr(before, name) for name in _CARRIED})


def _positional(step: ActivityState) -> bool:
    """Whether the step waits for every step listed before it."""
    return step.depends_on is None and not step.independent and step.parent is None


def _left_undone(step: ActivityState) -> bool:
    """Whether the step's outcome is the run's end's, not its own: cancelled or skipped
    by the workflow's end, still in flight, or the required failure that ended it."""
    if step.status is ActivityStatus.SKIPPED:
        return step.skip_reason == SKIPPED_BY_FAILURE
    if step.status is ActivityStatus.FAILED:
        return step.required and step.parent is None
    return step.status is ActivityStatus.CANCELLED or step.status.in_flight


def _as_retried(step: ActivityState) -> ActivityState:
    """The step as a retry-from-failure leaves it (its kind says how)."""
    kind = kind_of(step)
    return kind.outlived(step) if step.status.in_flight else kind.rerun(step)


def described(state: WorkflowState, positions: frozenset[int]) -> list[str]:
    """The ids of the definition's steps in ``positions``, in order (for the history)."""
    return [a.id for a in state.definition_activities if a.position in positions]


__all__ = [
    "EVERY_STEP",
    "RERUNNABLE",
    "SKIPPED_BY_FAILURE",
    "described",
    "divergences",
    "downstream",
    "position_of",
    "rebuilt",
    "refusal",
    "reset",
    "restarted",
]
