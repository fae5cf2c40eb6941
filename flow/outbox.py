"""The outbox: every message a committed transition owes, stored in that transition.

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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One owed message. Its ``id`` is also the Dramatiq message id, so a re-send is
    recognisably the same message."""

    queue_name: str
    actor_name: str
    kwargs: dict[str, Any]
    #: The partition of the workflow it is about: its engine re-sends it if need be.
    partition: int
    #: Past this time the partition's engine (re)sends it.
    send_after: datetime
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def message(self) -> dramatiq.Message[Any]:
        return dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=self.actor_name,
            args=(),
            kwargs=self.kwargs,
            options={},
            message_id=self.id,
        )

    @property
    def workflow_id(self) -> str | None:
        return self.kwargs.get("workflow_id")


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
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, ids: list[str]) -> None:
        if not ids:
            return
        with self._lock:
            self._pending.extend(ids)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="flow-outbox-acks", daemon=True)
                self._thread.start()

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

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._every_s)
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
