"""The decision function: ``decide(state, event) -> Decision``. No I/O, no clock.

Each event leaves one fact in the history and at least one decision (the
:class:`~flow.core.vocabulary.HistoryType` of each says which), so a stale or
duplicate event is recorded even though it changes nothing.

Cost: an event costs O(what it changes), not O(activities) — the next sequential
activity is found from :attr:`WorkflowState.frontier`, and only the start and a
retry-from-failure look at every activity (docs/design.md, "The engine's hot path").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flow.core import graph, kinds, rerun, saga, workflow_limit
from flow.core.commands import Command
from flow.core.events import (
    ActivityCompleted,
    ActivityHeartbeat,
    ActivityStarted,
    CancelRequested,
    Event,
    PauseRequested,
    RerunRequested,
    ResumeRequested,
    RetryRequested,
    SignalReceived,
    TimerFired,
    WorkflowStarted,
)
from flow.core.frozen import replace
from flow.core.kinds import Change, Turn, kind_of
from flow.core.kinds.compensation import COMPENSATION
from flow.core.kinds.ending import begin
from flow.core.kinds.wait import received
from flow.core.state import ActivityState, WorkflowState
from flow.core.steps import Decision as Decision  # re-exported: what decide() returns
from flow.core.steps import HistoryEntry as HistoryEntry
from flow.core.steps import decided, nothing, stale, with_activity, workflow_timer
from flow.core.timestamps import iso
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind, WorkflowStatus

#: Statuses a retry-from-failure runs again.
_RERUN = (ActivityStatus.FAILED, ActivityStatus.SKIPPED, ActivityStatus.CANCELLED)
#: Statuses that owe no result: what the workflow's end cancels or skips (a running
#: map's items in flight owe theirs; the map itself does not).
_WAITING = (
    ActivityStatus.PENDING,
    ActivityStatus.QUEUED,
    ActivityStatus.WAITING_RETRY,
    ActivityStatus.RUNNING,
    ActivityStatus.WAITING,
)
#: Timers whose ``attempt`` is the one after the step's current one.
_NEXT_ATTEMPT = (TimerKind.RETRY, TimerKind.SLOT)


def decide(state: WorkflowState, event: Event) -> Decision:
    """Turn one event into the workflow's next state and the commands it owes."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"unknown event {event!r}")
    return handler(state, event)


# -- handlers ---------------------------------------------------------------------


def _on_workflow_started(state: WorkflowState, event: WorkflowStarted) -> Decision:
    if state.started or state.status.ended:
        return nothing(state, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": "workflow already started"}))
    state = replace(state, started=True, run_started_at=event.occurred_at)
    history = [HistoryEntry(HistoryType.START_WORKFLOW, data={"definition_version": state.definition_version})]
    if state.claim is not None:  # it waits for a slot of its limit first
        state, queued = workflow_limit.queue(state)
        return decided(state, workflow_timer(state), [*history, queued])
    return _advance(state, event.occurred_at, history, workflow_timer(state), every_activity=True)


def _on_activity_started(state: WorkflowState, event: ActivityStarted) -> Decision:
    fact = HistoryEntry(HistoryType.ACTIVITY_STARTED, event.position, {"attempt": event.attempt})
    activity = state.activity(event.position)
    if activity is None or activity.attempt != event.attempt:
        return nothing(state, stale(fact))
    decision = kind_of(activity).on_started(state, activity, event)
    return decision if decision is not None else nothing(state, stale(fact))


def _on_heartbeat(state: WorkflowState, event: ActivityHeartbeat) -> Decision:
    activity = state.activity(event.position)
    if activity is None:
        fact = HistoryEntry(HistoryType.ACTIVITY_HEARTBEAT, event.position, {"attempt": event.attempt})
        return Decision(state, (), (stale(fact), HistoryEntry(HistoryType.DO_NOTHING)))
    return kind_of(activity).on_heartbeat(state, activity, event)


def _on_activity_completed(state: WorkflowState, event: ActivityCompleted) -> Decision:
    fact = HistoryEntry(
        HistoryType.ACTIVITY_RESULT,
        event.position,
        {
            "attempt": event.attempt,
            "outcome": event.outcome,
            **({"error": event.error} if event.error else {}),
            # The attempt's own timings, so the history alone can draw every attempt.
            **({"started_at": iso(event.started_at)} if event.started_at else {}),
            **({"finished_at": iso(event.finished_at)} if event.finished_at else {}),
        },
    )
    activity = state.activity(event.position)
    if activity is None or activity.attempt != event.attempt or not activity.status.in_flight:
        return nothing(state, stale(fact))
    if event.attributes:  # set with the result it came with; the shell writes them from here
        fact = replace(fact, data={**fact.data, "attributes": dict(event.attributes)})
    history = [fact]
    answer = kind_of(activity).on_completed(state, activity, event, history)
    return _carry_on(state, answer, event.occurred_at, history)


def _on_timer_fired(state: WorkflowState, event: TimerFired) -> Decision:
    fact = HistoryEntry(HistoryType.TIMER_FIRED, event.position, {"kind": event.kind, "attempt": event.attempt})
    if event.kind == TimerKind.WORKFLOW:
        if not state.status.open or event.attempt != state.run:
            return nothing(state, stale(fact))
        limit = state.timeouts.workflow_s
        return _fail(state, event.occurred_at, f"workflow timed out: not ended within {limit} s", [fact])
    if event.kind == TimerKind.SLOT and event.position is None:
        # The workflow's limit let its run in; stale once the run ended or a newer one
        # began (the commit deletes the timer row, which gives a slot not taken up back).
        if not state.status.open or not workflow_limit.is_grant(state, event.kind, event.position, event.attempt):
            return nothing(state, stale(fact))
        state = replace(state, queued=False)
        history = [fact, HistoryEntry(HistoryType.ADMIT_WORKFLOW, data={"run": state.run})]
        return _advance(state, event.occurred_at, history, every_activity=True)
    if event.kind == TimerKind.LIMIT_CANCEL:
        # Its limit's strategy cancels it: it arrived while its key was full
        # (cancel_newest), or a newer one displaces it (cancel_in_progress).
        reason = workflow_limit.cancel_reason(state, event.attempt)
        if reason is None:
            return nothing(state, stale(fact))
        return _cancel(state, event.occurred_at, reason, fact)

    activity = state.activity(event.position) if event.position is not None else None
    if activity is None or activity.attempt + (1 if event.kind in _NEXT_ATTEMPT else 0) != event.attempt:
        return nothing(state, stale(fact))
    history = [fact]
    answer = kind_of(activity).on_timer(state, activity, event, history)
    return _carry_on(state, answer, event.occurred_at, history)


def _on_cancel_requested(state: WorkflowState, event: CancelRequested) -> Decision:
    fact = HistoryEntry(HistoryType.CANCEL_REQUESTED, data={"reason": event.reason} if event.reason else {})
    if not state.status.open:  # ended, or compensating: its undos run to their end
        return nothing(
            state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": f"workflow already {state.status}"})
        )
    return _cancel(state, event.occurred_at, event.reason, fact)


def _cancel(state: WorkflowState, now: datetime, reason: str | None, fact: HistoryEntry) -> Decision:
    """Cancel the workflow: asked by a request, or by its workflow limit's strategy."""
    commands = kinds.end_of_run_timers(state) + kinds.stop_running(state)
    activities = tuple(
        replace(a, status=ActivityStatus.CANCELLED, finished_at=a.finished_at or now) if a.status in _WAITING else a
        for a in state.activities
    )
    error = "cancelled" + (f": {reason}" if reason else "")
    state = replace(
        state,
        status=WorkflowStatus.CANCELLED,
        activities=activities,
        error=error,
        finished_at=now,
        paused=False,  # an ended workflow is not paused: a retry starts it unpaused
        queued=False,  # nor queued: a retry queues it again
    )
    compensating = begin(COMPENSATION, state, now, [fact])
    if compensating is not None:  # compensate_on_cancel: its undos run first
        return replace(compensating, commands=(*commands, *compensating.commands))
    return Decision(
        state,
        tuple(commands),
        (fact, HistoryEntry(HistoryType.WORKFLOW_CANCELLED, data={"reason": reason} if reason else {})),
    )


def _on_signal_received(state: WorkflowState, event: SignalReceived) -> Decision:
    fact = HistoryEntry(HistoryType.SIGNAL_RECEIVED, data={"name": event.name, "signal_id": event.signal_id})
    if not state.status.open:
        reason = f"workflow {state.status}: signal dropped"
        return nothing(state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": reason}))
    history = [fact]
    state, commands, ended = received(state, event, history)
    if ended is None:
        return decided(state, commands, history)
    return _advance(state, event.occurred_at, history, commands, ended=(ended,))


def _on_pause_or_resume(state: WorkflowState, event: PauseRequested | ResumeRequested) -> Decision:
    pause = isinstance(event, PauseRequested)
    fact = HistoryEntry(HistoryType.PAUSE_REQUESTED if pause else HistoryType.RESUME_REQUESTED)
    if not state.status.open or state.paused == pause:
        why = (
            f"workflow {state.status}" if not state.status.open else f"workflow {'already' if pause else 'not'} paused"
        )
        return nothing(state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": why}))
    if pause:
        return Decision(replace(state, paused=True), (), (fact, HistoryEntry(HistoryType.PAUSE_WORKFLOW)))
    history = [fact, HistoryEntry(HistoryType.RESUME_WORKFLOW)]
    state, commands, ended = kinds.on_resume(replace(state, paused=False, frontier=-1), event.occurred_at, history)
    failed = next((a for a in ended if a.status is ActivityStatus.FAILED and a.required), None)
    if failed is not None:  # its items' outputs together were over the payload limit
        error = f"required activity {failed.id} (position {failed.position}) failed: {failed.error}"
        decision = _fail(state, event.occurred_at, error, history)
        return replace(decision, commands=(*commands, *decision.commands))
    return _advance(state, event.occurred_at, history, commands, every_activity=True)


def _on_retry_requested(state: WorkflowState, event: RetryRequested) -> Decision:
    fact = HistoryEntry(HistoryType.RETRY_REQUESTED)
    stale = f"run {event.run} was started already" if event.run is not None and event.run <= state.run else None
    stale = stale or saga.retry_refusal(state)
    if stale or state.status not in (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
        reason = stale or f"workflow is {state.status}"
        return nothing(state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": reason}))
    activities = tuple(
        kind_of(a).rerun(a) if a.status in _RERUN else kind_of(a).outlived(a) if a.status.in_flight else a
        for a in state.activities
    )
    history = [fact]
    return _run_again(state, activities, event.occurred_at, event.run or state.run + 1, history, {})


def _on_rerun_requested(state: WorkflowState, event: RerunRequested) -> Decision:
    asked = {"from": event.from_step, **({"by": event.by} if event.by else {})}
    fact = HistoryEntry(HistoryType.RERUN_REQUESTED, data=asked)
    restarted = rerun.restarted(state, event)
    if isinstance(restarted, str):
        return nothing(state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": restarted}))
    state, done = restarted
    return _run_again(state, state.activities, event.occurred_at, event.run or state.run + 1, [fact], done)


def _run_again(
    state: WorkflowState,
    activities: tuple[ActivityState, ...],
    now: datetime,
    run: int,
    history: list[HistoryEntry],
    rerun_from: dict[str, Any],
) -> Decision:
    """A new run of an ended workflow, its steps as a retry (or a rerun) left them."""
    state = replace(
        state,
        status=WorkflowStatus.IN_PROGRESS,
        activities=activities,
        error=None,
        output=None,
        finished_at=None,
        started=True,
        run=run,
        paused=False,
        run_started_at=now,
        frontier=-1,
        map_progress={},
    )
    decision = HistoryType.RERUN_WORKFLOW if rerun_from else HistoryType.RETRY_WORKFLOW
    history.append(HistoryEntry(decision, data={"run": state.run, **rerun_from}))
    if state.claim is not None:  # a new run waits for a slot again
        state, queued = workflow_limit.queue(state)
        return decided(state, workflow_timer(state), [*history, queued])
    return _advance(state, now, history, workflow_timer(state), every_activity=True)


# -- helpers ----------------------------------------------------------------------


def _carry_on(state: WorkflowState, answer: kinds.base.Answer, now: datetime, history: list[HistoryEntry]) -> Decision:
    """Carry on from a kind's answer to an event about one of its steps: its decision,
    or the change of its step (then the workflow goes on from it); stale when None."""
    if answer is None:
        return nothing(state, stale(history[0]))  # the fact, which the kind found stale
    if isinstance(answer, Decision):
        return answer
    return _changed(state, answer, now, history)


def _changed(state: WorkflowState, change: Change, now: datetime, history: list[HistoryEntry]) -> Decision:
    """Put a step's change in the workflow; once the step has ended, the workflow fails
    (a required step failed) or goes on (its kind may end another step with it: an item
    its map)."""
    step, commands = change.step, list(change.commands)
    state = with_activity(state, step)
    if not step.status.ended:
        return _advance(state, now, history, commands)
    if step.status is ActivityStatus.FAILED and step.required:
        error = change.failure or f"required activity {step.id} (position {step.position}) failed: {step.error}"
        decision = _fail(state, now, error, history)
        return replace(decision, commands=(*commands, *decision.commands))
    state, ended = kind_of(step).after_end(state, step, now, commands, history)
    if ended is None:
        return decided(state, commands, history)
    if ended is not step:
        return _changed(state, Change(ended, tuple(commands)), now, history)
    return _advance(state, now, history, commands, ended=(step.position,))


def _advance(
    state: WorkflowState,
    now: datetime,
    history: list[HistoryEntry],
    commands: list[Command] | None = None,
    *,
    ended: tuple[int, ...] = (),
    every_activity: bool = False,
) -> Decision:
    """Schedule or skip every activity whose turn came, or finish the workflow.

    Only activities whose turn may have come are looked at (the hot path's cost is
    O(what changed)): the one at the frontier (the first that has not ended: the
    positional rule's next), and the dependents of the activities that just
    ``ended``. ``every_activity`` is for the start and a retry-from-failure, when any
    pending activity may be ready. A skip ends an activity too, so it repeats until
    nothing more ends. What it schedules is sent only if no required activity failed
    on the way (its condition could not be evaluated): then the workflow fails and
    nothing new runs, whatever the order of the list.
    """
    commands = list(commands or [])
    if not state.started or not state.status.open or state.paused or state.queued:
        # Paused: resuming looks at every activity; queued: so does being let in.
        return decided(state, commands, history)
    turn = Turn(state, list(state.activities), list(state.inbox), now)
    activities = turn.activities
    candidates = [a.position for a in activities if a.status is ActivityStatus.PENDING] if every_activity else []
    frontier = state.frontier
    just_ended = list(ended)
    while True:
        frontier = graph.frontier(activities, frontier, state.size)
        if frontier < state.size:
            candidates.append(frontier)
        for position in just_ended:
            candidates.extend(state.dependents[position])
        just_ended = []
        for position in candidates:
            activity = activities[position]
            if activity.status is not ActivityStatus.PENDING or position >= state.size:
                continue  # an item's turn is its map's business (flow.core.kinds.map)
            verdict = graph.verdict(state, activities, activity, frontier)
            if verdict.run:
                verdict = kind_of(activity).start(turn, position)
                if activities[position].status.ended:  # a map of no items, a wait that took a kept signal
                    just_ended.append(position)
            if verdict.fail is not None:
                failed = replace(activity, status=ActivityStatus.FAILED, error=verdict.fail, finished_at=now)
                activities[position] = failed
                history.append(HistoryEntry(HistoryType.FAIL_ACTIVITY, position, {"error": verdict.fail}))
                if failed.required:
                    # Nothing scheduled is sent: pending again, then skipped by _fail.
                    del activities[len(state.activities) :]  # the items of maps just started
                    for p, _, _ in turn.scheduled:
                        if p < len(state.activities):
                            activities[p] = state.activities[p]
                    state = replace(state, activities=tuple(activities), frontier=frontier)  # no wait took a signal
                    error = f"required activity {failed.id} (position {position}) failed: {verdict.fail}"
                    decision = _fail(state, now, error, history)
                    return replace(decision, commands=(*commands, *decision.commands))
                just_ended.append(position)
            elif verdict.skip is not None:
                activities[position] = replace(
                    activity, status=ActivityStatus.SKIPPED, skip_reason=verdict.skip, finished_at=now
                )
                history.append(HistoryEntry(HistoryType.SKIP_ACTIVITY, position, {"reason": verdict.skip}))
                just_ended.append(position)
        candidates = []
        if not just_ended:
            break
    for _, run, entry in turn.scheduled:
        commands.extend(run)
        history.append(entry)
    state = replace(state, activities=tuple(activities), frontier=frontier, inbox=tuple(turn.inbox))
    if frontier == state.size:
        output = {a.id: a.output for a in state.definition_activities if a.output is not None}
        commands.extend(kinds.end_of_run_timers(state))
        state = replace(state, status=WorkflowStatus.FINISHED, finished_at=now, output=output)
        history.append(HistoryEntry(HistoryType.WORKFLOW_FINISHED))
    return decided(state, commands, history)


def _fail(state: WorkflowState, now: datetime, error: str, history: list[HistoryEntry]) -> Decision:
    """Fail the workflow: nothing new is scheduled; waiting activities are skipped; what
    runs is told to stop, as a cancel tells it (children are cancelled)."""
    commands = kinds.end_of_run_timers(state) + kinds.stop_running(state)
    activities = tuple(
        replace(a, status=ActivityStatus.SKIPPED, skip_reason=rerun.SKIPPED_BY_FAILURE) if a.status in _WAITING else a
        for a in state.activities
    )
    state = replace(
        state,
        status=WorkflowStatus.FAILED,
        activities=activities,
        error=error,
        finished_at=now,
        paused=False,
        queued=False,
    )
    compensating = begin(COMPENSATION, state, now, history)
    if compensating is not None:  # its undos and failure handler run first
        return replace(compensating, commands=(*commands, *compensating.commands))
    history.append(HistoryEntry(HistoryType.WORKFLOW_FAILURE, data={"error": error}))
    return Decision(state, tuple(commands), tuple(history))


#: Which handler decides on which event.
_HANDLERS: dict[type, Callable[[WorkflowState, Any], Decision]] = {
    WorkflowStarted: _on_workflow_started,
    ActivityStarted: _on_activity_started,
    ActivityCompleted: _on_activity_completed,
    ActivityHeartbeat: _on_heartbeat,
    TimerFired: _on_timer_fired,
    CancelRequested: _on_cancel_requested,
    RetryRequested: _on_retry_requested,
    RerunRequested: _on_rerun_requested,
    SignalReceived: _on_signal_received,
    PauseRequested: _on_pause_or_resume,
    ResumeRequested: _on_pause_or_resume,
}
