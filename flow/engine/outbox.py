"""The outbox: every message a committed transition owes, stored in that transition.

(The owed message itself is :class:`flow.wire.outgoing.Outgoing`.)

Nothing is lost between commit and send (docs/design.md, invariant 2). A
transition's messages are written to the ``outbox`` table in the same transaction
as the new state. After the commit they are published with broker confirms and
their rows deleted in small batches (:class:`Acks`). Whatever is still there past
its ``send_after`` — the process died before sending, or the publish failed — is
sent again by the engine that holds the row's partition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from flow.clock import utcnow
from flow.loops import BackgroundLoop
from flow.wire.outgoing import Outgoing

if TYPE_CHECKING:
    from flow.engine.transport import Transport
    from flow.persistence.engine_store import EngineStore

logger = logging.getLogger(__name__)


class Acks:
    """Deletes the outbox rows of published messages in batches, off the hot path.

    If the process dies before a batch is flushed, those messages are sent once
    more: every handler is idempotent, so that costs a duplicate delivery, never a
    wrong state.
    """

    def __init__(self, delete: Callable[[list[str]], None], *, every_s: float = 0.2) -> None:
        self._delete = delete
        self._every_s = every_s
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        # Started by the first acknowledgement: a process that never publishes runs no thread.
        self._loop = BackgroundLoop("flow-outbox-acks", self.flush, every_s=every_s)

    def add(self, ids: list[str]) -> None:
        if not ids:
            return
        with self._lock:
            self._pending.extend(ids)
            if not self._closed:
                self._loop.start()

    def flush(self) -> None:
        with self._lock:
            ids, self._pending = self._pending, []
        if not ids:
            return
        try:
            self._delete(ids)
        except Exception:
            # Rows left behind are re-sent later; that is a duplicate, not a loss.
            logger.warning("could not delete %d sent outbox rows; they will be sent again", len(ids), exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._loop.stop(5)
        self.flush()


class OutboxSender:
    """Publishes what committed transitions owe and sends again what is overdue.

    Confirmed messages have their rows deleted (:class:`Acks`); unconfirmed ones stay
    owed and are sent again once the broker is back. Every ``poll_s`` the partitions
    this engine holds are swept for rows past their ``send_after``, and ``each_pass``
    runs (the engine starts workflows whose start message was lost there).
    """

    def __init__(
        self,
        store: EngineStore,
        transport: Transport,
        *,
        held: Callable[[], set[int]],
        grace_s: float,
        poll_s: float,
        each_pass: Callable[[set[int]], None] = lambda held: None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.held = held
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.each_pass = each_pass
        self.acks = Acks(store.delete_outbox)
        self._failed: set[str] = set()
        #: Messages not confirmed since the broker last confirmed one (said once, then counted).
        self._unconfirmed = 0
        self._lock = threading.Lock()
        self._loop = BackgroundLoop("flow-outbox", self._pass, every_s=poll_s)
        self._stopping = self._loop.stopping

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop(10)

    def close(self) -> None:
        self.flush()
        self.acks.close()

    def publish(self, owed: list[Outgoing]) -> None:
        if owed:
            self.transport.publish(owed, self._published)

    def send_all(self, partition: int) -> None:
        """Send every row of ``partition`` (just taken over: its previous owner may
        have committed them and died before sending)."""
        self.publish(self.store.claim_outbox([partition], now=utcnow(), hold_s=self.grace_s, every=True, limit=100_000))

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait for the confirms of what was published, then delete their rows."""
        flush = getattr(self.transport, "flush", None)
        if flush is not None:
            flush(timeout_s)
        self.acks.flush()

    def _published(self, confirmed: list[str], failed: list[str]) -> None:
        self.acks.add(confirmed)
        if failed:
            with self._lock:
                self._failed.update(failed)
                first, self._unconfirmed = not self._unconfirmed, self._unconfirmed + len(failed)
            # A warning, once until the broker confirms again: nothing is lost (the rows stay,
            # committed), and a blocked or lost broker fails every batch while it lasts.
            (logger.warning if first else logger.debug)(
                "%d message(s) not confirmed by RabbitMQ (%s); they stay in the outbox and will be published again %s",
                len(failed),
                self._why_unconfirmed(),
                f"once it takes publishes, by the outbox's next pass (every {self.poll_s:g} s)",
            )
        elif confirmed:
            with self._lock:
                owed, self._unconfirmed = self._unconfirmed, 0
            if owed:
                logger.info("RabbitMQ confirms again; %d message(s) it did not confirm meanwhile are sent again", owed)

    def _why_unconfirmed(self) -> str:
        if getattr(self.transport, "blocked", False):
            return "it blocks publishers: a memory or disk alarm"
        if not self.transport.connected:
            return "the connection is lost"
        return "refused or returned"

    def _pass(self) -> None:
        with self._lock:
            again, self._failed = list(self._failed), set()
        if again:
            if self.transport.connected:
                self.publish(self.store.outbox_by_id(again))
            else:
                with self._lock:
                    self._failed.update(again)
        held = self.held()
        self.each_pass(held)
        while held and not self._stopping.is_set():
            claimed = self.store.claim_outbox(held, now=utcnow(), hold_s=self.grace_s)
            for outgoing in claimed:
                logger.info("sending owed %s for workflow %s", outgoing.actor_name, outgoing.workflow_id)
            self.publish(claimed)
            if len(claimed) < 500:
                break
