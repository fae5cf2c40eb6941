"""``activity``: a ``BaseActivity`` class run by the workers, attempt after attempt.

- Its turn: an attempt is scheduled (:class:`~flow.core.commands.RunActivity`), with a
  schedule-to-start timer when ``timeouts.schedule_to_start_s`` is set.
- Started: the schedule-to-start timer is done with; start-to-close and heartbeat
  timers begin.
- Its result: ``SUCCEEDED`` ends it; a temporary failure (or a timeout) is retried after
  the policy's delay (a ``retry`` timer) while attempts are left, else it failed
  permanently, and ``required`` decides the rest. ``CANCELLED`` (a cancel meant for the
  run before a retry-from-failure) runs it again at once. A result for an ended
  workflow is recorded on the step and changes nothing else.
- Heartbeats: each moves the heartbeat timer on and keeps its details for the next
  attempt, on the step (its ``heartbeat`` and ``heartbeat_at``), not in the history: a
  current attempt's heartbeat leaves no history entry, as in Temporal, so a day-long
  activity beating every few seconds does not write tens of thousands of rows (the
  history would otherwise grow with the time an activity runs, not with what happened).
  A heartbeat timer that fires when none came for ``heartbeat_s`` fails the
  attempt (its worker died or is stuck); one that fires although a heartbeat came in
  the meantime is set again for what is left. A heartbeat of an attempt that is not the
  current one in flight, or whose workflow ended, is answered with
  :class:`~flow.core.commands.CancelAttempt`.
- Cancelled: its attempt in flight is told to stop (advisory: the activity's next
  ``self.heartbeat()`` raises).
- After a restart: the attempt in flight is sent again; its timers are due from the
  stored timestamps (a retry from the failed attempt's end plus the same delay).
- With a ``concurrency`` limit (:mod:`flow.core.limits`), each attempt first waits
  ``Queued`` for a slot; the engine's ``slot`` timer lets it in (then it is scheduled as
  above), or the commit that queues it does when its key has room (:mod:`flow.core.at_once`),
  and whatever ends the attempt gives the slot back by ending it. The time it
  waits for a slot does not count against ``schedule_to_start_s``.

The attempt rules are shared by the kinds whose steps have attempts (a map's items,
child workflows), which override what differs.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from flow.core import graph, saga
from flow.core.commands import CancelAttempt, CancelTimer, Command, RunActivity, RunChild, StartTimer
from flow.core.events import ActivityCompleted, ActivityHeartbeat, ActivityStarted, TimerFired
from flow.core.failure import required_failure
from flow.core.frozen import replace
from flow.core.kinds.base import Answer, Change, DueTimer, Line, Owed, PathOf, StepKind, Turn
from flow.core.kinds.claims import claims
from flow.core.state import ACTIVITY, Activity, ActivityState, StepSpec, Undo, WorkflowState
from flow.core.steps import Decision, HistoryEntry, stale, timer, with_activity
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind

#: What a late result (its workflow ended) leaves on the step.
_LATE = {Outcome.SUCCEEDED: ActivityStatus.SUCCEEDED, Outcome.CANCELLED: ActivityStatus.CANCELLED}
#: The timers that guard an attempt (a retry timer runs the next one).
_ATTEMPT_TIMERS = frozenset({TimerKind.SCHEDULE_TO_START, TimerKind.START_TO_CLOSE, TimerKind.HEARTBEAT})


def _scheduled(data: Mapping[str, Any]) -> str:
    return "scheduled"


class ActivityKind(StepKind):
    """A ``BaseActivity`` subclass, run by the workers (see the module docstring)."""

    name: ClassVar[str] = "activity"
    identity: ClassVar[tuple[str, ...]] = ("name",)
    properties: ClassVar[Mapping[str, Any]] = {
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "compensate": saga.UNDO_SCHEMA,
    }
    help: ClassVar[str] = "an activity (name: a BaseActivity subclass)"
    runs_on_workers: ClassVar[bool] = True
    queues: ClassVar[bool] = True
    takes_queue: ClassVar[bool] = True
    lines: ClassVar[Mapping[HistoryType, Line]] = {
        HistoryType.SCHEDULE_ACTIVITY: _scheduled,
        HistoryType.QUEUE_ACTIVITY: lambda data: (
            f"queued for {data.get('limit')}" + (f" [{data['key']}]" if data.get("key") else "")
        ),
        HistoryType.ACTIVITY_STARTED: lambda data: "started",
        HistoryType.RESCHEDULE_ACTIVITY: lambda data: f"will retry in {data.get('delay_ms', 0) / 1000:.1f} s",
        HistoryType.ACTIVITY_HEARTBEAT: lambda data: (
            "heartbeat" + (f": {json.dumps(data['details'])}" if "details" in data else "")
        ),
        HistoryType.CANCEL_ATTEMPT: lambda data: f"told to stop ({data.get('reason')})",
    }

    def claims(self, entry: Mapping[str, Any]) -> bool:
        return "name" in entry and "map" not in entry

    def problems(
        self, entry: Mapping[str, Any], path: PathOf, known_activities: Collection[str]
    ) -> list[tuple[str, str]]:
        return class_problems(entry, path, known_activities)

    def parse(self, entry: Mapping[str, Any]) -> StepSpec:
        undo = entry.get("compensate")
        return Activity(Undo(undo["name"], undo.get("config", {}))) if undo else ACTIVITY

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        undo = spec.compensate if isinstance(spec, Activity) else None
        return {"compensate": {"name": undo.name, "config": dict(undo.config)}} if undo else {}

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        undo = graph.get("compensate")
        return Activity(Undo(undo["name"], undo.get("config", {}))) if undo else None

    # -- its turn, and each attempt ----------------------------------------------------------

    def start(self, turn: Turn, position: int) -> graph.Verdict:
        next_attempt = self.next_attempt(turn.state, turn.activities, turn.activities[position], turn.now)
        if isinstance(next_attempt, str):
            return graph.Verdict(fail=next_attempt)
        turn.activities[position], commands, entry = next_attempt
        turn.scheduled.append((position, commands, entry))
        return graph.WAIT

    def next_attempt(
        self, state: WorkflowState, activities: Sequence[ActivityState], step: ActivityState, now: datetime
    ) -> tuple[ActivityState, list[Command], HistoryEntry] | str:
        """The step's next attempt as its turn comes: scheduled now, or queued for a slot of
        its concurrency limit, whose claim is made now (``activities``: the steps as the
        decision has them so far, what the limit's key reads); a string: why its key has
        no value (it fails before it runs)."""
        if step.limit is not None and step.claim is None:
            claimed = claims(state, activities, [step])
            if isinstance(claimed, str):
                return claimed
            step = claimed[0]
        return self.again(step, now)

    def again(self, step: ActivityState, now: datetime) -> tuple[ActivityState, list[Command], HistoryEntry]:
        """The step's next attempt, once it has its claim if it has a limit (made when its
        turn first came; a map's items get theirs when the map starts): scheduled now, or
        queued for a slot."""
        claim = step.claim
        if step.limit is None or claim is None:
            return self.schedule(step, now)
        step = replace(
            step, status=ActivityStatus.QUEUED, scheduled_at=now, started_at=None, finished_at=None, heartbeat_at=None
        )
        data: dict[str, Any] = {"attempt": step.attempt + 1, "limit": claim.limit}
        if claim.key:
            data["key"] = claim.key
        return step, [], HistoryEntry(HistoryType.QUEUE_ACTIVITY, step.position, data)

    def outlived(self, step: ActivityState) -> ActivityState:
        # The attempt in flight is the run before's, which that run's end told to stop and
        # whose slot (of a limit) that end gave back if it had not started: marked so
        # (``attempt == attempts_before``: no attempt counts against this run), it holds a
        # slot again only once it is reported started (the stores' hold rule), and if it
        # obeyed the cancel it runs again at once, waiting for a slot like any attempt.
        return replace(step, attempts_before=step.attempt)

    def run(self, step: ActivityState, attempt: int) -> RunActivity | RunChild:
        """The command that sends ``attempt`` of ``step``."""
        return RunActivity(step.position, attempt)

    def schedule(self, step: ActivityState, now: datetime) -> tuple[ActivityState, list[Command], HistoryEntry]:
        """The step's next attempt, scheduled now: the step, its commands, its history entry."""
        attempt = step.attempt + 1
        step = replace(
            step,
            status=ActivityStatus.SCHEDULED,
            attempt=attempt,
            scheduled_at=now,
            started_at=None,
            finished_at=None,
            heartbeat_at=None,
        )
        commands: list[Command] = [self.run(step, attempt)]
        if step.timeouts.schedule_to_start_s:
            commands.append(
                timer(TimerKind.SCHEDULE_TO_START, step.timeouts.schedule_to_start_s, step.position, attempt)
            )
        return step, commands, HistoryEntry(HistoryType.SCHEDULE_ACTIVITY, step.position, {"attempt": attempt})

    def on_started(self, state: WorkflowState, step: ActivityState, event: ActivityStarted) -> Decision | None:
        if step.status is not ActivityStatus.SCHEDULED:
            return None
        step = replace(step, status=ActivityStatus.STARTED, started_at=event.occurred_at)
        fact = HistoryEntry(HistoryType.ACTIVITY_STARTED, event.position, {"attempt": event.attempt})
        commands = started_timers(step, event.attempt, ended=not state.runs(step))
        return Decision(with_activity(state, step), tuple(commands), (fact, HistoryEntry(HistoryType.DO_NOTHING)))

    def on_completed(
        self, state: WorkflowState, step: ActivityState, event: ActivityCompleted, history: list[HistoryEntry]
    ) -> Answer:
        step = replace(
            step,
            output=event.output,
            error=event.error,
            started_at=event.started_at or step.started_at,
            finished_at=event.finished_at or event.occurred_at,
        )
        return self.attempt_ended(state, step, event.outcome, event.occurred_at, history)

    def on_timer(
        self, state: WorkflowState, step: ActivityState, event: TimerFired, history: list[HistoryEntry]
    ) -> Answer:
        if event.kind == TimerKind.RETRY:
            if not state.runs(step) or step.status is not ActivityStatus.WAITING_RETRY:
                return None
            step, commands, entry = self.again(step, event.occurred_at)
            return Decision(with_activity(state, step), tuple(commands), (*history, entry))
        if event.kind == TimerKind.SLOT:
            # Let in by its limit. Stale once the step is no longer queued (the workflow
            # ended, a retry-from-failure reset it): the commit deletes the timer row,
            # which is what gives the slot back.
            if not state.runs(step) or step.status is not ActivityStatus.QUEUED:
                return None
            if state.paused:
                # Nothing starts while paused: the grant's timer row goes with this
                # decision, which gives the slot back; the engines let in no step of a
                # paused workflow, so it waits queued until the resume.
                why = {"reason": "workflow paused: the slot is given back"}
                return Decision(state, (), (*history, HistoryEntry(HistoryType.DO_NOTHING, step.position, why)))
            step, commands, entry = self.schedule(step, event.occurred_at)
            return Decision(with_activity(state, step), tuple(commands), (*history, entry))
        if event.kind not in _ATTEMPT_TIMERS:
            return None
        waiting_for = ActivityStatus.SCHEDULED if event.kind == TimerKind.SCHEDULE_TO_START else ActivityStatus.STARTED
        if step.status is not waiting_for:
            return None
        if event.kind == TimerKind.SCHEDULE_TO_START:
            error = f"no worker started attempt {event.attempt} within {step.timeouts.schedule_to_start_s} s"
        elif event.kind == TimerKind.HEARTBEAT:
            if (again := still_beating(step, event.occurred_at)) is not None:
                why = {"reason": "a heartbeat came in time: the timer is set again"}
                return Decision(state, (again,), (*history, HistoryEntry(HistoryType.DO_NOTHING, step.position, why)))
            error = (
                f"no heartbeat from attempt {event.attempt} for {step.timeouts.heartbeat_s} s "
                "(its worker died or is stuck)"
            )
        else:
            error = f"attempt {event.attempt} did not finish within {step.timeouts.start_to_close_s} s"
        step = replace(step, error=f"{event.kind} timeout: {error}", finished_at=event.occurred_at)
        return self.attempt_ended(
            state, step, Outcome.TEMPORARY_FAILURE, event.occurred_at, history, fired=TimerKind(event.kind)
        )

    def attempt_ended(
        self,
        state: WorkflowState,
        step: ActivityState,
        outcome: Outcome,
        now: datetime,
        history: list[HistoryEntry],
        *,
        fired: TimerKind | None = None,
    ) -> Answer:
        """The current attempt of ``step`` ended with ``outcome``: retry, fail or go on.
        ``fired`` is the timeout timer that ended it, if one did (it needs no cancelling)."""
        commands: list[Command] = [c for c in attempt_timers(step) if c.kind != fired]
        if not state.runs(step):
            # A late result: recorded on the step, but the workflow decides nothing more.
            state = with_activity(state, replace(step, status=_LATE.get(outcome, ActivityStatus.FAILED)))
            history.append(HistoryEntry(HistoryType.DO_NOTHING, step.position, {"reason": f"workflow {state.status}"}))
            return Decision(state, tuple(commands), tuple(history))
        if outcome == Outcome.CANCELLED:
            # Stopped by a cancel meant for the run before (a retry-from-failure came before
            # the attempt obeyed): run it again at once; no attempt so far counts against
            # this run's budget.
            step, run, entry = self.again(replace(step, attempts_before=step.attempt), now)
            history.append(entry)
            return Decision(with_activity(state, step), (*commands, *run), tuple(history))
        attempts_this_run = step.attempt - step.attempts_before
        if outcome == Outcome.SUCCEEDED:
            return Change(replace(step, status=ActivityStatus.SUCCEEDED, error=None), tuple(commands))
        if (
            outcome == Outcome.TEMPORARY_FAILURE
            and attempts_this_run < step.retry.max_attempts
            and self.may_retry(state, step)
        ):
            next_attempt = step.attempt + 1
            delay_ms = retry_delay_ms(state, step)
            commands.append(StartTimer(TimerKind.RETRY, delay_ms, step.position, next_attempt))
            history.append(
                HistoryEntry(
                    HistoryType.RESCHEDULE_ACTIVITY, step.position, {"attempt": next_attempt, "delay_ms": delay_ms}
                )
            )
            return Change(replace(step, status=ActivityStatus.WAITING_RETRY), tuple(commands))
        step = replace(step, status=ActivityStatus.FAILED)
        return Change(step, tuple(commands), failure=required_failure(step, outcome, attempts_this_run))

    # -- heartbeats --------------------------------------------------------------------------

    def on_heartbeat(self, state: WorkflowState, step: ActivityState, event: ActivityHeartbeat) -> Decision:
        """Keep a heartbeat (and its details) on the step and move the heartbeat timer on,
        with no history entry; or tell a stale attempt to stop (that is recorded: it is
        a decision, and a stale attempt beats only until it obeys)."""
        if not self.runs_on_workers:
            return super().on_heartbeat(state, step, event)
        fact = HistoryEntry(HistoryType.ACTIVITY_HEARTBEAT, event.position, {"attempt": event.attempt})
        current = step.attempt == event.attempt and step.status.in_flight
        if not current or not state.runs(step):
            if event.attempt > step.attempt:  # not an attempt of ours: nothing to stop
                return Decision(state, (), (stale(fact), HistoryEntry(HistoryType.DO_NOTHING)))
            reason = f"workflow {state.status}" if current else f"attempt {event.attempt} is not the current one"
            stop = HistoryEntry(
                HistoryType.CANCEL_ATTEMPT, event.position, {"attempt": event.attempt, "reason": reason}
            )
            return Decision(state, (CancelAttempt(event.position, event.attempt),), (stale(fact), stop))
        commands: list[Command] = []
        if step.status is ActivityStatus.SCHEDULED:
            # The heartbeat came before the started report (it is sent late on purpose):
            # it proves the attempt started.
            step = replace(step, status=ActivityStatus.STARTED, started_at=event.occurred_at)
            commands += started_timers(step, event.attempt)
        elif step.timeouts.heartbeat_s:
            commands.append(timer(TimerKind.HEARTBEAT, step.timeouts.heartbeat_s, step.position, event.attempt))
        details = step.heartbeat if event.details is None else event.details
        step = replace(step, heartbeat=details, heartbeat_at=event.occurred_at)
        return Decision(with_activity(state, step), tuple(commands), ())

    # -- the end of the run, and after a restart -----------------------------------------------

    def end_of_run(self, step: ActivityState) -> list[Command]:
        if step.status is ActivityStatus.WAITING_RETRY:
            return [CancelTimer(TimerKind.RETRY, step.position, step.attempt + 1)]
        if step.status is ActivityStatus.QUEUED:
            # A grant not yet handled holds a slot: deleting it gives the slot back.
            return [CancelTimer(TimerKind.SLOT, step.position, step.attempt + 1)]
        return []

    def on_cancel(self, step: ActivityState) -> list[Command]:
        # Advisory: the attempt stops at its next heartbeat.
        return [CancelAttempt(step.position, step.attempt)] if step.status.in_flight else []

    def owed(self, state: WorkflowState, step: ActivityState) -> Owed:
        timeouts = step.timeouts
        if step.status is ActivityStatus.SCHEDULED:
            due = []
            if timeouts.schedule_to_start_s and step.scheduled_at:
                at = step.scheduled_at + timedelta(seconds=timeouts.schedule_to_start_s)
                due.append(DueTimer(TimerKind.SCHEDULE_TO_START, step.position, step.attempt, at))
            return [self.run(step, step.attempt)], due
        if step.status is ActivityStatus.STARTED:
            due = []
            if timeouts.start_to_close_s and step.started_at:
                at = step.started_at + timedelta(seconds=timeouts.start_to_close_s)
                due.append(DueTimer(TimerKind.START_TO_CLOSE, step.position, step.attempt, at))
            # No heartbeat timer: the attempt is sent again, and its copy's first heartbeat
            # sets it. One from the last heartbeat before the restart would fail the
            # copy the moment it is sent.
            return [self.run(step, step.attempt)], due
        if step.status is ActivityStatus.WAITING_RETRY and step.finished_at:
            at = step.finished_at + timedelta(milliseconds=retry_delay_ms(state, step))
            return [], [DueTimer(TimerKind.RETRY, step.position, step.attempt + 1, at)]
        return [], []


def class_problems(entry: Mapping[str, Any], path: PathOf, known_activities: Collection[str]) -> list[tuple[str, str]]:
    """An entry's ``name`` that names no discovered ``BaseActivity`` subclass."""
    if entry["name"] in known_activities:
        return []
    return [
        (
            path("name"),
            f"unknown activity {entry['name']!r}: no BaseActivity subclass of that name "
            "in the activities package or FLOW_ACTIVITY_PACKAGES",
        )
    ]


def retry_delay_ms(state: WorkflowState, step: ActivityState) -> int:
    """Delay before the attempt after ``step``'s current one (which failed).

    Derived from the workflow, step and attempt alone, so that recovery after a restart
    finds the same due time the decision chose.
    """
    attempts_this_run = step.attempt - step.attempts_before
    next_attempt = step.attempt + 1
    return step.retry.delay_ms(attempts_this_run, seed=f"{state.id}:{step.position}:{next_attempt}")


def attempt_timers(step: ActivityState) -> list[CancelTimer]:
    """Cancel the timeout timers of ``step``'s current attempt, which has ended."""
    commands: list[CancelTimer] = []
    if step.timeouts.schedule_to_start_s and step.status is ActivityStatus.SCHEDULED:
        commands.append(CancelTimer(TimerKind.SCHEDULE_TO_START, step.position, step.attempt))
    if step.timeouts.start_to_close_s and step.status is ActivityStatus.STARTED:
        commands.append(CancelTimer(TimerKind.START_TO_CLOSE, step.position, step.attempt))
    if step.timeouts.heartbeat_s and step.status is ActivityStatus.STARTED:
        commands.append(CancelTimer(TimerKind.HEARTBEAT, step.position, step.attempt))
    return commands


def started_timers(step: ActivityState, attempt: int, *, ended: bool = False) -> list[Command]:
    """The timers of an attempt that just started: the schedule-to-start one is done
    with; its start-to-close and heartbeat timers begin (unless its workflow ``ended``)."""
    commands: list[Command] = []
    timeouts = step.timeouts
    if timeouts.schedule_to_start_s:
        commands.append(CancelTimer(TimerKind.SCHEDULE_TO_START, step.position, attempt))
    if ended:
        return commands
    if timeouts.start_to_close_s:
        commands.append(timer(TimerKind.START_TO_CLOSE, timeouts.start_to_close_s, step.position, attempt))
    if timeouts.heartbeat_s:
        commands.append(timer(TimerKind.HEARTBEAT, timeouts.heartbeat_s, step.position, attempt))
    return commands


def still_beating(step: ActivityState, now: datetime) -> Command | None:
    """The heartbeat timer again, for what is left, if a heartbeat came within
    ``heartbeat_s`` of ``now`` (the timer fired late, racing it); None: timed out."""
    limit = step.timeouts.heartbeat_s
    if not limit or step.heartbeat_at is None:
        return None
    left = step.heartbeat_at + timedelta(seconds=limit) - now
    if left <= timedelta(0):
        return None
    return timer(TimerKind.HEARTBEAT, left.total_seconds(), step.position, step.attempt)


ACTIVITY_KIND = ActivityKind()

__all__ = [
    "ACTIVITY_KIND",
    "ActivityKind",
    "attempt_timers",
    "class_problems",
    "retry_delay_ms",
    "started_timers",
]
