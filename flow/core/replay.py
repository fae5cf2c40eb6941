"""Replay before deploying: would a new definition take over a workflow's stored history
cleanly? Pure: given the workflow's state (the history's decisions, folded) and the new
definition's steps, :func:`check` says where the new definition would have decided
otherwise, or nothing when it takes over cleanly (docs/design.md, "Replay before deploying").

What the history has decided is each step that is no longer ``Pending``. The new
definition takes over cleanly when, for every such step, ``decide()`` under the new
definition would have made the same decision from the same history:

- the step still exists (by id), of the same kind, naming the same class or child definition;
- it still comes after the decided steps it came after (its order among them);
- everything it now waits for (its ``depends_on``, or every step listed before it) had
  ended when it was decided: it does not now depend on a step not yet run;
- its ``when`` gives the same answer on the same outputs (ran: still true; skipped by it: still false);
- what only its kind reads is the same (a map that listed its items lists them from the same
  ``map.over``: :meth:`~flow.core.kinds.base.StepKind.diverges`);
- a step that failed while not required is still not required (else the failure would have failed the workflow).

Steps still pending are the new definition's to decide, however it changed them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flow.core import graph
from flow.core.kinds import kind_of
from flow.core.state import ActivityState, WorkflowState
from flow.core.vocabulary import ActivityStatus


@dataclass(frozen=True)
class Divergence:
    """One place where the new definition would have decided otherwise."""

    #: The id of the step it concerns.
    step: str
    #: What kind of change: ``removed``, ``kind``, ``class``, ``order``, ``dependency``,
    #: ``condition``, ``map-source``, ``required``.
    change: str
    #: What a person reads: what the history did, and what the new definition says.
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"step": self.step, "change": self.change, "reason": self.reason}


@dataclass(frozen=True)
class Verdict:
    """Whether the new definition takes over one workflow's history, and where not."""

    workflow_id: str
    divergences: tuple[Divergence, ...] = ()

    @property
    def compatible(self) -> bool:
        return not self.divergences

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "compatible": self.compatible,
            "divergences": [d.to_json() for d in self.divergences],
        }


def check(state: WorkflowState, steps: Sequence[ActivityState]) -> Verdict:
    """Would the definition whose initial steps are ``steps`` take over ``state``'s history?"""
    new = {s.id: s for s in steps}
    old = {a.id: a for a in state.definition_activities}
    decided = [a for a in state.definition_activities if a.status is not ActivityStatus.PENDING]
    found: list[Divergence] = []
    for step in decided:
        now = new.get(step.id)
        if now is None:
            found.append(Divergence(step.id, "removed", f"{step.id} was decided ({step.status}) and no longer exists"))
            continue
        found += _changed(state, step, now, steps, old)
    found += _reordered([a for a in decided if a.id in new], new)
    return Verdict(state.id, tuple(found))


def _changed(
    state: WorkflowState,
    step: ActivityState,
    now: ActivityState,
    steps: Sequence[ActivityState],
    old: Mapping[str, ActivityState],
) -> list[Divergence]:
    """How the decided ``step`` differs in the new definition (``now``)."""
    if now.spec.kind != step.spec.kind:
        return [
            Divergence(
                step.id,
                "kind",
                f"{step.id} ran as a step of kind {step.spec.kind!r}, and is now of kind {now.spec.kind!r}",
            )
        ]
    found = []
    if now.name != step.name:
        found.append(Divergence(step.id, "class", f"{step.id} ran {step.name!r}, and now names {now.name!r}"))
    found += [Divergence(step.id, change, reason) for change, reason in kind_of(step).diverges(step, now)]
    for dependency in _waits_for(now, steps):
        before = old.get(dependency)
        if before is None:
            found.append(Divergence(step.id, "dependency", f"{step.id} now depends on {dependency}, which has not run"))
        elif not before.status.ended:
            found.append(
                Divergence(step.id, "dependency", f"{step.id} now depends on {dependency}, which is {before.status}")
            )
    if step.status is ActivityStatus.FAILED and not step.required and now.required:
        found.append(Divergence(step.id, "required", f"{step.id} failed while not required, and is now required"))
    found += _condition(state, step, now)
    return found


def _waits_for(step: ActivityState, steps: Sequence[ActivityState]) -> list[str]:
    """The ids of the steps ``step`` waits for under the new definition."""
    if step.depends_on is not None:
        return [steps[p].id for p in step.depends_on]
    if step.independent:
        return []
    return [s.id for s in steps[: step.position]]


def _condition(state: WorkflowState, step: ActivityState, now: ActivityState) -> list[Divergence]:
    """Whether the new ``when`` answers as the old one did, on the outputs of the history."""
    if now.when == step.when:
        return []
    by_when = step.status is ActivityStatus.SKIPPED and (step.skip_reason or "").startswith("when ")
    if step.status is ActivityStatus.SKIPPED and not by_when:
        return []  # skipped by its dependencies: its condition was never asked
    if now.when is None:
        return (
            [Divergence(step.id, "condition", f"{step.id} was skipped by its when, which is gone")] if by_when else []
        )
    verdict = graph.by_condition(now.when, graph.condition_context(state.input_data, state.activities))
    if verdict.fail is not None:
        return [Divergence(step.id, "condition", f"{step.id}'s new when cannot be evaluated: {verdict.fail}")]
    if by_when and verdict.run:
        return [Divergence(step.id, "condition", f"{step.id} was skipped by its when; the new when runs it")]
    if not by_when and verdict.skip is not None:
        return [Divergence(step.id, "condition", f"{step.id} ran; the new definition skips it ({verdict.skip})")]
    return []


def _reordered(decided: list[ActivityState], new: Mapping[str, ActivityState]) -> list[Divergence]:
    """The first decided step that the new definition lists before one decided earlier in the list."""
    latest: ActivityState | None = None
    for step in decided:  # in their old order
        if latest is not None and new[step.id].position < new[latest.id].position:
            return [
                Divergence(
                    step.id, "order", f"{step.id} came after {latest.id}, and the new definition lists it before"
                )
            ]
        if latest is None or new[step.id].position > new[latest.id].position:
            latest = step
    return []


__all__ = ["Divergence", "Verdict", "check"]
