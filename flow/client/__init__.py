"""The Python client of the Libero Flow API: ``from flow.client import Client``.

It imports neither the engine nor the database layer (docs/design.md, "Layout"): a
service that starts and watches workflows needs only this package and the standard
library.
"""

from flow.client.client import Client
from flow.client.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    NotFound,
    ResultTimeout,
    Unauthorized,
    Unavailable,
    Unreachable,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowUnsuccessful,
)
from flow.client.models import EventSent, SignalSent, Step, Workflow, WorkflowSummary
from flow.client.retries import NO_RETRIES, RetryPolicy
from flow.client.transport import Transport

__all__ = [
    # The client
    "Client",
    "RetryPolicy",
    "NO_RETRIES",
    "Transport",
    # What it returns
    "Workflow",
    "WorkflowSummary",
    "Step",
    "SignalSent",
    "EventSent",
    # What it raises
    "ApiError",
    "Unreachable",
    "InvalidRequest",
    "Unauthorized",
    "NotFound",
    "Conflict",
    "Unavailable",
    "WorkflowUnsuccessful",
    "WorkflowFailed",
    "WorkflowCancelled",
    "ResultTimeout",
]
