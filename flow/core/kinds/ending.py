"""The steps of a workflow's ending: what a failed (or cancelled) run appends and runs one
at a time while the workflow is ``Compensating`` (the rules: :mod:`flow.core.saga`).

Two kinds share this base: ``compensation`` (an undo, :mod:`.compensation`) and
``on_failure`` (the failure handler, :mod:`.on_failure`). Both are activities as far as
attempts go (:class:`~flow.core.kinds.activity.ActivityKind`: retries, timeouts,
heartbeats, recovery); they differ in what they are given and, for a failure handler
that runs a definition, in being sent as a child workflow. Their end is not the graph's
business: the next ending step starts, or the workflow ends (:func:`go_on`).

Pure, like the rest of :mod:`flow.core`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from flow.core import saga
from flow.core.commands import CancelChild, Command, RunActivity, RunChild
from flow.core.events import ActivityHeartbeat
from flow.core.frozen import replace
from flow.core.kinds.activity import ActivityKind
from flow.core.kinds.base import PathOf, StepKind
from flow.core.kinds.child import Child
from flow.core.policy import RetryPolicy, Timeouts
from flow.core.state import ActivityState, StepSpec, WorkflowState
from flow.core.steps import Decision, HistoryEntry, with_activity
from flow.core.vocabulary import ActivityStatus, HistoryType, WorkflowStatus


@dataclass(frozen=True)
class Compensation(StepSpec):
    """An undo (:mod:`.compensation`): of the activity at ``compensates``; ``ending_as``: the
    status the workflow ends with once its ending is over (``Failed`` or ``Cancelled``)."""

    kind: ClassVar[str] = "compensation"
    ending: ClassVar[bool] = True
    compensates: int
    ending_as: str = WorkflowStatus.FAILED.value

    @property
    def undoes(self) -> int | None:
        return self.compensates

    def compensating(self, state: WorkflowState) -> Mapping[str, Any] | None:
        original = state.activities[self.compensates]
        return {"activity": original.id, "input": dict(state.input_data), "config": dict(original.config),
                "output": original.output}  # fmt: skip


@dataclass(frozen=True)
class FailureHandler(Child):
    """The workflow's ``on_failure``: the class ``activity`` (with the step's config), or
    else the definition ``definition`` run as a child workflow (a :class:`Child`, so the
    engine starts it as it starts any child); ``failed_activity``: what failed the run."""

    kind: ClassVar[str] = "on_failure"
    ending: ClassVar[bool] = True
    activity: str | None = None
    failed_activity: str | None = None
    ending_as: str = WorkflowStatus.FAILED.value

    def input_of(self, state: WorkflowState) -> Mapping[str, Any]:
        return saga.handler_input(state, self.failed_activity)


class EndingKind(ActivityKind):
    """What the ending's kinds share: never in a definition, attempted as activities,
    and their end goes on with the ending (:func:`go_on`)."""

    identity: ClassVar[tuple[str, ...]] = ()
    properties: ClassVar[Mapping[str, Any]] = {}
    help: ClassVar[str] = ""
    queues: ClassVar[bool] = False
    takes_queue: ClassVar[bool] = False
    ending: ClassVar[bool] = True

    def claims(self, entry: Mapping[str, Any]) -> bool:
        return False  # appended when a run fails, never written in a definition

    def problems(
        self, entry: Mapping[str, Any], path: PathOf, known_activities: Collection[str]
    ) -> list[tuple[str, str]]:
        return []

    def run(self, step: ActivityState, attempt: int) -> RunActivity | RunChild:
        """A failure handler that names a definition runs as a child workflow."""
        return RunChild(step.position, attempt) if _runs_child(step) else RunActivity(step.position, attempt)

    def on_heartbeat(self, state: WorkflowState, step: ActivityState, event: ActivityHeartbeat) -> Decision:
        if _runs_child(step):
            return StepKind.on_heartbeat(self, state, step, event)  # a child sends none: stale
        return super().on_heartbeat(state, step, event)

    def on_cancel(self, step: ActivityState) -> list[Command]:
        if _runs_child(step):
            return [CancelChild(step.position)] if step.status.in_flight else []
        return super().on_cancel(step)

    def rerun(self, step: ActivityState) -> ActivityState:
        return step  # a workflow whose ending ran is not retried (saga.retry_refusal)

    def after_end(
        self,
        state: WorkflowState,
        step: ActivityState,
        now: datetime,
        commands: list[Command],
        history: list[HistoryEntry],
    ) -> tuple[WorkflowState, ActivityState | None]:
        return go_on(self, state, now, commands, history, ended=step), None


def _runs_child(step: ActivityState) -> bool:
    return isinstance(step.spec, FailureHandler) and step.spec.activity is None


# -- the ending's rules ------------------------------------------------------------------------


def begin(kind: EndingKind, state: WorkflowState, now: datetime, history: list[HistoryEntry]) -> Decision | None:
    """The run of ``state`` just ended badly (it is ``Failed``, or ``Cancelled`` with
    ``compensate_on_cancel``): its undos and failure handler appended, the first started,
    the workflow ``Compensating``. None when it has neither: it stays ended."""
    ending = state.status
    if ending is WorkflowStatus.CANCELLED and state.config.get("compensate_on_cancel") is not True:
        return None
    first = len(state.activities)
    steps = [
        saga.undo_step(state, original, first + index, Compensation(original.position, ending.value))
        for index, original in enumerate(saga.undone(state))
    ]
    handler = state.config.get("on_failure") if ending is WorkflowStatus.FAILED else None
    if isinstance(handler, Mapping):
        steps.append(_handler_step(state, handler, first + len(steps)))
    if not steps:
        return None
    state = replace(state, status=WorkflowStatus.COMPENSATING, activities=state.activities + tuple(steps),
                    finished_at=None)  # fmt: skip
    undos = saga.undos(state)
    if undos:
        data = {"undo": [s.id for s in undos], "ending": ending.value}
        history.append(HistoryEntry(HistoryType.START_COMPENSATION, data=data))
    commands: list[Command] = []
    state = go_on(kind, state, now, commands, history)
    return Decision(state, tuple(commands), tuple(history))


def _handler_step(state: WorkflowState, handler: Mapping[str, Any], position: int) -> ActivityState:
    """The failure handler as a step: a class with its config, or a child workflow."""
    config = saga.run_config(state)
    own = handler.get("config", {})
    spec = FailureHandler(
        definition=handler.get("workflow", ""),
        version=handler.get("version"),
        activity=handler.get("name"),
        failed_activity=saga.failed_activity(state),
    )
    name = spec.activity or spec.definition
    # Once per failure: a retried run that fails again runs the handler again, as a step
    # of its own after this run's undos; the earlier run's handler keeps its outcome. The
    # run in the id keeps ids unique (and gives a workflow handler a child of its own).
    handled_before = any(isinstance(a.spec, FailureHandler) for a in state.activities)
    return ActivityState(
        position=position,
        name=name,
        independent=False,
        required=False,  # its outcome is recorded; it does not change the workflow's
        config={**config, **own},
        retry=RetryPolicy.from_config(config, own) if spec.activity else RetryPolicy(max_attempts=1),
        timeouts=replace(Timeouts.from_config(config, own), workflow_s=None) if spec.activity else Timeouts(),
        id=f"on_failure({name}, run {state.run})" if handled_before else f"on_failure({name})",
        spec=spec,
    )


def go_on(
    kind: EndingKind,
    state: WorkflowState,
    now: datetime,
    commands: list[Command],
    history: list[HistoryEntry],
    *,
    ended: ActivityState | None = None,
) -> WorkflowState:
    """The ending began, or its step ``ended`` ended: start the next ending step (one at a
    time), or end the workflow ``Failed``/``Cancelled`` once none is left. ``kind``
    schedules the next step (every ending kind schedules alike: :meth:`EndingKind.run`
    reads the step's spec)."""
    undos = saga.undos(state)
    if ended is not None and ended.status is ActivityStatus.FAILED and ended.spec.kind == "compensation":
        for undo in undos:  # an undo failed for good: the chain stops here
            if undo.status is ActivityStatus.PENDING:
                stopped = replace(undo, status=ActivityStatus.SKIPPED, skip_reason=saga.CHAIN_STOPPED, finished_at=now)
                state = with_activity(state, stopped)
                history.append(HistoryEntry(HistoryType.SKIP_ACTIVITY, undo.position, {"reason": saga.CHAIN_STOPPED}))
        undos = saga.undos(state)
    steps = saga.ending_steps(state)
    following = next((s for s in steps if s.status is ActivityStatus.PENDING), None)
    if ended is not None and ended.spec.kind == "compensation" and all(u.status.ended for u in undos):
        history.append(HistoryEntry(HistoryType.END_COMPENSATION, data={"outcome": saga.compensation(state)}))
    if following is not None:
        if following.spec.kind == "on_failure":
            history.append(HistoryEntry(HistoryType.START_FAILURE_HANDLER, following.position))
        step, started, entry = kind.again(following, now)
        commands.extend(started)
        history.append(entry)
        return with_activity(state, step)
    spec = steps[-1].spec
    assert isinstance(spec, Compensation | FailureHandler)
    status = WorkflowStatus(spec.ending_as)
    state = replace(state, status=status, finished_at=now)
    done = {"compensation": saga.compensation(state)} if undos else {}
    if status is WorkflowStatus.CANCELLED:
        history.append(HistoryEntry(HistoryType.WORKFLOW_CANCELLED, data=done))
    else:
        history.append(HistoryEntry(HistoryType.WORKFLOW_FAILURE, data={"error": state.error, **done}))
    return state


__all__ = ["Compensation", "EndingKind", "FailureHandler", "begin", "go_on"]
