"""Partition leases: which engine holds which partitions, renewed by a heartbeat.

Every ``lease_s / 3`` an engine (1) heartbeats its row in ``engines``, (2) renews
the leases it holds — a lease it finds taken (its renewal came too late) is lost at
once, (3) works out its fair share of the partitions among the live engines
(:func:`fair_share`) and (4) releases what it holds beyond it, or takes free or
expired partitions up to it. Taking a partition bumps its epoch; every commit is
fenced by that epoch, so an engine that lost a lease can never commit for it again
(docs/design.md, "Partitions, leases and fencing").

An engine that cannot renew (database unreachable) stops handling its partitions
once its leases would have expired, since another engine may take them over; one
whose broker connection is down stops renewing, so that partitions it cannot
serve move to an engine that can.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flow.clock import utcnow
from flow.loops import BackgroundLoop
from flow.persistence.database import deadline
from flow.persistence.leases import LeaseTable, engine_host_pid

logger = logging.getLogger(__name__)

#: How long the releases at shutdown wait, all of them together, for the broker's confirms
#: of what was sent for their partitions (in a round, the leases' validity bounds it instead).
RELEASE_PATIENCE_S = 5.0


def fair_share(partitions: int, live: list[str], me: str) -> int:
    """How many partitions ``me`` should hold: an equal share, the remainder going to the
    first engines by id (so every engine computes the same split)."""
    engines = sorted(set(live) | {me})
    base, extra = divmod(partitions, len(engines))
    return base + (1 if engines.index(me) < extra else 0)


@dataclass(frozen=True)
class LeasePlan:
    """What one lease round does: give back ``release``, try to take ``acquire`` more."""

    release: tuple[int, ...] = ()
    acquire: int = 0


def plan(partitions: int, live: list[str], me: str, held: set[int]) -> LeasePlan:
    """Release the highest-numbered partitions beyond the fair share, or ask for the missing ones."""
    target = fair_share(partitions, live, me)
    if len(held) > target:
        return LeasePlan(release=tuple(sorted(held)[target:]))
    return LeasePlan(acquire=target - len(held))


def dead_local_owners(owners: set[str], me: str) -> set[str]:
    """Owners that were processes of this host that no longer run (their leases can go
    at once rather than at expiry: a dead process commits nothing)."""
    host = socket.gethostname()
    dead = set()
    for owner in owners:
        if owner == me:
            continue
        try:
            owner_host, pid = engine_host_pid(owner)
        except ValueError:
            continue
        if owner_host != host:
            continue
        if pid == os.getpid() or not os.path.exists(f"/proc/{pid}"):
            dead.add(owner)
    return dead


class LeaseKeeper:
    """The lease thread of one engine (see the module docstring)."""

    def __init__(
        self,
        store: LeaseTable,
        *,
        engine_id: str,
        partitions: int,
        lease_s: float,
        on_acquired: Callable[[int, int], None],
        on_lost: Callable[[int], None],
        on_release: Callable[[int, float], None],
        broker_ok: Callable[[], bool] = lambda: True,
        stats: Callable[[], int] = lambda: 0,
        release_patience_s: float = RELEASE_PATIENCE_S,
    ) -> None:
        self.store = store
        self.engine_id = engine_id
        self.partitions = partitions
        self.lease_s = lease_s
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.on_release = on_release
        self.broker_ok = broker_ok
        self.stats = stats
        self.release_patience_s = release_patience_s
        #: partition -> epoch, for every partition this engine may handle.
        self.held: dict[int, int] = {}
        self._valid_until = 0.0
        #: When the round in hand must have ended (its statements' deadline).
        self._round_ends = 0.0
        self._lock = threading.RLock()
        self._loop = BackgroundLoop("flow-leases", self._round_or_lose, every_s=lease_s / 3)
        self._started_at = utcnow()
        self.rounds = 0

    def held_partitions(self) -> set[int]:
        return set(self.held)

    def start(self) -> None:
        try:
            self.round()  # take partitions before the first event arrives, if the database answers
        except Exception as e:
            logger.warning("first lease round failed (%s); will try again", e)
        self._loop.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing; with ``release``, hand every partition back at once.

        The releases share one wait of ``release_patience_s`` for the broker's confirms: given
        it each, an engine stopped while RabbitMQ blocked its publishes (no confirm comes)
        waited it once per partition, 16 x 5 s = 80 s. What is left unconfirmed stays in the
        outbox, committed, and the partition's next owner sends it."""
        self._loop.stop(self.lease_s)
        patient_until = time.monotonic() + self.release_patience_s
        with self._lock:
            for partition in sorted(self.held):
                epoch = self.held.pop(partition)
                try:
                    self.on_release(partition, max(0.0, patient_until - time.monotonic()))
                    if release:
                        self.store.release(self.engine_id, partition, epoch)
                except Exception as e:
                    logger.warning("could not release partition %d (%s); it expires on its own", partition, e)
            if release:
                try:
                    self.store.forget_engine(self.engine_id)
                except Exception:
                    pass

    def _round_or_lose(self) -> None:
        """A round of the lease loop; a failed one loses the leases once they would have expired."""
        try:
            self.round()
        except Exception as e:
            logger.warning("lease round failed (%s)", e)
            if self.held and time.monotonic() > self._valid_until:
                logger.error(
                    "could not renew partition leases for %.1f s: stopping work on %d partitions",
                    self.lease_s,
                    len(self.held),
                )
                self._lose(set(self.held))

    def round(self) -> None:
        """One heartbeat: renew, rebalance, take over; then record what this engine holds.

        The lease table's statements must end before the leases they renew would have
        expired (a round stuck on a silent database would otherwise hold them past it,
        and the loss below would come after another engine took over): they run under a
        :func:`~flow.persistence.database.deadline`. What a partition acquired sets going
        runs after, outside it (cut short, it would leave a partition held and unserved).

        An engine cut off from its broker neither renews nor heartbeats: still counted
        live, it would keep the others' fair shares at half, and the partitions it lets
        lapse would stay without an owner until its broker came back.
        """
        with self._lock:
            self.rounds += 1
            if not self.broker_ok():
                logger.warning("broker unreachable: not renewing %d partition leases", len(self.held))
                if time.monotonic() > self._valid_until:
                    self._lose(set(self.held))
                return
            got: dict[int, int] = {}
            budget_s = max(self.lease_s / 3, self._valid_until - time.monotonic())
            self._round_ends = time.monotonic() + budget_s
            try:
                with deadline(budget_s):
                    try:
                        got = self._rebalance()
                    finally:
                        self.store.heartbeat(
                            self.engine_id,
                            partitions_held=len(self.held) + len(got),
                            refused_commits=self.stats(),
                            started_at=self._started_at,
                        )
            finally:
                for partition, epoch in sorted(got.items()):
                    self.held[partition] = epoch
                    logger.info("acquired partition %d (epoch %d)", partition, epoch)
                    self.on_acquired(partition, epoch)

    def _rebalance(self) -> dict[int, int]:
        """Renew, release beyond the fair share; return the partitions taken (``partition -> epoch``)."""
        started = time.monotonic()
        still = self.store.renew(self.engine_id, dict(self.held), lease_s=self.lease_s)
        self._lose(set(self.held) - set(still))
        self._valid_until = started + self.lease_s * 0.9
        live = self.store.live_engines(within_s=self.lease_s)
        decided = plan(self.partitions, live, self.engine_id, set(self.held))
        # What a release waits for (the broker's confirms of what was sent for the partition,
        # so that its next owner does not send it again) only spares duplicates: all releases
        # of a round share at most half of what the round has left before its deadline (and
        # at most 0.45 of the lease), so the round's statements still end in time. Given 5 s
        # each, one release outlasted a 3 s lease on a busy machine (the soak): the other
        # engine took this one's partitions while it still held them here.
        patient_until = min(started + self.lease_s * 0.45, started + (self._round_ends - started) / 2)
        for partition in decided.release:
            epoch = self.held.pop(partition)
            logger.info("releasing partition %d to rebalance (%d engines live)", partition, len(live))
            self.on_release(partition, max(0.0, patient_until - time.monotonic()))
            self.store.release(self.engine_id, partition, epoch)
        if not decided.acquire:
            return {}
        owners = {o for o, _, _ in self.store.lease_owners().values() if o}
        return self.store.acquire(
            self.engine_id,
            decided.acquire,
            lease_s=self.lease_s,
            dead_owners=dead_local_owners(owners, self.engine_id),
        )

    def _lose(self, partitions: set[int]) -> None:
        for partition in sorted(partitions):
            if self.held.pop(partition, None) is not None:
                logger.warning("lost the lease of partition %d", partition)
                self.on_lost(partition)
