"""Sagas: what a workflow runs when its run ends badly (docs/design.md, "Compensation and
failure handlers"). Pure, like the rest of :mod:`flow.core`.

- An activity may name its undo (``compensate``: a ``BaseActivity`` class and its
  config). When the run fails (or is cancelled, with ``compensate_on_cancel`` in the
  workflow's config), the undos of the activities that succeeded are appended to the
  workflow's steps (kind ``compensation``, :mod:`flow.core.kinds.compensation`) in
  reverse order of their completion, and run one at a time. An activity whose outcome
  is unknown (in flight when the run ended, or whose last attempt timed out) is undone
  only with ``compensate_unknown`` in its config; one that never ran, was skipped or
  failed is not. An undo that fails permanently (after its own retries) stops the chain:
  the undos after it are skipped, and the compensation is ``failed``.
- The workflow's ``on_failure`` (its config's: a class, or a registered definition run
  as a child workflow) is appended after the undos (kind ``on_failure``,
  :mod:`flow.core.kinds.on_failure`) when the run failed (not when it was cancelled),
  and runs once, with the failure as its input. Its outcome is recorded; it changes
  nothing else.
- Meanwhile the workflow is ``Compensating``: the definition's steps are no longer
  scheduled (:meth:`WorkflowState.runs`), late results of theirs are recorded. It ends
  ``Failed`` (or ``Cancelled``) once the last of these steps ended.

Each of these is a decision of :func:`flow.core.decide.decide` (invariant 13): the steps
are appended in the commit of the failure, each attempt is a schedule decision, so a
restart resends what is owed and never runs an undo's decision twice.

The ending's kinds (:mod:`flow.core.kinds.ending`) call this module, so it sits below the
table of kinds and cannot ask ``kind_of``: it reads what it needs of a step's kind from
the step's spec, the kind's type (:attr:`~flow.core.state.StepSpec.undo`,
:attr:`~flow.core.state.StepSpec.undoes`), and never names a kind's spec class.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from flow.core import graph
from flow.core.frozen import replace
from flow.core.policy import RetryPolicy, Timeouts
from flow.core.state import ActivityState, StepSpec, WorkflowState
from flow.core.vocabulary import ActivityStatus, TimerKind

#: ``path(*keys)``: the JSON path of a key of the definition.
PathOf = Callable[..., str]
#: A ``BaseActivity`` class name, as an activity's ``name``.
_CLASS = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
#: ``compensate`` of a definition's activity: its undo.
UNDO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": _CLASS, "config": {"$ref": "#/$defs/config"}},
}
#: ``on_failure`` of a workflow's config: a class (with its config) or a definition.
ON_FAILURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": _CLASS,
        "config": {"$ref": "#/$defs/config"},
        "workflow": {"type": "string", "pattern": graph.NAME_PATTERN},
        "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    },
}
#: The keys of a workflow's config that this module reads.
CONFIG_PROPERTIES: dict[str, Any] = {
    "on_failure": ON_FAILURE_SCHEMA,
    "compensate_on_cancel": {"type": "boolean"},
    "compensate_unknown": {"type": "boolean"},
}
#: What an attempt's error starts with when its timeout ended it after it started: its
#: effect is unknown (it may have run to the end).
_UNKNOWN = tuple(f"{kind} timeout:" for kind in (TimerKind.START_TO_CLOSE, TimerKind.HEARTBEAT))
#: Why an undo after one that failed is not run.
CHAIN_STOPPED = "an earlier undo failed permanently: the compensation stopped"


# -- the definition ------------------------------------------------------------------------------


def problems(body: Mapping[str, Any], known_activities: Collection[str], path: PathOf) -> list[tuple[str, str]]:
    """What the schema cannot say of a definition's undos and failure handler (valid
    against the schema): an unknown class, ``compensate`` on a step that is no activity,
    ``on_failure`` that names both or neither. ``path(*keys)``: a key's JSON path."""
    found: list[tuple[str, str]] = []
    for index, entry in enumerate(body["activities"]):
        if "on_failure" in entry.get("config", {}):
            found.append(
                (
                    path("activities", index, "config", "on_failure"),
                    "on_failure is the workflow's: set it in the workflow's config",
                )
            )
        undo = entry.get("compensate")
        if undo is None:
            continue
        if "name" not in entry or "map" in entry:
            found.append(
                (
                    path("activities", index, "compensate"),
                    "compensate names the undo of an activity "
                    "(name): a map, a child workflow, a sleep or a wait has none",
                )
            )
        elif undo["name"] not in known_activities:
            found.append((path("activities", index, "compensate", "name"), _unknown(undo["name"])))
    handler = body.get("config", {}).get("on_failure")
    if handler is not None:
        where = ("config", "on_failure")
        if ("name" in handler) == ("workflow" in handler):
            found.append((path(*where), 'on_failure runs a class ("name") or a workflow ("workflow"): name one'))
        elif "workflow" in handler and "config" in handler:
            found.append((path(*where, "config"), "a workflow on_failure takes no config: its definition has one"))
        elif "name" in handler and "version" in handler:
            found.append((path(*where, "version"), "version applies to a workflow on_failure"))
        elif handler.get("workflow") == body["name"]:
            found.append((path(*where, "workflow"), "a workflow cannot be its own failure handler"))
        elif "name" in handler and handler["name"] not in known_activities:
            found.append((path(*where, "name"), _unknown(handler["name"])))
    return found


def handler_workflow(body: Mapping[str, Any]) -> tuple[str, int | None] | None:
    """The definition (name, version) a definition's ``on_failure`` runs, if it runs one
    (the service checks that it is registered)."""
    config = body.get("config")
    handler = config.get("on_failure") if isinstance(config, Mapping) else None
    if not isinstance(handler, Mapping) or "workflow" not in handler:
        return None
    return str(handler["workflow"]), handler.get("version")


def _unknown(name: str) -> str:
    return (
        f"unknown activity {name!r}: no BaseActivity subclass of that name "
        "in the activities package or FLOW_ACTIVITY_PACKAGES"
    )


# -- decide --------------------------------------------------------------------------------------


def undone(state: WorkflowState) -> list[ActivityState]:
    """The activities whose undo runs, the one that completed last first: those that
    succeeded, and those whose outcome is unknown when their config says
    ``compensate_unknown`` (one still in flight counts as the latest)."""
    chosen = [
        a
        for a in state.definition_activities
        if a.spec.undo is not None
        and (
            a.status is ActivityStatus.SUCCEEDED or (_unknown_outcome(a) and a.config.get("compensate_unknown") is True)
        )
    ]
    return sorted(chosen, key=_completion, reverse=True)


def _completion(step: ActivityState) -> tuple[bool, datetime, int]:
    """When ``step`` completed, to order undos: one in flight (or with no end) is the latest."""
    no_end = step.finished_at is None or step.status.in_flight
    return no_end, step.finished_at or datetime.min, step.position


def _unknown_outcome(step: ActivityState) -> bool:
    timed_out = step.status is not ActivityStatus.SUCCEEDED and (step.error or "").startswith(_UNKNOWN)
    return step.status.in_flight or timed_out


def ending_steps(state: WorkflowState) -> tuple[ActivityState, ...]:
    """The steps of the workflow's ending (undos, failure handler), in the order they run."""
    return tuple(a for a in state.activities[state.size :] if a.spec.ending)


def undos(state: WorkflowState) -> list[ActivityState]:
    """The undos among the steps of the workflow's ending, in the order they run."""
    return [a for a in ending_steps(state) if a.spec.undoes is not None]


def compensation(state: WorkflowState) -> str | None:
    """``running``, ``done`` (every undo succeeded) or ``failed`` (one failed: the chain
    stopped there); None: the workflow has no undo to run."""
    steps = undos(state)
    if not steps:
        return None
    if any(a.status is ActivityStatus.FAILED for a in steps):
        return "failed"
    return "done" if all(a.status is ActivityStatus.SUCCEEDED for a in steps) else "running"


def undo_step(state: WorkflowState, original: ActivityState, position: int, spec: StepSpec) -> ActivityState:
    """The undo of ``original`` as a step at ``position`` (its kind's ``spec``): the undo's
    class, its config over the workflow's, its own retry policy and timeouts."""
    undo = original.spec.undo
    assert undo is not None
    base = run_config(state)
    return ActivityState(
        position=position,
        name=undo.name,
        independent=False,
        required=False,  # its failure ends the chain, it does not fail the run again
        config={**base, **undo.config},
        retry=RetryPolicy.from_config(base, undo.config),
        timeouts=replace(Timeouts.from_config(base, undo.config), workflow_s=None),
        id=f"undo({original.id})",
        spec=spec,
    )


def run_config(state: WorkflowState) -> dict[str, Any]:
    """The workflow's config without this module's keys: what an undo or a failure
    handler's own config is laid over."""
    return {key: value for key, value in state.config.items() if key not in CONFIG_PROPERTIES}


def failed_activity(state: WorkflowState) -> str | None:
    """The id of the required activity whose failure failed the run (None: a timeout)."""
    failed = [a for a in state.definition_activities if a.status is ActivityStatus.FAILED and a.required]
    return max(failed, key=lambda a: (a.finished_at or datetime.min, a.position)).id if failed else None


def handler_input(state: WorkflowState, failed: str | None) -> dict[str, Any]:
    """What the failure handler is given: the activity that failed, the workflow's error,
    the outputs so far, and how the compensation went."""
    outputs = {a.id: a.output for a in state.definition_activities if a.output is not None}
    return {"failed_activity": failed, "error": state.error, "outputs": outputs, "compensation": compensation(state)}


def retry_refusal(state: WorkflowState) -> str | None:
    """Why a retry-from-failure of ``state`` is refused: its undos ran (what succeeded was
    undone; a retry would build on undone work). None: it may be retried."""
    if undos(state):
        return (
            "its compensation ran (the steps that succeeded were undone): rerun it from the first "
            "undone step, or start a new workflow"
        )
    return None


def rerun_refusal(state: WorkflowState, positions: Collection[int]) -> str | None:
    """Why a rerun that resets ``positions`` is refused: it would keep the outcome of a step
    that an undo undid. None: every undone step runs again (or none was undone)."""
    kept = [
        state.activities[original].id
        for u in undos(state)
        if (original := u.spec.undoes) is not None
        and u.status is ActivityStatus.SUCCEEDED
        and original not in positions
    ]
    if not kept:
        return None
    return f"{', '.join(kept)} {'was' if len(kept) == 1 else 'were'} undone by the compensation: rerun from there"


__all__ = [
    "CHAIN_STOPPED",
    "CONFIG_PROPERTIES",
    "ON_FAILURE_SCHEMA",
    "UNDO_SCHEMA",
    "compensation",
    "ending_steps",
    "failed_activity",
    "handler_input",
    "handler_workflow",
    "problems",
    "rerun_refusal",
    "retry_refusal",
    "run_config",
    "undo_step",
    "undone",
    "undos",
]
