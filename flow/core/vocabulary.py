"""Every closed vocabulary of Libero Flow, one ``StrEnum`` each: the one home of its words.

The values are what the database stores and what travels in messages and the API, so
they never change (``tests/unit/test_vocabulary.py`` pins them); a ``StrEnum`` member
equals, hashes and serialises as its value, so a row or a message read back as a plain
string compares equal to the member. Lists that other modules need (the decisions,
the endings, the outcomes a message may carry) are derived here, never re-listed.

Pure: no imports beyond the standard library, so that the CLI can use it cheaply.
"""

from __future__ import annotations

from enum import Enum, StrEnum


class WorkflowStatus(StrEnum):
    """Where a workflow instance is (the ``status`` of ``workflows`` and of the API)."""

    IN_PROGRESS = "In Progress"
    #: The run failed (or was cancelled with ``compensate_on_cancel``): the undos of the
    #: steps that succeeded, then the failure handler, run (:mod:`flow.core.saga`); it
    #: ends ``Failed`` or ``Cancelled`` after them. Not ended: it holds its limit's slot.
    COMPENSATING = "Compensating"
    FINISHED = "Finished"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def ended(self) -> bool:
        return self not in (WorkflowStatus.IN_PROGRESS, WorkflowStatus.COMPENSATING)

    @property
    def open(self) -> bool:
        """Its run goes on: the definition's steps are scheduled (In Progress only)."""
        return self is WorkflowStatus.IN_PROGRESS


class ActivityStatus(StrEnum):
    """Where one activity of a workflow instance is (the ``status`` of ``activities``)."""

    #: Not scheduled yet: waits for the workflow to start or for earlier activities.
    PENDING = "Pending"
    #: Its turn came, but it waits for a slot of its concurrency limit
    #: (:mod:`flow.core.limits`): no attempt is out yet.
    QUEUED = "Queued"
    #: A run message was sent for the current attempt; no worker has reported yet.
    SCHEDULED = "Scheduled"
    #: A worker reported that it started the current attempt.
    STARTED = "Started"
    #: A ``map`` whose items are running: the items are attempted, not the activity
    #: itself, so it owes no message of its own (not :attr:`in_flight`).
    RUNNING = "Running"
    #: A sleep waiting for its time, or a step waiting for a signal: a timer or a
    #: signal ends it, no message is owed.
    WAITING = "Waiting"
    #: The current attempt failed; the next one waits for its retry timer.
    WAITING_RETRY = "Waiting Retry"
    SUCCEEDED = "Succeeded"
    #: Failed permanently: attempts exhausted or ``PERMANENT_FAILURE``.
    FAILED = "Failed"
    #: Never ran: the workflow failed first, its ``when`` was false, or its
    #: dependencies ended so that its ``trigger`` can never hold (``skip_reason`` says).
    SKIPPED = "Skipped"
    #: Never ran (or will not run again) because the workflow was cancelled.
    CANCELLED = "Cancelled"

    @property
    def in_flight(self) -> bool:
        """An attempt was sent to the workers and has not ended."""
        return self in _IN_FLIGHT

    @property
    def ended(self) -> bool:
        return self in _ENDED


_IN_FLIGHT = frozenset({ActivityStatus.SCHEDULED, ActivityStatus.STARTED})
_ENDED = frozenset({ActivityStatus.SUCCEEDED, ActivityStatus.FAILED, ActivityStatus.SKIPPED, ActivityStatus.CANCELLED})


class Outcome(StrEnum):
    """How an attempt ended: what ``BaseActivity.do_activity`` returns, what a worker
    reports (an exception counts as a temporary failure)."""

    SUCCEEDED = "SUCCEEDED"
    #: Tried again per the activity's retry policy.
    TEMPORARY_FAILURE = "TEMPORARY_FAILURE"
    #: Never retried.
    PERMANENT_FAILURE = "PERMANENT_FAILURE"
    #: The attempt stopped because the engine told it to (its workflow was cancelled,
    #: or the attempt was no longer the current one): ``self.heartbeat()`` raised.
    CANCELLED = "CANCELLED"


class TimerKind(StrEnum):
    """What a timer is for (the ``kind`` of ``timers``, part of a timer's id)."""

    #: Run the next attempt of an activity (its ``attempt`` is that next attempt).
    RETRY = "retry"
    #: No worker has started the attempt yet: it may have timed out.
    SCHEDULE_TO_START = "schedule-to-start"
    #: The attempt is still running: it may have timed out.
    START_TO_CLOSE = "start-to-close"
    #: The workflow's run (``attempt`` is the run number) may have timed out.
    WORKFLOW = "workflow"
    #: A sleep step's time has come (``attempt``: the step's, as for an activity).
    SLEEP = "sleep"
    #: A wait for a signal may have timed out (``attempt``: the step's).
    WAIT = "wait"
    #: The attempt's worker has not sent a heartbeat for ``heartbeat_s``: it may be dead.
    HEARTBEAT = "heartbeat"
    #: A queued step was let in by its concurrency limit (:mod:`flow.core.limits`): set by
    #: the admitting engine, not by a decision; due at once. With no position: a queued
    #: workflow's run (its ``attempt``) was let in by the workflow's limit.
    SLOT = "slot"
    #: A queued workflow arrived while its key was full, and its workflow limit's strategy
    #: is ``cancel_newest`` (:mod:`flow.core.workflow_limit`): set by the admitting engine,
    #: no position, ``attempt`` the run; due at once. Its decision cancels the workflow.
    LIMIT_CANCEL = "limit-cancel"


class Trigger(StrEnum):
    """When an activity with ``depends_on`` runs (see :mod:`flow.core.graph`)."""

    #: Once every dependency succeeded (or failed while not required); skipped if one was skipped.
    ALL_SUCCEEDED = "all_succeeded"
    #: Once every dependency ended, whatever the outcome: the join after a branch.
    ALL_DONE = "all_done"
    #: As soon as one dependency succeeded; skipped if all ended without one.
    ONE_SUCCEEDED = "one_succeeded"


class Role(Enum):
    """What a history entry is: a fact about an incoming event, or a decision."""

    FACT = "fact"
    DECISION = "decision"
    #: A decision that ends the workflow (it finished, failed or was cancelled).
    ENDING = "ending"


class HistoryType(StrEnum):
    """One line of a workflow's history (the ``type`` of ``events``, shown by the API).

    Each event leaves one *fact* (what arrived, recorded even when it is stale) and
    :func:`flow.core.decide.decide` adds at least one *decision* (``do-nothing``
    included), with one exception: a heartbeat of the current attempt leaves no entry
    (its last one is kept on the activity, as in Temporal), so that the history grows
    with what happened, not with how long an activity ran. Each type is declared with
    its :class:`Role`, so adding a type is one line here; :attr:`is_decision` and
    :attr:`ends_workflow` follow from it.
    """

    role: Role

    def __new__(cls, value: str, role: Role) -> HistoryType:
        member = str.__new__(cls, value)
        member._value_ = value
        member.role = role
        return member

    # -- decisions
    START_WORKFLOW = "start-workflow", Role.DECISION
    SCHEDULE_ACTIVITY = "schedule-activity", Role.DECISION
    #: Its turn came; it waits for a slot of its concurrency limit.
    QUEUE_ACTIVITY = "queue-activity", Role.DECISION
    RESCHEDULE_ACTIVITY = "reschedule-activity", Role.DECISION
    #: The run waits for a slot of the workflow's concurrency limit (no step is scheduled).
    QUEUE_WORKFLOW = "queue-workflow", Role.DECISION
    #: The run was let in by its workflow concurrency limit: its steps start now.
    ADMIT_WORKFLOW = "admit-workflow", Role.DECISION
    SKIP_ACTIVITY = "skip-activity", Role.DECISION
    #: An activity failed before it ran: its ``when`` could not be evaluated.
    FAIL_ACTIVITY = "fail-activity", Role.DECISION
    RETRY_WORKFLOW = "retry-workflow", Role.DECISION
    #: A rerun from a step: it and what depends on it were reset (``reset``: their ids).
    RERUN_WORKFLOW = "rerun-workflow", Role.DECISION
    #: A ``map`` activity's turn came: its items were listed (or resumed, after a retry).
    START_MAP = "start-map", Role.DECISION
    #: Every item of a ``map`` succeeded, or one failed permanently.
    END_MAP = "end-map", Role.DECISION
    #: A sleep's turn came: it waits for its timer (``until`` says when it wakes).
    START_SLEEP = "start-sleep", Role.DECISION
    #: A wait's turn came and no signal of its name was kept: it waits for one.
    START_WAIT = "start-wait", Role.DECISION
    #: A wait ended with a signal (received now, or kept from before it waited).
    END_WAIT = "end-wait", Role.DECISION
    #: A signal no step waits for yet: kept in the inbox for the step that will.
    KEEP_SIGNAL = "keep-signal", Role.DECISION
    #: Paused: nothing new is scheduled; what runs finishes and is recorded.
    PAUSE_WORKFLOW = "pause-workflow", Role.DECISION
    RESUME_WORKFLOW = "resume-workflow", Role.DECISION
    #: Tell an attempt still running that its result no longer matters (its workflow
    #: was cancelled or it is not the current attempt): its next heartbeat raises.
    CANCEL_ATTEMPT = "cancel-attempt", Role.DECISION
    DO_NOTHING = "do-nothing", Role.DECISION
    #: The run failed (or was cancelled): the undos of what succeeded run, latest first.
    START_COMPENSATION = "start-compensation", Role.DECISION
    #: The undos ended: every one succeeded ("done"), or one failed and stopped the chain.
    END_COMPENSATION = "end-compensation", Role.DECISION
    #: The failure handler (the definition's ``on_failure``) runs with the failure as input.
    START_FAILURE_HANDLER = "start-failure-handler", Role.DECISION
    WORKFLOW_FINISHED = "workflow-finished", Role.ENDING
    WORKFLOW_FAILURE = "workflow-failure", Role.ENDING
    WORKFLOW_CANCELLED = "workflow-cancelled", Role.ENDING
    # -- facts
    ACTIVITY_STARTED = "activity-started", Role.FACT
    ACTIVITY_RESULT = "activity-result", Role.FACT
    #: A heartbeat of an attempt that is not the current one (or of an ended workflow):
    #: a current attempt's heartbeats are kept on the activity, not in the history.
    ACTIVITY_HEARTBEAT = "activity-heartbeat", Role.FACT
    TIMER_FIRED = "timer-fired", Role.FACT
    CANCEL_REQUESTED = "cancel-requested", Role.FACT
    RETRY_REQUESTED = "retry-requested", Role.FACT
    #: Someone asked for a rerun (``from``: the step, ``by``: who).
    RERUN_REQUESTED = "rerun-requested", Role.FACT
    SIGNAL_RECEIVED = "signal-received", Role.FACT
    PAUSE_REQUESTED = "pause-requested", Role.FACT
    RESUME_REQUESTED = "resume-requested", Role.FACT

    @property
    def is_decision(self) -> bool:
        return self.role is not Role.FACT

    @property
    def ends_workflow(self) -> bool:
        return self.role is Role.ENDING


#: Statuses of a workflow that has not ended (what the engines load, limits count, retention keeps).
UNENDED = tuple(s.value for s in WorkflowStatus if not s.ended)
#: History types that are decisions; the rest are facts about the incoming event.
DECISIONS = frozenset(t for t in HistoryType if t.is_decision)
#: History types that record an incoming event.
FACTS = frozenset(t for t in HistoryType if not t.is_decision)
#: Decisions that end the workflow.
ENDINGS = frozenset(t for t in HistoryType if t.ends_workflow)

__all__ = [
    "DECISIONS",
    "ENDINGS",
    "FACTS",
    "ActivityStatus",
    "HistoryType",
    "Outcome",
    "Role",
    "TimerKind",
    "Trigger",
    "UNENDED",
    "WorkflowStatus",
]
