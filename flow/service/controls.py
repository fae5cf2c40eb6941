"""The requests a person makes about one workflow (cancel, signal, pause, resume, retry, rerun),
as the doors that answer them make them: read the workflow, refuse what its state does
not allow (:mod:`flow.service.checks`, raised as a :class:`~flow.errors.WorkflowConflict`),
then send the request to the engine (:class:`~flow.service.senders.Senders`). Each
returns the stored workflow as it was when the request was sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flow.core import rerun, saga
from flow.core.kinds import wait
from flow.core.state import WorkflowState
from flow.errors import (
    DefinitionNotFound,
    IdempotencyConflict,
    InboxFull,
    InvalidInput,
    RerunRefused,
    RetryRefused,
    VersionIncompatible,
    WorkflowConflict,
)
from flow.persistence.mapping import StoredWorkflow
from flow.persistence.store import Store
from flow.service import checks
from flow.service.definitions import Definitions
from flow.service.senders import Senders, signal_id_of
from flow.wire import messages


class Controls:
    """Checked cancel, signal, pause, resume, retry and rerun."""

    def __init__(self, store: Store, senders: Senders, definitions: Definitions | None = None) -> None:
        self.store = store
        self.senders = senders
        #: The registry a rerun with a ``version`` reads that version from.
        self.definitions = definitions

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
        ``FLOW_MAX_INBOX_BYTES`` or the inbox holds ``wait.MAX_SIGNALS`` already (the
        engine holds these rules too, for sends that race)."""
        workflow_id = row.state.id
        signal_id = signal_id_of(workflow_id, name, idempotency_key)
        size, digest = wait.payload_digest(payload)
        kept, count, seen, earlier = self.store.inbox_of(workflow_id, signal_id)
        if seen and earlier is not None and earlier != digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {idempotency_key!r} sent signal {name!r} to workflow {workflow_id} "
                "with another payload already"
            )
        full = None if seen else wait.inbox_full(self.senders.settings.max_inbox_bytes, kept, size, count)
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

        ``of_run``: only if it is still on that run. The message names the run it starts
        (the one after the run checked), so the engine ignores a second send of it: a
        batch replaying a page, a client resending its request before the first applied."""
        row = self._allowed(workflow_id, checks.retry_refusal)
        if of_run is not None and row.state.run != of_run:
            raise RetryRefused(workflow_id, f"workflow {workflow_id} is on run {row.state.run}, not {of_run}")
        self.senders.retry(workflow_id, run=row.state.run + 1)
        return row

    def rerun(
        self,
        workflow_id: str,
        from_step: str,
        *,
        version: int | None = None,
        input_data: Any = None,
        by: str | None = None,
        of_run: int | None = None,
    ) -> StoredWorkflow:
        """Run a Failed, Finished or Cancelled workflow again from the step ``from_step``
        (an id): that step and every step that depends on it run again, every other step
        keeps its outcome (:mod:`flow.core.rerun`). ``version``: on that version of its
        definition, refused (:class:`VersionIncompatible`) when it cannot take over what the
        rerun keeps; ``input_data``: the new run's input; ``by``: who asks, for the history;
        ``of_run``: only if it is still on that run, as for :meth:`retry`.

        The one door of a rerun: the API, the CLI (through the API) and batches call it."""
        row = self.store.get(workflow_id)
        state = row.state
        refusal = rerun.refusal(state)
        if refusal is not None:
            raise RerunRefused(workflow_id, refusal)
        if of_run is not None and state.run != of_run:
            raise RerunRefused(workflow_id, f"workflow {workflow_id} is on run {state.run}, not {of_run}")
        position = rerun.position_of(state, from_step)
        if position is None:
            known = ", ".join(a.id for a in state.activities[:50])
            raise InvalidInput("$.from", f"workflow {workflow_id} has no step {from_step!r}; its steps: {known}")
        undone = saga.rerun_refusal(state, rerun.downstream(state, position))  # decide() checks it again
        if undone is not None:
            raise RerunRefused(workflow_id, f"workflow {workflow_id}: {undone}")
        if input_data is not None:
            checks.check_input(input_data, max_bytes=self.senders.settings.max_payload_bytes)
        body, child_versions = None, None
        if version is not None and version != state.definition_version:
            body, child_versions = self._version(state, position, version)
        else:
            version = None
        self.senders.rerun(
            workflow_id,
            from_step,
            by=by,
            version=version,
            definition=body,
            child_versions=child_versions,
            input_data=input_data,
            run=state.run + 1,  # the run it starts: a second send of this request changes nothing
        )
        return row

    def _version(self, state: WorkflowState, position: int, version: int) -> tuple[Any, dict[str, int]]:
        """The body of ``version`` of the workflow's definition and its children's versions,
        once it is known to take over what a rerun from ``position`` keeps."""
        assert self.definitions is not None, "a rerun on another version needs the definitions"
        try:
            definition, _ = self.definitions.get(state.name, version)
        except DefinitionNotFound as e:
            raise InvalidInput("$.version", str(e)) from e
        child_versions = self.definitions.child_versions(definition)
        verdict = rerun.divergences(state, position, definition.initial_activities(child_versions))
        if not verdict.compatible:
            why = "; ".join(d.reason for d in verdict.divergences)
            raise VersionIncompatible(
                f"{state.name} version {version} cannot take over workflow {state.id}: {why}", [verdict.to_json()]
            )
        return dict(definition.body), child_versions

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
