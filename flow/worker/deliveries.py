"""Caps the deliveries of one activity attempt (docs/design.md, invariant 6).

A worker killed mid-attempt (SIGKILL, OOM, ``os._exit``) never acknowledges its
message, so RabbitMQ delivers it again, flagged ``redelivered``; Dramatiq's Retries
middleware does not count that, so an activity that kills its worker every time
would loop forever. This middleware counts redeliveries per message in a small
file per message (workers have no database), and once a message has been
delivered ``max_deliveries`` times it is acknowledged without running, and the
attempt is reported to the engine as a failure, which retries it per its policy.

The count lives on the worker's machine: if the redeliveries land on different
machines, each counts its own, so the bound is ``max_deliveries`` per machine.

A worker that stops gracefully also returns messages flagged ``redelivered``: those
it had received but not started (its prefetch, and whatever its consumer took in
while its threads finished their last messages — Dramatiq stops the consumers last,
and its RabbitMQ "requeue" is closing the channel). They never ran, so they must
neither count nor be reported as a worker's death: the stopping worker writes down
their ids, and their next delivery on this machine is not counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.middleware import SkipMessage

from flow.errors import InvalidInput
from flow.wire.attempts import AttemptIdentity

logger = logging.getLogger(__name__)


class DeliveryCounter:
    """Counts deliveries per message id, durably enough to survive a SIGKILL."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory or Path(tempfile.gettempdir()) / "libero-flow-deliveries")
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, message_id: str) -> Path:
        return self.directory / "".join(c for c in message_id if c.isalnum() or c == "-")

    def increment(self, message_id: str) -> int:
        """Record one more delivery; return the total recorded so far."""
        # One byte per delivery, appended: concurrent workers on one machine cannot
        # lose an increment, and the size is the count.
        fd = os.open(self._path(message_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b".")
            os.fsync(fd)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def forget(self, message_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(message_id).unlink()

    def returned_unstarted(self, message_id: str) -> None:
        """Record that a stopping worker gave this message back without running it."""
        self._path(message_id).with_suffix(".unstarted").touch()

    def mark_beating(self, message_id: str) -> None:
        """Record that the attempt of this message sent a heartbeat (and has a heartbeat
        timeout): if its worker dies, the engine notices and retries it from its last
        heartbeat, so its redelivery need not run."""
        self._path(message_id).with_suffix(".beating").touch()

    def take_beating(self, message_id: str) -> bool:
        """Whether the message's attempt was heartbeating (and forget that it was)."""
        try:
            self._path(message_id).with_suffix(".beating").unlink()
        except FileNotFoundError:
            return False
        return True

    def take_unstarted(self, message_id: str) -> bool:
        """Whether the message was given back unstarted (and forget that it was)."""
        try:
            self._path(message_id).with_suffix(".unstarted").unlink()
        except FileNotFoundError:
            return False
        return True


class DeliveryLimit(dramatiq.Middleware):
    """Skips and reports an attempt whose message was delivered ``max_deliveries`` times.

    ``report(attempt, error)`` tells the engine that the attempt ``attempt`` failed.
    """

    def __init__(
        self,
        *,
        actor_name: str,
        max_deliveries: int,
        report: Callable[[AttemptIdentity, str], None],
        counter: DeliveryCounter | None = None,
    ) -> None:
        self.actor_name = actor_name
        self.max_deliveries = max_deliveries
        self.report = report
        self.counter = counter or DeliveryCounter()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.actor_name != self.actor_name or not getattr(message, "redelivered", False):
            return
        if self.counter.take_unstarted(message.message_id):
            logger.info(
                "activity message %s is back from a worker that stopped before starting it; not counted",
                message.message_id,
            )
            return
        if self.counter.take_beating(message.message_id):
            # Its worker died while it was heartbeating: the engine's heartbeat timer
            # fails it within heartbeat_s and the retry resumes from its last heartbeat,
            # where running this copy again would start over from an older one.
            logger.warning(
                "activity message %s was heartbeating when its worker died; not run again: "
                "its heartbeat timeout retries it from its last heartbeat",
                message.message_id,
            )
            raise SkipMessage("heartbeating attempt whose worker died")
        # The first delivery is not flagged, so this is delivery number count + 1.
        deliveries = self.counter.increment(message.message_id) + 1
        if deliveries <= self.max_deliveries:
            logger.warning(
                "activity message %s delivered again (delivery %d of at most %d): a worker probably died running it",
                message.message_id,
                deliveries,
                self.max_deliveries,
            )
            return
        error = (
            f"the attempt was delivered {deliveries - 1} times and never finished: "
            "the worker running it died each time (killed, out of memory or os._exit)"
        )
        logger.error("giving up on activity message %s: %s", message.message_id, error)
        try:
            attempt = AttemptIdentity.read(message.kwargs)
        except InvalidInput as e:
            # It names no attempt (the task dead-letters such a message at once): nothing to report.
            logger.error("activity message %s names no attempt (%s); nothing to report", message.message_id, e)
        else:
            self.report(attempt, error)
        self.counter.forget(message.message_id)
        raise SkipMessage(error)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if message.actor_name == self.actor_name and getattr(message, "redelivered", False):
            self.counter.forget(message.message_id)

    def before_consumer_thread_shutdown(self, broker: dramatiq.Broker, thread: Any) -> None:
        """Write down the activity messages this stopping worker holds but never started.

        Runs in the consumer thread once it has stopped consuming, after the worker
        threads have finished (Dramatiq stops them first), and before Dramatiq drops
        its in-memory queue and closes the channel, which returns these messages to
        RabbitMQ flagged ``redelivered``.
        """
        work_queue = getattr(thread, "work_queue", None)
        if work_queue is None:
            return
        with work_queue.mutex:
            held = [item.message for item in work_queue.queue]
        for message in held:
            # Only brokers that redeliver (RabbitMQ's messages carry the flag).
            if (
                message.actor_name == self.actor_name
                and message.queue_name == thread.queue_name
                and hasattr(message, "redelivered")
            ):
                self.counter.returned_unstarted(message.message_id)
