"""Bulk operations, the starting side: create, show, list and cancel batches (the API's
calls), and what the engine driving a batch asks of each workflow — whether it still
qualifies, and its control, sent through the same checked controls the API's own
cancel and retry use (:class:`~flow.service.controls.Controls`). docs/design.md,
"Bulk operations".

A control sent for a batch is idempotent per (batch, workflow): the batch records the
run each workflow was on when it matched, and a control applies to that run only. A
retry names the run it starts (the engine ignores a second one), a cancel is not sent
to a workflow that has run again since, and a workflow already on the next run counts
as done: so an engine killed after sending and before recording, whose successor sends
the same page again, changes nothing twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from flow.clock import utcnow
from flow.core import batches, rerun
from flow.core.batches import BatchOperation, BatchStatus, Outcome, parse_batch_request
from flow.core.namespaces import DEFAULT
from flow.core.timestamps import iso
from flow.core.vocabulary import WorkflowStatus
from flow.errors import (
    BatchEnded,
    BatchNotFound,
    FilterTooCostly,
    IdempotencyConflict,
    InvalidInput,
    TooManyBatches,
    WorkflowConflict,
    WorkflowNotFound,
)
from flow.persistence import input_filter
from flow.persistence.batches import BatchTable, Item, StoredBatch
from flow.persistence.mapping import StoredWorkflow
from flow.service import checks
from flow.service.workflows import WorkflowService

logger = logging.getLogger(__name__)


class BatchService:
    """The batches of one process (its API, its engine)."""

    def __init__(self, service: WorkflowService) -> None:
        self.service = service
        self.controls = service.controls
        self.table = BatchTable(service.store.database, query_timeout_s=service.store.query_timeout_s)

    def __repr__(self) -> str:
        return f"<BatchService {self.table!r}>"

    # -- requests ----------------------------------------------------------------------------

    def create(
        self, body: Any, *, idempotency_key: str | None = None, namespace: str = DEFAULT
    ) -> tuple[StoredBatch, bool]:
        """Check a ``POST /batches`` body and store the batch of ``namespace`` (its filter
        reaches that namespace's workflows only; its engine does the rest); ``(batch,
        True)``. With an ``idempotency_key`` a batch holds already, that batch and False
        when it asked the same, else :class:`IdempotencyConflict`."""
        request = parse_batch_request(body)
        request = replace(request, filter=replace(request.filter, namespace=namespace))
        if request.filter.input is not None:
            try:
                input_filter.check(request.filter.input)
            except FilterTooCostly as e:  # named as the body's field, not the query parameter
                raise InvalidInput("$.filter.input", e.message) from e
        if request.rerun is not None and "input_data" in request.rerun:  # else every workflow fails with it
            checks.check_payload(
                "$.rerun.input_data", request.rerun["input_data"], max_bytes=self.service.settings.max_payload_bytes
            )
        resent = idempotency_key is not None and self.table.by_key(idempotency_key) is not None
        if not resent and (running := self.table.live_count()) >= batches.MAX_LIVE_BATCHES:
            raise TooManyBatches(
                f"{running} batches are running, the most there may be at once: wait for one to finish, "
                "or cancel one (POST /batches/{id}/cancel)"
            )
        batch_id = str(uuid.uuid4())
        stored, created = self.table.create(
            request,
            batch_id=batch_id,
            partition=self.service.partition_of(batch_id),
            now=utcnow(),
            idempotency_key=idempotency_key,
        )
        if not created:
            asked = (
                request.operation,
                request.filter.to_json(),
                None if request.rerun is None else dict(request.rerun),
            )
            earlier = (stored.operation, stored.filter.to_json(), None if stored.rerun is None else dict(stored.rerun))
            if stored.filter.namespace != namespace:  # another namespace's: say nothing of it
                raise IdempotencyConflict(f"Idempotency-Key {idempotency_key!r} was used already; choose another")
            if asked != earlier:
                raise IdempotencyConflict(
                    f"Idempotency-Key {idempotency_key!r} started batch {stored.id} with another request already"
                )
            return stored, False
        logger.info("batch %s: %s of %s", batch_id, request.operation, request.filter.to_json())
        return stored, True

    def get(self, batch_id: str) -> StoredBatch:
        found = self.table.get(batch_id) if _is_batch_id(batch_id) else None
        if found is None:
            raise BatchNotFound(batch_id)
        return found

    def list(
        self,
        *,
        status: BatchStatus | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
        namespace: str | None = None,
    ) -> list[StoredBatch]:
        return self.table.list(status=status, before=before, limit=limit, namespace=namespace)

    def cancel(self, batch_id: str) -> StoredBatch:
        """Ask a running batch to stop; :class:`BatchEnded` once it ended."""
        batch = self.get(batch_id)
        if batch.status is BatchStatus.RUNNING and self.table.cancel(batch_id, now=utcnow()):
            return self.get(batch_id)
        batch = self.get(batch_id)
        if batch.status.ended:
            raise BatchEnded(f"batch {batch_id} is {batch.status}; only a running batch can be cancelled")
        return batch  # cancelling already

    def view(self, batch: StoredBatch) -> dict[str, Any]:
        """The JSON of a batch (the API, the CLI and the page show it)."""
        counts = batch.counts
        return {
            "id": batch.id,
            "operation": batch.operation.value,
            # As the client wrote it: the namespace is the batch's own, not a filter it chose.
            "filter": {k: v for k, v in batch.filter.to_json().items() if k != "namespace"},
            "rerun": None if batch.rerun is None else dict(batch.rerun),
            "status": batch.status.value,
            "matched": counts.matched,
            "done": counts.done,
            "failed": counts.failed,
            "skipped": counts.skipped,
            "pending": counts.pending,
            "created_by": batch.created_by,
            "created_at": iso(batch.created_at),
            "updated_at": iso(batch.updated_at),
            "finished_at": iso(batch.finished_at),
        }

    def detailed_view(self, batch: StoredBatch) -> dict[str, Any]:
        """:meth:`view` with the first workflows that failed or were skipped, and why."""
        problems = [
            {"workflow_id": i.workflow_id, "outcome": i.outcome.value, "reason": i.reason}
            for i in self.table.problems(batch.id)
        ]
        return {**self.view(batch), "problems": problems}

    # -- the engine's calls ------------------------------------------------------------------

    def qualify(self, batch: StoredBatch, workflow: StoredWorkflow) -> str | None:
        """Why a matched workflow is skipped (the operation does not apply to it), or None."""
        state = workflow.state
        if batch.operation is BatchOperation.CANCEL:
            refusal: WorkflowConflict | None = checks.cancel_refusal(state)
        elif batch.operation is BatchOperation.RETRY:
            refusal = checks.retry_refusal(state)
        else:
            return rerun.refusal(state)
        return None if refusal is None else str(refusal)

    def apply(self, batch: StoredBatch, item: Item) -> Item:
        """Send one matched workflow its control (see the module docstring); the item
        settled. A retryable error (the database or broker away) propagates: the item
        stays pending and the next pass sends it."""
        try:
            state = self.service.store.get(item.workflow_id).state
        except WorkflowNotFound:
            return replace(item, outcome=Outcome.SKIPPED, reason="deleted since the batch matched it")
        by = f"batch {batch.id}"
        try:
            if batch.operation is BatchOperation.CANCEL:
                if state.run != item.run:
                    return replace(item, outcome=Outcome.SKIPPED, reason=f"run {state.run} started since it matched")
                if state.status is WorkflowStatus.CANCELLED:
                    return replace(item, outcome=Outcome.DONE)
                self.controls.cancel(item.workflow_id, by)
            elif state.run > item.run:
                # It runs again already: this batch's control, sent by a pass that ended
                # before recording it, or someone else's. Either way, not a second time.
                return replace(item, outcome=Outcome.DONE, reason=f"on run {state.run} already")
            elif batch.operation is BatchOperation.RETRY:
                self.controls.retry(item.workflow_id, of_run=item.run)
            else:
                options = batch.rerun or {}
                self.controls.rerun(
                    item.workflow_id,
                    options["from"],
                    version=options.get("version"),
                    input_data=options.get("input_data"),
                    by=by,
                    of_run=item.run,
                )
        except WorkflowConflict as e:
            return replace(item, outcome=Outcome.SKIPPED, reason=str(e))
        return replace(item, outcome=Outcome.DONE)


def _is_batch_id(value: str) -> bool:
    """Whether ``value`` could be a batch id (an id that cannot is simply unknown)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


__all__ = ["BatchService"]
