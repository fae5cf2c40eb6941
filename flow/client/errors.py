"""What :class:`flow.client.Client` raises: the API's answers that are not a success, as
typed exceptions carrying the API's problem details, and a workflow that ended badly.

These live beside the client rather than in :mod:`flow.errors`: they are a caller's
view of HTTP answers (the server raises the ``flow.errors`` they were mapped from, in
``api/errors.py``), and a service that only talks to Libero Flow catches them without
knowing the engine's errors. Each is still a :class:`~flow.errors.FlowError`, so one
``except FlowError`` catches everything Libero Flow raises on purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flow.errors import FlowError

if TYPE_CHECKING:
    from flow.client.models import Workflow


class ApiError(FlowError):
    """Raised when the API answers with an error status, or cannot be reached
    (``status`` 0, :class:`Unreachable`).

    ``title`` and ``detail`` are the problem details of the reply (Falcon's
    ``title``/``description``); ``problems`` lists each ``{"path", "message"}`` of a
    400 or 422 that names the fields at fault.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        problems: list[dict[str, Any]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.problems = problems or []
        #: The reply's ``Retry-After``, in seconds, when it had one.
        self.retry_after_s = retry_after_s
        self.retryable = status == 0 or status in RETRIED_STATUSES
        super().__init__(f"{status} {title}: {detail}" if status else f"{title}: {detail}")

    @property
    def description(self) -> str:
        """The name Falcon gives :attr:`detail` (and the CLI once read)."""
        return self.detail


class Unreachable(ApiError):
    """Raised when no answer came: the connection was refused, reset or timed out
    (after the retries the request was allowed). ``refused``: the connection was
    refused, so the request never left this process."""

    def __init__(self, title: str, detail: str, *, refused: bool = False) -> None:
        super().__init__(0, title, detail)
        self.refused = refused


class InvalidRequest(ApiError):
    """Raised for 400, 413, 415 and 422: the request itself is wrong (``problems`` and
    ``detail`` say which field); sending it again changes nothing."""


class Unauthorized(ApiError):
    """Raised for 401 and 403: the token is missing, wrong or not allowed this."""


class NotFound(ApiError):
    """Raised for 404: no such workflow (or definition, schedule, limit, signal token)."""


class Conflict(ApiError):
    """Raised for 409 and 410: the request does not fit the workflow's state (it ended,
    it is not paused...) or reuses an idempotency key with another body."""


class Unavailable(ApiError):
    """Raised for 429, 502, 503 and 504 once the retries ran out, and for any other 5xx."""


#: Statuses that mean "not now": retried with backoff, honouring ``Retry-After``.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
#: Of those, the ones the API itself answers having done nothing (a proxy's 502 or 504
#: may come after the API acted): only these repeat a request that must not run twice.
NOTHING_DONE_STATUSES = frozenset({429, 503})

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    410: Conflict,
}


def error_for(status: int) -> type[ApiError]:
    """The exception class of an answer with ``status``."""
    if status >= 500 or status in RETRIED_STATUSES:
        return Unavailable
    return _BY_STATUS.get(status, ApiError)


class WorkflowUnsuccessful(FlowError):
    """Raised by :meth:`~flow.client.Client.result` when the workflow ended without
    finishing: :class:`WorkflowFailed` or :class:`WorkflowCancelled`. ``workflow`` is
    its final view (each step's status and error), ``error`` the workflow's own error."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.workflow_id = workflow.id
        self.error = workflow.error
        super().__init__(f"workflow {workflow.name} {workflow.id} {workflow.status.lower()}: {workflow.error}")


class WorkflowFailed(WorkflowUnsuccessful):
    """Raised by :meth:`~flow.client.Client.result` when the workflow ``Failed``."""


class WorkflowCancelled(WorkflowUnsuccessful):
    """Raised by :meth:`~flow.client.Client.result` when the workflow was ``Cancelled``."""


class ResultTimeout(FlowError, TimeoutError):
    """Raised by :meth:`~flow.client.Client.result` when the workflow was still running
    when its ``timeout`` passed; ``workflow`` is the last view read. Retryable: the
    workflow goes on, and asking again later may find it ended."""

    retryable = True

    def __init__(self, workflow: Workflow, timeout_s: float) -> None:
        self.workflow = workflow
        self.timeout_s = timeout_s
        super().__init__(f"workflow {workflow.id} still {workflow.status} after {timeout_s:g} s")
