"""The decision function: ``decide(state, event) -> Decision``. No I/O, no clock.

Each event leaves one fact in the history and at least one decision (the
:class:`~flow.core.vocabulary.HistoryType` of each says which), so a stale or
duplicate event is recorded even though it changes nothing.

Cost: an event costs O(what it changes), not O(activities) — the next sequential
activity is found from :attr:`WorkflowState.frontier`, and only the start and a
retry-from-failure look at every activity (docs/design.md, "The engine's hot path").
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from flow.core import graph, heartbeats, maps, signals, sleeps
from flow.core.commands import CancelChild, Command, StartTimer
from flow.core.events import (
    ActivityCompleted,
    ActivityHeartbeat,
    ActivityStarted,
    CancelRequested,
    Event,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    SignalReceived,
    TimerFired,
    WorkflowStarted,
)
from flow.core.failure import required_failure
from flow.core.state import ActivityState, WorkflowState
from flow.core.steps import (
    Decision,
    HistoryEntry,
    attempt_timers,
    decided,
    end_of_run_timers,
    nothing,
    pending_again,
    schedule,
    stale,
    with_activity,
    workflow_timer,
)
from flow.core.timestamps import iso
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus

#: Statuses a retry-from-failure runs again.
_RERUN = (ActivityStatus.FAILED, ActivityStatus.SKIPPED, ActivityStatus.CANCELLED)
#: Statuses that owe no result: what the workflow's end cancels or skips (a running
#: map's items in flight owe theirs; the map itself does not).
_WAITING = (ActivityStatus.PENDING, ActivityStatus.WAITING_RETRY, ActivityStatus.RUNNING, ActivityStatus.WAITING)
#: What a late result (its workflow ended) leaves on the activity.
_LATE = {Outcome.SUCCEEDED: ActivityStatus.SUCCEEDED, Outcome.CANCELLED: ActivityStatus.CANCELLED}


def decide(state: WorkflowState, event: Event) -> Decision:
    """Turn one event into the workflow's next state and the commands it owes."""
    if isinstance(event, ActivityCompleted):
        return _on_activity_completed(state, event)
    if isinstance(event, ActivityStarted):
        return _on_activity_started(state, event)
    if isinstance(event, ActivityHeartbeat):
        return heartbeats.on_heartbeat(state, event)
    if isinstance(event, TimerFired):
        return _on_timer_fired(state, event)
    if isinstance(event, WorkflowStarted):
        return _on_workflow_started(state, event)
    if isinstance(event, CancelRequested):
        return _on_cancel_requested(state, event)
    if isinstance(event, RetryRequested):
        return _on_retry_requested(state, event)
    if isinstance(event, SignalReceived):
        return _on_signal_received(state, event)
    if isinstance(event, PauseRequested | ResumeRequested):
        return _on_pause_or_resume(state, event)
    raise TypeError(f"unknown event {event!r}")


# -- handlers ---------------------------------------------------------------------


def _on_workflow_started(state: WorkflowState, event: WorkflowStarted) -> Decision:
    if state.started or state.status.ended:
        return nothing(state, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": "workflow already started"}))
    state = replace(state, started=True, run_started_at=event.occurred_at)
    history = [HistoryEntry(HistoryType.START_WORKFLOW, data={"definition_version": state.definition_version})]
    return _advance(state, event.occurred_at, history, workflow_timer(state), every_activity=True)


def _on_activity_started(state: WorkflowState, event: ActivityStarted) -> Decision:
    fact = HistoryEntry(HistoryType.ACTIVITY_STARTED, event.position, {"attempt": event.attempt})
    activity = state.activity(event.position)
    if activity is None or activity.attempt != event.attempt or activity.status is not ActivityStatus.SCHEDULED:
        return nothing(state, stale(fact))
    activity = replace(activity, status=ActivityStatus.STARTED, started_at=event.occurred_at)
    commands = heartbeats.started_timers(activity, event.attempt, ended=state.status.ended)
    return Decision(with_activity(state, activity), tuple(commands), (fact, HistoryEntry(HistoryType.DO_NOTHING)))


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
    activity = replace(
        activity,
        output=event.output,
        error=event.error,
        started_at=event.started_at or activity.started_at,
        finished_at=event.finished_at or event.occurred_at,
    )
    return _attempt_ended(state, activity, event.outcome, event.occurred_at, [fact])


def _on_timer_fired(state: WorkflowState, event: TimerFired) -> Decision:
    fact = HistoryEntry(HistoryType.TIMER_FIRED, event.position, {"kind": event.kind, "attempt": event.attempt})
    if event.kind == TimerKind.WORKFLOW:
        if state.status.ended or event.attempt != state.run:
            return nothing(state, stale(fact))
        limit = state.timeouts.workflow_s
        return _fail(state, event.occurred_at, f"workflow timed out: not ended within {limit} s", [fact])

    activity = state.activity(event.position) if event.position is not None else None
    if activity is None or activity.attempt + (1 if event.kind == TimerKind.RETRY else 0) != event.attempt:
        return nothing(state, stale(fact))

    if event.kind in (TimerKind.SLEEP, TimerKind.WAIT):
        if state.status.ended or activity.status is not ActivityStatus.WAITING:
            return nothing(state, stale(fact))
        if event.kind == TimerKind.SLEEP:
            activity = replace(activity, status=ActivityStatus.SUCCEEDED, finished_at=event.occurred_at)
        else:
            activity = signals.timed_out(activity, event.occurred_at)
            if activity.required:
                error = f"required activity {activity.id} (position {activity.position}) failed: {activity.error}"
                return _fail(with_activity(state, activity), event.occurred_at, error, [fact])
        return _advance(with_activity(state, activity), event.occurred_at, [fact], ended=(activity.position,))

    if event.kind == TimerKind.RETRY:
        if state.status.ended or activity.status is not ActivityStatus.WAITING_RETRY:
            return nothing(state, stale(fact))
        activity, commands, entry = schedule(activity, event.occurred_at)
        return Decision(with_activity(state, activity), tuple(commands), (fact, entry))

    waiting_for = ActivityStatus.SCHEDULED if event.kind == TimerKind.SCHEDULE_TO_START else ActivityStatus.STARTED
    if activity.status is not waiting_for:
        return nothing(state, stale(fact))
    if event.kind == TimerKind.SCHEDULE_TO_START:
        error = f"no worker started attempt {event.attempt} within {activity.timeouts.schedule_to_start_s} s"
    elif event.kind == TimerKind.HEARTBEAT:
        if (again := heartbeats.still_beating(activity, event.occurred_at)) is not None:
            why = {"reason": "a heartbeat came in time: the timer is set again"}
            return Decision(state, (again,), (fact, HistoryEntry(HistoryType.DO_NOTHING, activity.position, why)))
        error = (
            f"no heartbeat from attempt {event.attempt} for {activity.timeouts.heartbeat_s} s "
            "(its worker died or is stuck)"
        )
    else:
        error = f"attempt {event.attempt} did not finish within {activity.timeouts.start_to_close_s} s"
    activity = replace(activity, error=f"{event.kind} timeout: {error}", finished_at=event.occurred_at)
    return _attempt_ended(state, activity, Outcome.TEMPORARY_FAILURE, event.occurred_at, [fact], fired=event.kind)


def _on_cancel_requested(state: WorkflowState, event: CancelRequested) -> Decision:
    fact = HistoryEntry(HistoryType.CANCEL_REQUESTED, data={"reason": event.reason} if event.reason else {})
    if state.status.ended:
        return nothing(
            state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": f"workflow already {state.status}"})
        )
    commands = end_of_run_timers(state)
    commands += [CancelChild(a.position) for a in state.activities if a.child is not None and a.status.in_flight]
    commands += heartbeats.cancel_running(state)  # advisory: each stops at its next heartbeat
    activities = tuple(
        replace(a, status=ActivityStatus.CANCELLED, finished_at=a.finished_at or event.occurred_at)
        if a.status in _WAITING
        else a
        for a in state.activities
    )
    error = "cancelled" + (f": {event.reason}" if event.reason else "")
    state = replace(
        state, status=WorkflowStatus.CANCELLED, activities=activities, error=error, finished_at=event.occurred_at
    )
    return Decision(state, tuple(commands), (fact, HistoryEntry(HistoryType.WORKFLOW_CANCELLED, data=dict(fact.data))))


def _on_signal_received(state: WorkflowState, event: SignalReceived) -> Decision:
    fact = HistoryEntry(HistoryType.SIGNAL_RECEIVED, data={"name": event.name, "signal_id": event.signal_id})
    if state.status.ended:
        reason = f"workflow {state.status}: signal dropped"
        return nothing(state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": reason}))
    history = [fact]
    state, commands, ended = signals.received(state, event, history)
    if ended is None:
        return decided(state, commands, history)
    return _advance(state, event.occurred_at, history, commands, ended=(ended,))


def _on_pause_or_resume(state: WorkflowState, event: PauseRequested | ResumeRequested) -> Decision:
    pause = isinstance(event, PauseRequested)
    fact = HistoryEntry(HistoryType.PAUSE_REQUESTED if pause else HistoryType.RESUME_REQUESTED)
    if state.status.ended or state.paused == pause:
        why = f"workflow {state.status}" if state.status.ended else f"workflow {'already' if pause else 'not'} paused"
        return nothing(state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": why}))
    if pause:
        return Decision(replace(state, paused=True), (), (fact, HistoryEntry(HistoryType.PAUSE_WORKFLOW)))
    history = [fact, HistoryEntry(HistoryType.RESUME_WORKFLOW)]
    state, commands, ended = maps.resume(replace(state, paused=False, frontier=-1), event.occurred_at, history)
    failed = next((a for a in ended if a.status is ActivityStatus.FAILED and a.required), None)
    if failed is not None:  # its items' outputs together were over the payload limit
        error = f"required activity {failed.id} (position {failed.position}) failed: {failed.error}"
        decision = _fail(state, event.occurred_at, error, history)
        return replace(decision, commands=(*commands, *decision.commands))
    return _advance(state, event.occurred_at, history, commands, every_activity=True)


def _on_retry_requested(state: WorkflowState, event: RetryRequested) -> Decision:
    fact = HistoryEntry(HistoryType.RETRY_REQUESTED)
    stale = f"run {event.run} was started already" if event.run is not None and event.run <= state.run else None
    if stale or state.status not in (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
        reason = stale or f"workflow is {state.status}"
        return nothing(state, fact, HistoryEntry(HistoryType.DO_NOTHING, data={"reason": reason}))
    activities = tuple(
        pending_again(a)
        if a.status in _RERUN and not a.is_item  # a map's items: its resume's business (flow.core.maps)
        else a
        for a in state.activities
    )
    state = replace(
        state,
        status=WorkflowStatus.IN_PROGRESS,
        activities=activities,
        error=None,
        output=None,
        finished_at=None,
        started=True,
        run=event.run or state.run + 1,
        paused=False,
        run_started_at=event.occurred_at,
        frontier=-1,
        map_progress={},
    )
    history = [fact, HistoryEntry(HistoryType.RETRY_WORKFLOW, data={"run": state.run})]
    return _advance(state, event.occurred_at, history, workflow_timer(state), every_activity=True)


# -- helpers ----------------------------------------------------------------------


def _attempt_ended(
    state: WorkflowState,
    activity: ActivityState,
    outcome: Outcome,
    now: datetime,
    history: list[HistoryEntry],
    *,
    fired: TimerKind | None = None,
) -> Decision:
    """The current attempt of ``activity`` ended with ``outcome``: retry, fail or go on.

    ``fired`` is the timeout timer that ended it, if one did (it needs no cancelling).
    """
    commands: list[Command] = [c for c in attempt_timers(activity) if c.kind != fired]
    if state.status.ended:
        # A late result: recorded on the activity, but the workflow decides nothing more.
        status = _LATE.get(outcome, ActivityStatus.FAILED)
        state = with_activity(state, replace(activity, status=status))
        history.append(HistoryEntry(HistoryType.DO_NOTHING, activity.position, {"reason": f"workflow {state.status}"}))
        return Decision(state, tuple(commands), tuple(history))

    if outcome == Outcome.CANCELLED:
        # Stopped by a cancel meant for the run before (a retry-from-failure came before
        # the attempt obeyed): run it again at once, not counted against this run's budget.
        activity, run, entry = schedule(replace(activity, attempts_before=activity.attempts_before + 1), now)
        history.append(entry)
        return Decision(with_activity(state, activity), (*commands, *run), tuple(history))
    attempts_this_run = activity.attempt - activity.attempts_before
    if outcome == Outcome.SUCCEEDED:
        activity = replace(activity, status=ActivityStatus.SUCCEEDED, error=None)
    elif (
        outcome == Outcome.TEMPORARY_FAILURE
        and attempts_this_run < activity.retry.max_attempts
        and maps.may_retry(state, activity)
    ):
        next_attempt = activity.attempt + 1
        delay_ms = retry_delay_ms(state, activity)
        activity = replace(activity, status=ActivityStatus.WAITING_RETRY)
        commands.append(StartTimer(TimerKind.RETRY, delay_ms, activity.position, next_attempt))
        history.append(
            HistoryEntry(
                HistoryType.RESCHEDULE_ACTIVITY, activity.position, {"attempt": next_attempt, "delay_ms": delay_ms}
            )
        )
    else:
        activity = replace(activity, status=ActivityStatus.FAILED)
        if activity.required:
            error = required_failure(activity, outcome, attempts_this_run)
            decision = _fail(with_activity(state, activity), now, error, history)
            return replace(decision, commands=(*commands, *decision.commands))
    state = with_activity(state, activity)
    if activity.is_item and activity.status.ended:
        state, ended_map = maps.item_ended(state, activity, now, commands, history)
        if ended_map is None:
            return decided(state, commands, history)
        activity = ended_map
        if activity.status is ActivityStatus.FAILED and activity.required:
            error = f"required activity {activity.id} (position {activity.position}) failed: {activity.error}"
            decision = _fail(state, now, error, history)
            return replace(decision, commands=(*commands, *decision.commands))
    ended = (activity.position,) if activity.status.ended else ()
    return _advance(state, now, history, commands, ended=ended)


def retry_delay_ms(state: WorkflowState, activity: ActivityState) -> int:
    """Delay before the attempt after ``activity``'s current one (which failed).

    Derived from the workflow, activity and attempt alone, so that recovery after a
    restart (:mod:`flow.core.recovery`) finds the same due time the decision chose.
    """
    attempts_this_run = activity.attempt - activity.attempts_before
    next_attempt = activity.attempt + 1
    return activity.retry.delay_ms(attempts_this_run, seed=f"{state.id}:{activity.position}:{next_attempt}")


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
    if not state.started or state.status.ended or state.paused:
        return decided(state, commands, history)  # paused: resuming looks at every activity
    activities = list(state.activities)
    inbox = list(state.inbox)
    candidates = [a.position for a in activities if a.status is ActivityStatus.PENDING] if every_activity else []
    frontier = state.frontier
    just_ended = list(ended)
    scheduled: list[tuple[int, list[Command], HistoryEntry]] = []
    while True:
        frontier = graph.frontier(activities, frontier, state.size)
        if frontier < state.size:
            candidates.append(frontier)
        for position in just_ended:
            candidates.extend(state.dependents[position])
        just_ended = []
        for position in candidates:
            activity = activities[position]
            if activity.status is not ActivityStatus.PENDING or activity.is_item:
                continue  # an item's turn is its map's business (flow.core.maps)
            verdict = graph.verdict(state, activities, activity, frontier)
            if verdict.run and activity.map_over is not None:
                verdict = maps.start(state, activities, position, now, scheduled)
                if activities[position].status.ended:
                    just_ended.append(position)
            elif verdict.run and activity.is_sleep:
                verdict = sleeps.start(state, activities, position, now, scheduled)
            elif verdict.run and activity.wait_for is not None:
                verdict = signals.start(activities, inbox, position, now, scheduled, run=state.run)
                if activities[position].status.ended:  # it took a signal kept from before
                    just_ended.append(position)
            if verdict.run:
                activities[position], run, entry = schedule(activity, now)
                scheduled.append((position, run, entry))
            elif verdict.fail is not None:
                failed = replace(activity, status=ActivityStatus.FAILED, error=verdict.fail, finished_at=now)
                activities[position] = failed
                history.append(HistoryEntry(HistoryType.FAIL_ACTIVITY, position, {"error": verdict.fail}))
                if failed.required:
                    # Nothing scheduled is sent: pending again, then skipped by _fail.
                    del activities[len(state.activities) :]  # the items of maps just started
                    inbox = list(state.inbox)  # no wait took a signal
                    for p, _, _ in scheduled:
                        if p < len(state.activities):
                            activities[p] = state.activities[p]
                    state = replace(state, activities=tuple(activities), frontier=frontier)
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
    for _, run, entry in scheduled:
        commands.extend(run)
        history.append(entry)
    state = replace(state, activities=tuple(activities), frontier=frontier, inbox=tuple(inbox))
    if frontier == state.size:
        output = {a.id: a.output for a in state.definition_activities if a.output is not None}
        commands.extend(end_of_run_timers(state))
        state = replace(state, status=WorkflowStatus.FINISHED, finished_at=now, output=output)
        history.append(HistoryEntry(HistoryType.WORKFLOW_FINISHED))
    return decided(state, commands, history)


def _fail(state: WorkflowState, now: datetime, error: str, history: list[HistoryEntry]) -> Decision:
    """Fail the workflow: nothing new is scheduled; waiting activities are skipped."""
    commands = end_of_run_timers(state)
    activities = tuple(
        replace(a, status=ActivityStatus.SKIPPED, skip_reason="the workflow failed") if a.status in _WAITING else a
        for a in state.activities
    )
    state = replace(state, status=WorkflowStatus.FAILED, activities=activities, error=error, finished_at=now)
    history.append(HistoryEntry(HistoryType.WORKFLOW_FAILURE, data={"error": error}))
    return Decision(state, tuple(commands), tuple(history))
