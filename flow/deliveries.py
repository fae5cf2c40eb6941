"""Caps the deliveries of one activity attempt (invariant 6).

A worker killed mid-attempt (SIGKILL, OOM, ``os._exit``) never acknowledges its
message, so RabbitMQ delivers it again, flagged ``redelivered``; Dramatiq's Retries
middleware does not count that, so an activity that kills its worker every time
would loop forever. This middleware counts redeliveries per message in a small
file per message (workers have no database), and once a message has been
delivered ``max_deliveries`` times it is acknowledged without running, and the
attempt is reported to the engine as a failure, which retries it per its policy.

The count lives on the worker's machine: if the redeliveries land on different
machines, each counts its own, so the bound is ``max_deliveries`` per machine.
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


class DeliveryLimit(dramatiq.Middleware):
    """Skips and reports an attempt whose message was delivered ``max_deliveries`` times."""

    def __init__(
        self,
        *,
        actor_name: str,
        max_deliveries: int,
        report: Callable[[dict[str, Any], str], None],
        counter: DeliveryCounter | None = None,
    ) -> None:
        self.actor_name = actor_name
        self.max_deliveries = max_deliveries
        self.report = report
        self.counter = counter or DeliveryCounter()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.actor_name != self.actor_name or not getattr(message, "redelivered", False):
            return
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
        self.report(message.kwargs, error)
        self.counter.forget(message.message_id)
        raise SkipMessage(error)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if message.actor_name == self.actor_name and getattr(message, "redelivered", False):
            self.counter.forget(message.message_id)
