"""What a transition owes, from its decisions: the messages to send and the timers to set
or delete. Pure: the engine calls it with the clock's reading and its settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flow.core.callback_tokens import CallbackTokens
from flow.core.commands import CancelAttempt, CancelChild, CancelTimer, Command, RunActivity, RunChild, StartTimer
from flow.core.pools import pool_queue
from flow.core.state import ActivityState, WorkflowState
from flow.engine.children import cancel_message, report_message, start_message
from flow.persistence.records import TimerRow, timer_id
from flow.wire.attempts import AttemptRequest, CancelNotice, Outputs
from flow.wire.outgoing import Outgoing


@dataclass(frozen=True)
class Routes:
    """Where one partition's messages go: the same for every transition of the partition,
    so the engine builds it once per partition from its settings.

    ``reply_to`` is the partition's queue (where results come back); an activity's
    attempt goes to ``activity_queue`` (its default pool), or to its pool's queue beside
    it when its step names one (:meth:`attempt_queue`), a child workflow's start to ``engine_queue``;
    ``queue_of`` gives another workflow's partition queue (a child's parent, a parent's
    child); a cancel of an attempt is a notice to every worker on ``cancel_exchange`` (a
    fanout exchange: the transports know it by its actor). ``tokens`` adds the callback
    tokens of the waits that have not ended to the outputs an attempt is handed.
    """

    partition: int
    reply_to: str
    activity_queue: str
    engine_queue: str = ""
    cancel_exchange: str = ""
    queue_of: Callable[[str], str] = str
    tokens: CallbackTokens | None = None

    def __repr__(self) -> str:
        return f"<Routes partition={self.partition} reply_to={self.reply_to}>"

    def attempt_queue(self, step: ActivityState) -> str:
        """Where the attempts of ``step`` go: its worker pool's queue."""
        return pool_queue(self.activity_queue, step.queue)

    def outputs(self, state: WorkflowState) -> Outputs:
        """What an attempt of ``state`` is handed of the workflow's earlier outputs."""
        return Outputs(state, self.tokens.pending(state) if self.tokens else ())


@dataclass
class Plan:
    """What one transition owes: messages (the outbox), timers to set and to delete."""

    owed: list[Outgoing] = field(default_factory=list)
    timers_set: list[TimerRow] = field(default_factory=list)
    timers_deleted: list[str] = field(default_factory=list)


def plan(
    after: WorkflowState,
    commands: Iterable[tuple[Command, datetime]],
    routes: Routes,
    *,
    send_after: datetime,
    consumed_timers: Iterable[str] = (),
    ended: Iterable[WorkflowState] = (),
) -> Plan:
    """The messages and timers of ``commands`` (each with the time of the event that
    caused it), for a workflow now in state ``after``, sent along ``routes`` no sooner
    than ``send_after`` by the outbox.

    A timer set and then cancelled within the same transition is only deleted;
    ``consumed_timers`` (timers that fired and are handled here) are deleted too. Each
    state of ``ended`` (the workflow as a decision of this transition ended it) owes
    its parent the result, if it is a child (:mod:`flow.engine.children`).
    """
    timers: dict[str, TimerRow | None] = dict.fromkeys(consumed_timers)
    owed: list[Outgoing] = []
    outputs: Outputs | None = None
    partition = routes.partition
    for command, occurred_at in commands:
        if isinstance(command, RunActivity | RunChild):
            outputs = outputs or routes.outputs(after)
            owed.append(run_message(after, command, routes, send_after=send_after, outputs=outputs))
        elif isinstance(command, CancelChild):
            owed.append(
                cancel_message(
                    after, command.position, queue_of=routes.queue_of, partition=partition, send_after=send_after
                )
            )
        elif isinstance(command, CancelAttempt):
            notice = CancelNotice(workflow_id=after.id, position=command.position, attempt=command.attempt)
            owed.append(Outgoing.of(notice, routes.cancel_exchange, partition=partition, send_after=send_after))
        elif isinstance(command, StartTimer):
            tid = timer_id(after.id, command.kind, command.position, command.attempt)
            due = occurred_at + timedelta(milliseconds=command.delay_ms)
            timers[tid] = TimerRow(tid, after.id, partition, command.kind, command.position, command.attempt, due)
        elif isinstance(command, CancelTimer):
            timers[timer_id(after.id, command.kind, command.position, command.attempt)] = None
        else:  # pragma: no cover - a new command without a plan is a bug
            raise TypeError(f"nothing planned for {command!r}")
    for state in ended:
        report = report_message(state, queue_of=routes.queue_of, partition=partition, send_after=send_after)
        if report is not None:
            owed.append(report)
    return Plan(
        owed,
        [row for row in timers.values() if row is not None],
        [tid for tid, row in timers.items() if row is None],
    )


def run_message(
    state: WorkflowState,
    run: RunActivity | RunChild,
    routes: Routes,
    *,
    send_after: datetime,
    outputs: Outputs | None = None,
) -> Outgoing:
    """What running an attempt sends: the attempt to the workers, or a child's start."""
    if isinstance(run, RunChild):
        return start_message(
            state,
            run.position,
            run.attempt,
            reply_to=routes.reply_to,
            engine_queue=routes.engine_queue,
            partition=routes.partition,
            send_after=send_after,
        )
    request = AttemptRequest.of(state, run.position, run.attempt, reply_to=routes.reply_to, outputs=outputs)
    queue = routes.attempt_queue(state.activities[run.position])
    return Outgoing.of(request, queue, partition=routes.partition, send_after=send_after, priority=state.priority)
