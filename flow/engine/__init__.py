"""The engine: partitions held by lease, one actor per live workflow, group commit.

Only engine processes build an :class:`Engine` (``dramatiq flow.actors`` consuming
``<prefix>.engine``, and the embedded ``flow run``/``flow up``); the starting side
uses :class:`flow.service.workflows.WorkflowService`. How the parts fit, and why, is in
docs/design.md:

- :mod:`flow.engine.leases` — which partitions this engine holds (and their epochs);
- :mod:`flow.engine.transport` — consuming those partitions' queues, publishing with
  batched confirms;
- :mod:`actors.registry`, :mod:`actors.workflow` — one actor per live workflow,
  holding its state between events;
- :mod:`flow.engine.committer` — one transaction for the transitions of many actors,
  fenced by the partitions' epochs;
- :mod:`flow.engine.timers` — durable timers fired by the partition's owner;
- :mod:`flow.engine.spans` — the workflows' spans, while tracing is on;
- :mod:`flow.engine.retention` — deleting the held partitions' workflows past retention;
- :mod:`flow.engine.schedules` — firing the held partitions' cron schedules;
- :mod:`flow.core.recovery` — what a workflow is owed after a restart on the in-process broker.

Per event: the delivery goes to the workflow's actor; the actor decides and submits
its transition; the committer commits it with others, then — and only then —
acknowledges the delivery, publishes what the transition owes and arms its timers.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from actors.registry import WorkflowActors
from actors.workflow import Item, WorkflowActor, fold
from flow.clock import utcnow
from flow.core.decide import Decision
from flow.core.events import TimerFired, WorkflowStarted
from flow.core.partitions import partition_of, partition_queue, queue_partition
from flow.core.recovery import owed
from flow.core.state import WorkflowState
from flow.core.vocabulary import TimerKind
from flow.engine import inbound
from flow.engine.committer import GroupCommitter
from flow.engine.leases import LeaseKeeper
from flow.engine.outbox import OutboxSender
from flow.engine.planning import plan, run_message
from flow.engine.retention import RetentionSweeper
from flow.engine.schedules import ScheduleStarter, ScheduleTicker
from flow.engine.spans import WorkflowSpans
from flow.engine.timers import TimerWheel
from flow.engine.transport import Delivery, Transport
from flow.faults import FaultInjector
from flow.observability import tracing
from flow.observability.metrics import EngineMetrics
from flow.persistence.engine_store import EngineStore
from flow.persistence.leases import new_engine_id
from flow.persistence.mapping import inbox_changes
from flow.persistence.records import TimerRow, Transition, Unreadable, timer_id
from flow.persistence.schedules import ScheduleTable
from flow.settings import Settings
from flow.wire.attempts import Outputs

if TYPE_CHECKING:
    from actors.workflow import WorkflowActor as _Actor
    from flow.core.callback_tokens import CallbackTokens

logger = logging.getLogger(__name__)


class Engine:
    """One engine process's parts (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: EngineStore,
        transport: Transport,
        *,
        partitions: int,
        engine_id: str | None = None,
        metrics: EngineMetrics | None = None,
        recover: bool = False,
        faults: FaultInjector | None = None,
        schedule_starter: ScheduleStarter | None = None,
        callback_tokens: CallbackTokens | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.partitions = partitions
        self.engine_id = engine_id or new_engine_id()
        self.metrics = metrics or EngineMetrics()
        #: Re-derive what unfinished workflows are owed when a partition is acquired:
        #: for the in-process broker, which loses every message with its process.
        self.recover = recover
        self.faults = faults
        self.callback_tokens = callback_tokens  # the waits' tokens in the outputs attempts see
        self.prefix = settings.queue_prefix
        self.refused_commits = 0
        self.spans = WorkflowSpans()
        self.actors = WorkflowActors(
            lambda entry: WorkflowActor.start(entry, self),
            max_live=settings.max_live_actors,
            idle_s=settings.actor_idle_s,
        )
        self.committer = GroupCommitter(
            store,
            owner=self.engine_id,
            on_committed=self._committed,
            on_refused=self._refused,
            max_batch=settings.commit_max_batch,
        )
        self.leases = LeaseKeeper(
            store.leases,
            engine_id=self.engine_id,
            partitions=partitions,
            lease_s=settings.partition_lease_s,
            on_acquired=self._acquired,
            on_lost=self._lost,
            on_release=self._release,
            broker_ok=self._broker_ok,
            stats=lambda: self.refused_commits,
        )
        self.timers = TimerWheel(store, held=self.leases.held_partitions, fire=self._fire)
        self.outbox = OutboxSender(
            store,
            transport,
            held=self.leases.held_partitions,
            grace_s=settings.outbox_grace_s,
            poll_s=settings.outbox_poll_s,
            each_pass=self._start_unstarted,
        )
        self.retention = RetentionSweeper(
            store,
            held=self.leases.held_partitions,
            retention_days=settings.retention_days,
            every_s=settings.retention_interval_s,
        )
        self.schedules = schedule_starter and ScheduleTicker(
            ScheduleTable(store.database), held=self.leases.held_partitions, starter=schedule_starter
        )

    def __repr__(self) -> str:
        return f"<Engine {self.engine_id} partitions={sorted(self.leases.held)} live_actors={len(self.actors)}>"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.transport.start(self._on_delivery, lambda: None)
        wait_ready = getattr(self.transport, "wait_ready", None)
        if wait_ready is not None:
            wait_ready(10)
        self.committer.start()
        self.timers.start()
        self.actors.start_sweeper()
        self.leases.start()
        self.outbox.start()
        self.retention.start()
        if self.schedules:
            self.schedules.start()
        logger.info("engine %s started", self.engine_id)

    def stop(self) -> None:
        """Hand every partition back (after the transitions in hand commit), then stop."""
        self.retention.stop()
        if self.schedules:
            self.schedules.stop()
        self.leases.stop(release=True)
        self.outbox.stop()
        self.timers.stop()
        self.committer.stop()
        self.outbox.close()
        self.transport.stop()
        self.actors.stop_all()
        self.spans.let_go()
        logger.info("engine %s stopped", self.engine_id)

    def epoch_of(self, partition: int) -> int | None:
        return self.leases.held.get(partition)

    def _broker_ok(self) -> bool:
        since = getattr(self.transport, "disconnected_since", None)
        return since is None or time.monotonic() - since < self.settings.partition_lease_s

    # -- partitions coming and going (the lease thread) ---------------------------------------

    def _acquired(self, partition: int, epoch: int) -> None:
        if self.recover:
            self._recover(partition)
        else:
            self.outbox.send_all(partition)  # what the previous owner committed but may not have sent
        self.timers.load({partition})
        self.transport.subscribe(partition_queue(self.prefix, partition))

    def _release(self, partition: int) -> None:
        self._let_go(partition)
        self.outbox.flush()

    def _lost(self, partition: int) -> None:
        self._let_go(partition)

    def _let_go(self, partition: int) -> None:
        self.transport.unsubscribe(partition_queue(self.prefix, partition))
        self.give_back(self.actors.evict(partition))
        self.timers.drop(partition)
        self.spans.let_go(partition)

    def _recover(self, partition: int) -> None:
        """The in-process broker lost every message: send what each workflow is owed."""
        self.store.delete_partition_outbox(partition)
        now = utcnow()
        count = 0
        for state in self.store.unfinished(partition):
            count += 1
            try:
                if isinstance(state, Unreadable):
                    raise ValueError(state.reason)
                self._resume(state, partition, now)
            except Exception as e:
                # One workflow the engine cannot handle must not stop it (docs/design.md, invariant 10).
                workflow_id = state.workflow_id if isinstance(state, Unreadable) else state.id
                reason = f"the engine cannot resume this workflow: {type(e).__name__}: {e}"
                logger.error("workflow %s: %s", workflow_id, reason)
                self.fail_workflow(workflow_id, self.leases.held.get(partition, -1), reason)
        if count:
            logger.warning("resumed %d unfinished workflows of partition %d", count, partition)

    def _resume(self, state: WorkflowState, partition: int, now: datetime) -> None:
        due = owed(state)
        if due.start:
            self.actors.deliver(state.id, partition, Item(WorkflowStarted(occurred_at=now)))
            return
        outputs = Outputs(state, self.callback_tokens.pending(state) if self.callback_tokens else ())
        reply_to = partition_queue(self.prefix, partition)
        runs = [
            run_message(
                state,
                r,
                reply_to=reply_to,
                outputs=outputs,
                partition=partition,
                send_after=now,
                activity_queue=self.settings.activity_queue,
                engine_queue=self.settings.engine_queue,
            )
            for r in due.runs
        ]
        self.transport.publish(runs, lambda confirmed, failed: None)
        rows = [
            TimerRow(
                timer_id(state.id, t.kind, t.position, t.attempt),
                state.id,
                partition,
                t.kind,
                t.position,
                t.attempt,
                t.due_at,
            )
            for t in due.timers
        ]
        if rows:
            self.store.upsert_timers(rows)

    # -- events in --------------------------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        """A message from a partition queue (the transport's I/O thread: no blocking here)."""
        partition = queue_partition(self.prefix, delivery.queue)
        if partition is None or partition not in self.leases.held:
            self.transport.settle([delivery], ack=False, requeue=True)
            return
        try:
            workflow_id, event = inbound.decode(delivery.body, now=utcnow())
            if partition_of(workflow_id, self.partitions) != partition:
                raise inbound.PoisonMessage(
                    f"workflow {workflow_id} belongs to partition {partition_of(workflow_id, self.partitions)}"
                )
        except inbound.PoisonMessage as e:
            logger.error("dead-lettering a message from %s: %s (body %.200r)", delivery.queue, e, delivery.body)
            self.transport.settle([delivery], ack=False, requeue=False)
            return
        self.actors.deliver(workflow_id, partition, Item(event, delivery))

    def _fire(self, row: TimerRow) -> None:
        event = TimerFired(TimerKind(row.kind), row.position, row.attempt, occurred_at=utcnow())
        self.actors.deliver(row.workflow_id, row.partition, Item(event, timer_id=row.id))

    # -- deciding (workflow actors' threads) -------------------------------------------------------

    def transition(
        self, actor: _Actor, items: list[Item], epoch: int
    ) -> tuple[Transition, list[tuple[Item, Decision]]]:
        """Fold ``decide`` over ``items`` from the actor's state; the transition to commit."""
        before = actor.state
        assert before is not None
        after, decided = fold(before, items)
        partition = actor.entry.partition
        if tracing.ENABLED:
            after = self.spans.before_commit(before, after, partition=partition)
        now = utcnow()
        history = [(entry, item.event.occurred_at) for item, d in decided for entry in d.history]
        planned = plan(
            after,
            ((command, item.event.occurred_at) for item, d in decided for command in d.commands),
            partition=partition,
            reply_to=partition_queue(self.prefix, partition),
            activity_queue=self.settings.activity_queue,
            send_after=now + timedelta(seconds=self.settings.outbox_grace_s),
            consumed_timers=[item.timer_id for item in items if item.timer_id],
            queue_of=lambda wid: partition_queue(self.prefix, partition_of(wid, self.partitions)),
            ended=[d.state for _, d in decided if any(entry.type.ends_workflow for entry in d.history)],
            engine_queue=self.settings.engine_queue,
            cancel_exchange=self.settings.cancel_exchange,
            tokens=self.callback_tokens,
        )
        changed = (
            [b for a, b in zip(before.activities, after.activities, strict=False) if a is not b]
            if before.activities is not after.activities
            else []
        )
        added = list(after.activities[len(before.activities) :])  # a map's items
        signals_added, signals_taken = inbox_changes(before.inbox, after.inbox)
        transition = Transition(
            workflow_id=after.id,
            partition=partition,
            epoch=epoch,
            version=actor.version,
            after=after,
            changed=changed,
            history=history,
            owed=planned.owed,
            timers_set=planned.timers_set,
            timers_deleted=planned.timers_deleted,
            updated_at=now,
            deliveries=[item.delivery for item in items if item.delivery is not None],
            fired_timers=[item.timer_id for item in items if item.timer_id],
            added=added,
            signals_added=signals_added,
            signals_taken=signals_taken,
        )
        return transition, decided

    def after_decisions(self, workflow_id: str, decided: list[tuple[Item, Decision]]) -> None:
        if tracing.ENABLED and decided:
            self.spans.after_commit(decided[-1][1].state)
        for _, decision in decided:
            for entry in decision.history:
                if entry.type.ends_workflow:
                    logger.info(
                        "%s %s: %s",
                        decision.state.name,
                        entry.type,
                        decision.state.error or "ok",
                        extra={"workflow_id": workflow_id},
                    )

    # -- after the commit (the committer's thread) ----------------------------------------------

    def _committed(self, transitions: list[Transition]) -> None:
        self.transport.settle([d for t in transitions for d in t.deliveries], ack=True)
        # A fired timer that its handling set again (a heartbeat timer racing a
        # heartbeat) is forgotten as fired, then armed anew.
        self.timers.forget([tid for t in transitions for tid in (*t.timers_deleted, *t.fired_timers)])
        self.timers.arm([row for t in transitions for row in t.timers_set])
        owed_messages = [o for t in transitions for o in t.owed]
        if owed_messages and self.faults is not None:
            self.faults.maybe("after-commit")
        self.outbox.publish(owed_messages)
        for t in transitions:
            self.metrics.observe_decision((utcnow() - t.updated_at).total_seconds())

    def _refused(self, refused: list[tuple[Transition, str]]) -> None:
        deleted = [t for t, why in refused if why == "deleted"]
        for transition in deleted:
            # A late message for a workflow deleted under its actor: nothing is wrong.
            self._drop(transition.deliveries, transition.fired_timers, f"workflow {transition.workflow_id} was deleted")
        refused = [(t, why) for t, why in refused if why != "deleted"]
        self.refused_commits += len(refused)
        self.metrics.observe_refused(len(refused))
        for transition, why in refused:
            logger.warning("commit of workflow %s refused (%s)", transition.workflow_id, why)
            self.transport.settle(transition.deliveries, ack=False, requeue=True)
            self.timers.unfired(transition.fired_timers)

    # -- settling items that will not be committed ------------------------------------------------

    def give_back(self, items: list[Item]) -> None:
        """Hand items back to be tried again (deliveries requeued, timers fire again)."""
        self.transport.settle([i.delivery for i in items if i.delivery is not None], ack=False, requeue=True)
        self.timers.unfired([i.timer_id for i in items if i.timer_id])

    def reject(self, items: list[Item], reason: str) -> None:
        """Items that can never be handled: dead-letter the deliveries, drop the timers."""
        deliveries = [i.delivery for i in items if i.delivery is not None]
        if deliveries:
            logger.error("dead-lettering %d message(s): %s", len(deliveries), reason)
        self.transport.settle(deliveries, ack=False, requeue=False)
        self._forget_timers([i.timer_id for i in items if i.timer_id])

    def drop(self, items: list[Item], reason: str) -> None:
        """Items for a workflow that does not exist (deleted, or never created): there is
        nothing to decide on, so the deliveries are acknowledged, not dead-lettered (a late
        result for a deleted workflow is normal), and the timers forgotten."""
        self._drop(
            [i.delivery for i in items if i.delivery is not None], [i.timer_id for i in items if i.timer_id], reason
        )

    def _drop(self, deliveries: list[Delivery], timer_ids: list[str], reason: str) -> None:
        if deliveries or timer_ids:
            logger.info("dropping %d message(s) and %d timer(s): %s", len(deliveries), len(timer_ids), reason)
        self.transport.settle(deliveries, ack=True)
        self._forget_timers(timer_ids)

    def _forget_timers(self, timer_ids: list[str]) -> None:
        if timer_ids:
            self.timers.forget(timer_ids)
            try:
                self.store.delete_timers(timer_ids)
            except Exception as e:
                logger.warning("could not delete timers %s: %s", timer_ids, e)

    def fail_workflow(self, workflow_id: str, epoch: int, reason: str) -> None:
        try:
            if self.store.fail_unreadable(workflow_id, epoch=epoch, owner=self.engine_id, reason=reason):
                self.spans.failed(workflow_id, reason)
        except Exception as e:
            logger.error("could not mark workflow %s failed: %s", workflow_id, e)

    def _start_unstarted(self, held: set[int]) -> None:
        """Start workflows whose start message never arrived (its publish was lost)."""
        now = utcnow()
        grace = timedelta(seconds=self.settings.outbox_grace_s)
        for workflow_id in self.store.unstarted(held, created_before=now - grace):
            partition = partition_of(workflow_id, self.partitions)
            if partition in held:
                logger.info("starting workflow %s, whose start message never arrived", workflow_id)
                self.actors.deliver(workflow_id, partition, Item(WorkflowStarted(occurred_at=now)))


__all__ = ["Engine"]
