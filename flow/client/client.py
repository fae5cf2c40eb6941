"""The Python client of the Libero Flow API, for other teams' services (and the CLI).

Every method is one API call (``result`` and the iterators: a few), typed on the way
out and on the way back; every error is an :class:`~flow.client.errors.ApiError`
carrying the API's problem details. Requests that may be repeated safely are tried
again on 429/502/503/504 and on connection errors (:mod:`flow.client.retries` says
which and how long it waits).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from flow.client.errors import ResultTimeout, WorkflowCancelled, WorkflowFailed
from flow.client.models import EventSent, SignalSent, Workflow, WorkflowSummary
from flow.client.retries import RetryPolicy
from flow.client.transport import Transport, segment
from flow.core.strict_json import JSON
from flow.core.vocabulary import WorkflowStatus
from flow.errors import PollTimeout
from flow.loops import poll_until
from flow.settings import Settings

#: Workflows per page when :meth:`Client.list` follows the pages.
LIST_PAGE_SIZE = 100
#: Events per page of :meth:`Client.history` (the API's largest).
HISTORY_PAGE_SIZE = 500


class Client:
    """A client of the API at ``base_url`` (default ``FLOW_API_URL``) with ``token``
    (default ``FLOW_API_TOKEN``; ``""`` sends none), in ``namespace`` (default
    ``FLOW_NAMESPACE``; unset: the token's own namespace, else ``default``).

    ``timeout_s`` bounds each HTTP request; ``retry`` says how often a request turned
    away is tried again (:class:`~flow.client.RetryPolicy`; ``NO_RETRIES`` for never).
    Thread-safe: it holds no connection between calls.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        namespace: str | None = None,
        timeout_s: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
    ) -> None:
        if transport is None:
            if base_url is None or token is None or namespace is None:
                # The CLI's settings, read as the CLI reads them: one home for FLOW_API_URL.
                settings = Settings.from_env()
                base_url = settings.api_url if base_url is None else base_url
                token = settings.api_token if token is None else token
                namespace = settings.namespace if namespace is None else namespace
            transport = Transport(
                base_url, token=token or None, namespace=namespace or None, timeout_s=timeout_s, retry=retry
            )
        self.transport = transport

    def __repr__(self) -> str:
        return f"<Client {self.transport.base_url}>"

    def request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        """Any API route the methods below do not cover (definitions, schedules, limits):
        ``options`` are :meth:`Transport.request`'s (``body``, ``params``, ``headers``,
        ``repeatable``)."""
        return self.transport.request(method, path, **options)

    # -- Starting and reading

    def start(
        self,
        name: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Workflow:
        """Start definition ``name`` with ``input``; return the new workflow (or, when
        ``idempotency_key`` was used before, the workflow it started).

        Without a key the client makes one, so that trying the start again after a
        lost reply returns the first workflow instead of starting a second.
        ``priority``: 1 (first) to 5 (last), default the server's (3). ``attributes``:
        search attributes (string, number, boolean, or a datetime, sent as ISO 8601).
        """
        body: dict[str, Any] = {
            "name": name,
            "input_data": dict(input or {}),
            "idempotency_key": idempotency_key or f"client-{uuid.uuid4()}",
        }
        if priority is not None:
            body["priority"] = priority
        if attributes:
            body["attributes"] = {k: _attribute_value(v) for k, v in attributes.items()}
        return Workflow.from_json(self.transport.request("POST", "/workflows", body=body, repeatable=True))

    def get(self, workflow_id: str) -> Workflow:
        """The workflow with its steps; :class:`~flow.client.NotFound` if there is none."""
        return Workflow.from_json(self.transport.request("GET", f"/workflows/{segment(workflow_id)}"))

    def result(self, workflow_id: str, *, timeout_s: float | None = None) -> JSON:
        """Wait for the workflow to end; return its output if it finished.

        Raises :class:`~flow.client.WorkflowFailed` or
        :class:`~flow.client.WorkflowCancelled` (with the workflow and its error) if it
        did not, and :class:`~flow.client.ResultTimeout` if it is still running after
        ``timeout_s`` (``None``: wait for ever). It asks every 50 ms at first, then less
        often, down to once a second.
        """

        def ended() -> Workflow | None:
            workflow = self.get(workflow_id)
            return workflow if workflow.ended else None

        try:
            workflow = poll_until(ended, timeout_s=timeout_s, every_s=0.05, max_every_s=1.0, what="the workflow")
        except PollTimeout:
            raise ResultTimeout(self.get(workflow_id), timeout_s or 0.0) from None
        if workflow.status == WorkflowStatus.FAILED:
            raise WorkflowFailed(workflow)
        if workflow.status == WorkflowStatus.CANCELLED:
            raise WorkflowCancelled(workflow)
        return workflow.output

    def history(self, workflow_id: str, *, after: int = 0) -> Iterator[dict[str, Any]]:
        """The workflow's events in order (those after event id ``after``), page by page."""
        path = f"/workflows/{segment(workflow_id)}/events"
        cursor: int | str | None = after
        while cursor is not None:
            page = self.transport.request("GET", path, params={"after": cursor, "limit": HISTORY_PAGE_SIZE})
            yield from page["items"]
            cursor = page["next"]

    # -- Acting on a workflow

    def signal(
        self,
        workflow_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> SignalSent:
        """Send signal ``name`` with ``payload`` (any JSON). With ``idempotency_key``,
        sending it again delivers it once; without, the client makes a key for this call,
        so that its own retries deliver it once."""
        headers = {"Idempotency-Key": idempotency_key or f"client-{uuid.uuid4()}"}
        body = None if payload is None else {"payload": payload}
        path = f"/workflows/{segment(workflow_id)}/signals/{segment(name)}"
        return _signal_sent(self.transport.request("POST", path, body=body, headers=headers, repeatable=True))

    def signal_by_token(self, callback_token: str, payload: Any = None) -> SignalSent:
        """Send a wait its signal by the wait's callback token (delivered once per token)."""
        body = None if payload is None else {"payload": payload}
        return _signal_sent(
            self.transport.request("POST", f"/signals/{segment(callback_token)}", body=body, repeatable=True)
        )

    def cancel(self, workflow_id: str, *, reason: str | None = None) -> None:
        """Ask the engine to cancel a running workflow (it is ``Cancelled`` shortly after);
        :class:`~flow.client.Conflict` if it already ended."""
        body = {"reason": reason} if reason else None
        self.transport.request("POST", f"/workflows/{segment(workflow_id)}/cancel", body=body, repeatable=True)

    def retry(self, workflow_id: str, *, timeout_s: float | None = 30.0) -> None:
        """Run a ``Failed`` or ``Cancelled`` workflow again from where it stopped.

        The API answers before the engine acts; this returns once the engine has taken
        the retry (the workflow changed since the answer), so that a :meth:`result`
        after it waits for the new run instead of reading the old ending. Raises
        :class:`~flow.errors.PollTimeout` if that takes over ``timeout_s`` (``0``:
        return at once).
        """
        self._wait_taken(workflow_id, self._control(workflow_id, "retry"), timeout_s)

    def rerun(
        self,
        workflow_id: str,
        from_step: str,
        *,
        version: int | None = None,
        input: Mapping[str, Any] | None = None,
        by: str | None = None,
        timeout_s: float | None = 30.0,
    ) -> None:
        """Run an ended workflow again from step ``from_step``: it and every step that
        depends on it run again (on definition ``version``, with ``input``, if given;
        ``by`` is recorded in the history). Returns once the engine has taken it, as
        :meth:`retry` does."""
        body: dict[str, Any] = {"from": from_step}
        optional = {"version": version, "input_data": None if input is None else dict(input), "by": by}
        body.update((k, v) for k, v in optional.items() if v is not None)
        before = self.transport.request("POST", f"/workflows/{segment(workflow_id)}/rerun", body=body)
        self._wait_taken(workflow_id, before, timeout_s)

    def _wait_taken(self, workflow_id: str, before: Mapping[str, Any], timeout_s: float | None) -> None:
        """Wait until the engine committed a request the API accepted with ``before`` (the
        workflow as it was): its ``updated_at`` has moved."""

        def taken() -> bool:
            return self.get(workflow_id).raw.get("updated_at") != before.get("updated_at")

        if timeout_s != 0:
            poll_until(taken, timeout_s=timeout_s, every_s=0.05, max_every_s=1.0, what="the engine to take the request")

    def pause(self, workflow_id: str) -> None:
        """Pause a running workflow: nothing new is scheduled until it resumes."""
        self._control(workflow_id, "pause")

    def resume(self, workflow_id: str) -> None:
        """Let a paused workflow go on."""
        self._control(workflow_id, "resume")

    def delete(self, workflow_id: str) -> None:
        """Delete an ended workflow with its steps and history."""
        self.transport.request("DELETE", f"/workflows/{segment(workflow_id)}")

    def _control(self, workflow_id: str, action: str) -> dict[str, Any]:
        """The 202's body: the workflow as it was when the request was accepted."""
        # Not repeated after a lost reply (a POST): a second try would answer 409 for a success.
        return self.transport.request("POST", f"/workflows/{segment(workflow_id)}/{action}")

    # -- Events

    def send_event(self, type: str, data: Mapping[str, Any] | None = None, *, id: str | None = None) -> EventSent:
        """Send an event (``POST /events``) that starts the workflows whose triggers match
        it; ``data`` is a JSON object. ``id``: the server starts nothing new for an id it
        has seen (``EventSent.duplicate``); without one the client makes one, so that its
        own retries start nothing twice."""
        body = {"type": type, "id": id or f"client-{uuid.uuid4()}", "data": dict(data or {})}
        reply = self.transport.request("POST", "/events", body=body, repeatable=True)
        return EventSent(
            id=reply.get("id", body["id"]),
            type=reply.get("type", type),
            duplicate=bool(reply.get("duplicate")),
            raw=reply,
        )

    # -- Listing (last: the method named ``list`` shadows the builtin in the class body)

    def list_page(
        self, *, limit: int = LIST_PAGE_SIZE, cursor: str | None = None, **filters: Any
    ) -> tuple[tuple[WorkflowSummary, ...], str | None]:
        """One page of :meth:`list` and the cursor of the next (``None`` on the last)."""
        params = {**_list_params(**filters), "limit": limit, "cursor": cursor}
        page = self.transport.request("GET", "/workflows", params=params)
        return tuple(WorkflowSummary.from_json(w) for w in page["items"]), page["next"]

    def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        priority: int | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        input: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> Iterator[WorkflowSummary]:
        """Workflows, newest first, following the pages as the iteration goes on.

        ``input``: only those whose input contains this object. ``attributes``: by
        search attribute, ``{"customer": "acme", "amount.gt": 100}`` (sent as
        ``attr.customer=acme&attr.amount.gt=100``).
        """
        filters = {
            "status": status,
            "name": name,
            "priority": priority,
            "created_after": created_after,
            "created_before": created_before,
            "input": input,
            "attributes": attributes,
        }
        cursor: str | None = None
        while True:
            items, cursor = self.list_page(limit=page_size, cursor=cursor, **filters)
            yield from items
            if cursor is None:
                return


def _signal_sent(reply: Mapping[str, Any]) -> SignalSent:
    return SignalSent(workflow_id=reply["workflow_id"], name=reply["name"], signal_id=reply["signal_id"])


def _attribute_value(value: Any) -> Any:
    """An attribute as JSON carries it: a datetime as ISO 8601, the rest as it is."""
    return value.isoformat() if isinstance(value, datetime) else value


def _list_params(
    *,
    input: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
    **filters: Any,
) -> dict[str, Any]:
    """The query parameters of ``GET /workflows`` for :meth:`Client.list`'s filters."""
    params = {k: _attribute_value(v) for k, v in filters.items()}
    if input is not None:
        params["input"] = json.dumps(input, separators=(",", ":"))
    for key, value in (attributes or {}).items():
        params[f"attr.{key}"] = json.dumps(value) if isinstance(value, bool) else _attribute_value(value)
    return params
