"""The requests a person makes about one workflow (cancel, signal, pause, resume, retry),
as the doors that answer them make them: read the workflow, refuse what its state does
not allow (:mod:`flow.service.checks`, raised as a :class:`~flow.errors.WorkflowConflict`),
then send the request to the engine (:class:`~flow.service.senders.Senders`). Each
returns the stored workflow as it was when the request was sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flow.core.kinds import wait
from flow.core.state import WorkflowState
from flow.errors import IdempotencyConflict, InboxFull, RetryRefused, WorkflowConflict
from flow.persistence.mapping import StoredWorkflow
from flow.persistence.store import Store
from flow.service import checks
from flow.service.senders import Senders, signal_id_of
from flow.wire import messages


class Controls:
    """Checked cancel, signal, pause, resume and retry."""

    def __init__(self, store: Store, senders: Senders) -> None:
        self.store = store
        self.senders = senders

    def __repr__(self) -> str:
        return f"<Controls {self.store!r}>"

    def cancel(self, workflow_id: str, reason: str | None = None) -> StoredWorkflow:
        """Cancel a running workflow; :class:`~flow.errors.WorkflowEnded` once it ended."""
        row = self._allowed(workflow_id, checks.cancel_refusal)
        self.senders.cancel(workflow_id, reason)
        return row

    def signal(
        self, workflow_id: str, name: str, payload: Any, *, idempotency_key: str | None = None
    ) -> tuple[StoredWorkflow, str]:
        """Send a running workflow a signal; ``(row, signal id)``."""
        row = self._allowed(workflow_id, checks.signal_refusal)
        self._check_inbox(row, name, payload, idempotency_key)
        return row, self.senders.signal(workflow_id, name, payload, idempotency_key=idempotency_key)

    def _check_inbox(self, row: StoredWorkflow, name: str, payload: Any, idempotency_key: str | None) -> None:
        """:class:`IdempotencyConflict` when the key came with another payload already;
        :class:`InboxFull` when no step waits for the signal and keeping it would pass
        ``FLOW_MAX_INBOX_BYTES`` (the engine holds both rules too, for sends that race)."""
        workflow_id = row.state.id
        signal_id = signal_id_of(workflow_id, name, idempotency_key)
        size, digest = wait.payload_digest(payload)
        kept, seen, earlier = self.store.inbox_of(workflow_id, signal_id)
        if seen and earlier is not None and earlier != digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {idempotency_key!r} sent signal {name!r} to workflow {workflow_id} "
                "with another payload already"
            )
        full = None if seen else wait.inbox_full(self.senders.settings.max_inbox_bytes, kept, size)
        if full is not None and wait.waiting_for(row.state, name) is None:
            raise InboxFull(f"workflow {workflow_id}: {full}")

    def pause(self, workflow_id: str) -> StoredWorkflow:
        """Pause a running workflow that is not paused."""
        row = self._allowed(workflow_id, checks.pause_refusal)
        self.senders.pause(workflow_id)
        return row

    def resume(self, workflow_id: str) -> StoredWorkflow:
        """Let a paused workflow go on."""
        row = self._allowed(workflow_id, checks.resume_refusal)
        self.senders.resume(workflow_id)
        return row

    def retry(self, workflow_id: str, *, of_run: int | None = None) -> StoredWorkflow:
        """Run a Failed or Cancelled workflow (not a child: its parent's retry does) again.

        ``of_run``: only if it is still on that run; the message then names the run it
        starts, so the engine ignores a second send of it (a batch replaying a page)."""
        row = self._allowed(workflow_id, checks.retry_refusal)
        if of_run is not None and row.state.run != of_run:
            raise RetryRefused(workflow_id, f"workflow {workflow_id} is on run {row.state.run}, not {of_run}")
        self.senders.retry(workflow_id, run=None if of_run is None else of_run + 1)
        return row

    def _allowed(self, workflow_id: str, refusal: Callable[[WorkflowState], WorkflowConflict | None]) -> StoredWorkflow:
        """The stored workflow, unless ``refusal`` refuses the request for it."""
        row = self.store.get(workflow_id)
        error = refusal(row.state)
        if error is not None:
            raise error
        return row


#: The engine messages that are the requests of :class:`Controls`.
CONTROL_MESSAGES = frozenset(
    {
        messages.CANCEL_WORKFLOW,
        messages.SIGNAL_WORKFLOW,
        messages.PAUSE_WORKFLOW,
        messages.RESUME_WORKFLOW,
        messages.RETRY_WORKFLOW,
    }
)


def refusal_of(actor_name: str, state: WorkflowState, kwargs: dict[str, Any]) -> WorkflowConflict | None:
    """The refusal of an engine message named ``actor_name`` about ``state``, as the
    checked request of the same name would raise it; ``None`` for any other message."""
    if actor_name == messages.RETRY_WORKFLOW:
        return checks.retry_refusal(state, run=kwargs.get("run"))
    predicate = {
        messages.CANCEL_WORKFLOW: checks.cancel_refusal,
        messages.SIGNAL_WORKFLOW: checks.signal_refusal,
        messages.PAUSE_WORKFLOW: checks.pause_refusal,
        messages.RESUME_WORKFLOW: checks.resume_refusal,
    }.get(actor_name)
    return predicate(state) if predicate is not None else None
