"""The engine: partitions held by lease, one actor per live workflow, group commit.

:class:`Engine` only assembles the parts, each with one role, and starts and stops
them in order:

Only engine processes build an :class:`Engine` (``dramatiq flow.actors`` consuming
``<prefix>.engine``, and the embedded ``flow run``/``flow up``); the starting side
uses :class:`flow.service.workflows.WorkflowService`. How the parts fit, and why, is in
docs/design.md:

- :mod:`flow.engine.leases` — which partitions this engine holds (and their epochs);
- :mod:`flow.engine.holding` — what a partition acquired, released or lost sets going;
- :mod:`flow.engine.inbound` — deliveries and fired timers turned into events for actors;
- :mod:`flow.engine.transport` — consuming those partitions' queues, publishing with
  batched confirms;
- :mod:`actors.registry`, :mod:`actors.workflow` — one actor per live workflow,
  holding its state between events;
- :mod:`flow.engine.collaborators` — what a workflow actor is given (never the engine);
- :mod:`flow.engine.transitions` — ``decide`` folded over an actor's events, and what the
  transition owes (:mod:`flow.engine.planning`);
- :mod:`flow.engine.committer` — one transaction for the transitions of many actors,
  fenced by the partitions' epochs;
- :mod:`flow.engine.after_commit` — acknowledging, arming and publishing after a commit,
  handing refused transitions back;
- :mod:`flow.engine.settling` — items no commit will settle (handed back, rejected,
  dropped), and failing a workflow the engine cannot handle;
- :mod:`flow.engine.outbox`, :mod:`flow.engine.unstarted` — re-sending what is owed and
  overdue, starting workflows whose start message was lost;
- :mod:`flow.engine.timers` — durable timers fired by the partition's owner;
- :mod:`flow.engine.admission` — letting in what waits for a concurrency limit;
- :mod:`flow.engine.spans` — the workflows' spans, while tracing is on;
- :mod:`flow.engine.retention` — deleting the held partitions' workflows past retention;
- :mod:`flow.engine.schedules` — firing the held partitions' cron schedules;
- :mod:`flow.engine.batches` — driving the held partitions' bulk operations;
- :mod:`flow.engine.events` — closing the held partitions' event windows;
- :mod:`flow.engine.recovery` — sending what :mod:`flow.core.recovery` says a workflow is
  owed after a restart on the in-process broker.

Per event: the delivery goes to the workflow's actor; the actor decides and submits
its transition; the committer commits it with others, then — and only then —
acknowledges the delivery, publishes what the transition owes and arms its timers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from actors.registry import WorkflowActors
from actors.workflow import WorkflowActor
from flow.core.partitions import partition_queue
from flow.engine.admission import Admission
from flow.engine.after_commit import AfterCommit
from flow.engine.batches import BatchControls, BatchRunner
from flow.engine.collaborators import ActorCollaborators
from flow.engine.committer import GroupCommitter
from flow.engine.events import EventStarter, EventTicker
from flow.engine.holding import Holding
from flow.engine.inbound import Inbound
from flow.engine.leases import LeaseKeeper
from flow.engine.outbox import OutboxSender
from flow.engine.recovery import Recovery
from flow.engine.retention import RetentionSweeper
from flow.engine.schedules import ScheduleStarter, ScheduleTicker
from flow.engine.settling import Settler
from flow.engine.spans import WorkflowSpans
from flow.engine.timers import TimerWheel
from flow.engine.transitions import Transitions
from flow.engine.transport import Transport
from flow.engine.unstarted import UnstartedStarter
from flow.faults import FaultInjector
from flow.observability.metrics import EngineMetrics
from flow.persistence.batches import BatchTable, Fence
from flow.persistence.engine_store import EngineStore
from flow.persistence.events import EventTable
from flow.persistence.leases import new_engine_id
from flow.persistence.limits import LimitTable
from flow.persistence.schedules import ScheduleTable
from flow.settings import Settings

if TYPE_CHECKING:
    from flow.core.callback_tokens import CallbackTokens

logger = logging.getLogger(__name__)


class Engine:
    """One engine process's parts, assembled (see the module docstring)."""

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
        batch_controls: BatchControls | None = None,
        event_starter: EventStarter | None = None,
        callback_tokens: CallbackTokens | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.partitions = partitions
        self.engine_id = engine_id or new_engine_id()
        self.metrics = metrics or EngineMetrics()
        self.prefix = settings.queue_prefix
        self.spans = WorkflowSpans()
        self.actors = WorkflowActors(
            lambda entry: WorkflowActor.start(entry, self.collaborators),
            max_live=settings.max_live_actors,
            idle_s=settings.actor_idle_s,
        )
        # The lease loop calls back into the parts built below it.
        self.leases = LeaseKeeper(
            store.leases,
            engine_id=self.engine_id,
            partitions=partitions,
            lease_s=settings.partition_lease_s,
            on_acquired=lambda partition, epoch: self.holding.acquired(partition, epoch),
            on_lost=lambda partition: self.holding.lost(partition),
            on_release=lambda partition, within_s: self.holding.released(partition, within_s),
            broker_ok=lambda: self.holding.broker_ok(),
            stats=lambda: self.after_commit.refused_commits,
        )
        self.inbound = Inbound(
            transport, self.actors.deliver, held=self.leases.held, prefix=self.prefix, partitions=partitions
        )
        self.timers = TimerWheel(store, held=self.leases.held_partitions, fire=self.inbound.fire)
        self.settler = Settler(store, transport, self.timers, self.spans, engine_id=self.engine_id)
        self.outbox = OutboxSender(
            store,
            transport,
            held=self.leases.held_partitions,
            grace_s=settings.outbox_grace_s,
            poll_s=settings.outbox_poll_s,
            each_pass=UnstartedStarter(
                store,
                self.actors.deliver,
                partitions=partitions,
                grace_s=settings.outbox_grace_s,
                ready=self.ready_in_partition,
            ),
        )
        self.admission = Admission(
            LimitTable(store.database),
            self.timers,
            held=self.leases.held_partitions,
            poll_s=settings.limits_poll_s,
            metrics=self.metrics,
        )
        self.after_commit = AfterCommit(
            transport,
            self.timers,
            self.outbox,
            self.settler,
            self.metrics,
            faults=faults,
            then=self.admission.committed,
        )
        self.committer = GroupCommitter(
            store,
            owner=self.engine_id,
            on_committed=self.after_commit.committed,
            on_refused=self.after_commit.refused,
            max_batch=settings.commit_max_batch,
        )
        self.transitions = Transitions(
            settings, self.spans, partitions=partitions, tokens=callback_tokens, at_once=store.postgres
        )
        #: Re-derive what unfinished workflows are owed when a partition is acquired:
        #: for the in-process broker, which loses every message with its process.
        self.recovery = (
            Recovery(
                store,
                transport,
                self.settler,
                deliver=self.actors.deliver,
                routes=self.transitions.routes,
                epoch_of=self.epoch_of,
            )
            if recover
            else None
        )
        self.holding = Holding(
            transport,
            self.actors,
            self.timers,
            self.outbox,
            self.settler,
            self.spans,
            prefix=self.prefix,
            lease_s=settings.partition_lease_s,
            recovery=self.recovery,
        )
        self.collaborators = ActorCollaborators(
            actors=self.actors,
            store=store,
            transitions=self.transitions,
            committer=self.committer,
            settler=self.settler,
            epoch_of=self.epoch_of,
            payload_limit=settings.max_payload_bytes,
            inbox_limit=settings.max_inbox_bytes,
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
        self.batches = batch_controls and BatchRunner(
            BatchTable(store.database, query_timeout_s=settings.query_timeout_s),
            batch_controls,
            held=self.leases.held_partitions,
            fence_of=self.fence_of,
            rate_per_s=settings.batch_rate,
        )
        self.events = event_starter and EventTicker(
            EventTable(store.database),
            held=self.leases.held_partitions,
            starter=event_starter,
            dedup_s=settings.event_dedup_s,
        )

    def __repr__(self) -> str:
        return f"<Engine {self.engine_id} partitions={sorted(self.leases.held)} live_actors={len(self.actors)}>"

    @property
    def refused_commits(self) -> int:
        """Transitions refused by the fence (0 in normal operation)."""
        return self.after_commit.refused_commits

    def start(self) -> None:
        self.transport.start(self.inbound.on_delivery, lambda: None)
        wait_ready = getattr(self.transport, "wait_ready", None)
        if wait_ready is not None:
            wait_ready(10)
        self.committer.start()
        self.timers.start()
        self.admission.start()
        self.actors.start_sweeper()
        self.leases.start()
        self.outbox.start()
        self.retention.start()
        if self.schedules:
            self.schedules.start()
        if self.batches:
            self.batches.start()
        if self.events:
            self.events.start()
        logger.info("engine %s started", self.engine_id)

    def stop(self) -> None:
        """Hand every partition back (after the transitions in hand commit), then stop."""
        self.retention.stop()
        if self.schedules:
            self.schedules.stop()
        if self.batches:
            self.batches.stop()
        if self.events:
            self.events.stop()
        self.leases.stop(release=True)
        self.outbox.stop()
        self.admission.stop()
        self.timers.stop()
        self.committer.stop()
        self.outbox.close()
        self.transport.stop()
        self.actors.stop_all()
        self.spans.let_go()
        logger.info("engine %s stopped", self.engine_id)

    def ready_in_partition(self, partition: int) -> int | None:
        """Messages ready in ``partition``'s queue, as the broker counts them (None: unknown)."""
        ready_in = getattr(self.transport, "ready_in", None)
        return None if ready_in is None else ready_in(partition_queue(self.prefix, partition))

    def epoch_of(self, partition: int) -> int | None:
        """The epoch under which this engine holds ``partition`` (``None``: not held)."""
        return self.leases.held.get(partition)

    def fence_of(self, partition: int) -> Fence | None:
        """This engine's hold on ``partition``, to fence a write with (``None``: not held)."""
        epoch = self.epoch_of(partition)
        return None if epoch is None else Fence(partition, self.engine_id, epoch)


__all__ = ["Engine"]
