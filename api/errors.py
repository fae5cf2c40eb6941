"""HTTP mapping of :mod:`flow.errors`: the only place that knows both."""

from __future__ import annotations

import logging
from typing import Any

import falcon

from flow.errors import (
    DefinitionError,
    DefinitionNotFound,
    FlowError,
    IdempotencyConflict,
    InvalidInput,
    StoreUnavailable,
    WorkflowNotFound,
)

logger = logging.getLogger(__name__)


class ValidationFailed(falcon.HTTPError):
    """422 whose body also lists each problem as ``{"path": "$.field", "message": ...}``."""

    def __init__(self, *, title: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(
            falcon.HTTP_422, title=title, description="; ".join(f"{path}: {message}" for path, message in problems)
        )
        self.problems = problems

    def to_dict(self, obj_type: type = dict) -> Any:
        body = super().to_dict(obj_type)
        body["errors"] = [{"path": path, "message": message} for path, message in self.problems]
        return body


def unprocessable(path: str, message: str) -> falcon.HTTPError:
    """422 naming the offending field."""
    return ValidationFailed(title="Invalid request", problems=[(path, message)])


def handle_flow_error(req: falcon.Request, resp: falcon.Response, ex: FlowError, params: dict[str, Any]) -> None:
    """Translate a :class:`FlowError` into the matching HTTP error."""
    if isinstance(ex, WorkflowNotFound):
        raise falcon.HTTPNotFound(title="Workflow not found", description=str(ex))
    if isinstance(ex, IdempotencyConflict):
        raise falcon.HTTPConflict(title="Idempotency key reused", description=str(ex))
    if isinstance(ex, DefinitionNotFound):
        raise unprocessable("$.name", str(ex))
    if isinstance(ex, InvalidInput):
        raise unprocessable(ex.path, ex.message)
    if isinstance(ex, DefinitionError):
        raise ValidationFailed(title="Invalid workflow definition", problems=ex.problems)
    if isinstance(ex, StoreUnavailable):
        logger.error("database unavailable: %s", ex)
        raise falcon.HTTPServiceUnavailable(
            title="Database unavailable",
            description="The database cannot be reached; try again shortly.",
            retry_after=5,
        )
    logger.exception("unexpected error", exc_info=ex)
    raise falcon.HTTPInternalServerError(title="Internal error", description=str(ex))
