"""HTTP mapping of :mod:`flow.errors`: the only place that knows both.

The convention: 400 when the body (or a cursor) is not JSON that Libero Flow reads
(:class:`~flow.errors.InvalidJson`: malformed, not UTF-8, ``NaN``, a number out of
range, NUL or a lone surrogate in a string, nested too deep); 422 when it is JSON
but a field is wrong. Both list each problem as ``{"path": ..., "message": ...}``.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from flow.errors import (
    DefinitionError,
    DefinitionInUse,
    DefinitionNotFound,
    FlowError,
    IdempotencyConflict,
    InvalidInput,
    InvalidJson,
    StoreUnavailable,
    WorkflowInProgress,
    WorkflowNotFound,
)

logger = logging.getLogger(__name__)


class ValidationFailed(falcon.HTTPError):
    """422 (or ``status``) whose body also lists each problem as
    ``{"path": "$.field", "message": ...}``."""

    def __init__(self, *, title: str, problems: list[tuple[str, str]], status: str = falcon.HTTP_422) -> None:
        problems = [(printable(path), printable(message)) for path, message in problems]
        super().__init__(status, title=title, description="; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems

    def to_dict(self, obj_type: type = dict) -> Any:
        body = super().to_dict(obj_type)
        body["errors"] = [{"path": path, "message": message} for path, message in self.problems]
        return body


def unprocessable(path: str, message: str) -> falcon.HTTPError:
    """422 naming the offending field."""
    return ValidationFailed(title="Invalid request", problems=[(path, message)])


def invalid_json(ex: InvalidJson) -> falcon.HTTPError:
    """400 naming where the JSON reader refused the body."""
    return ValidationFailed(title="Invalid JSON", problems=[(ex.path, ex.message)], status=falcon.HTTP_400)


def printable(text: str) -> str:
    """``text`` with lone surrogates escaped: a reply that holds one cannot be encoded
    (Falcon then answers 500 with an empty body)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def handle_flow_error(req: falcon.Request, resp: falcon.Response, ex: FlowError, params: dict[str, Any]) -> None:
    """Translate a :class:`FlowError` into the matching HTTP error."""
    if isinstance(ex, WorkflowNotFound):
        raise falcon.HTTPNotFound(title="Workflow not found", description=printable(str(ex)))
    if isinstance(ex, IdempotencyConflict):
        raise falcon.HTTPConflict(title="Idempotency key reused", description=printable(str(ex)))
    if isinstance(ex, WorkflowInProgress):
        raise falcon.HTTPConflict(title="Workflow in progress", description=printable(str(ex)))
    if isinstance(ex, DefinitionInUse):
        raise falcon.HTTPConflict(title="Definition version in use", description=printable(str(ex)))
    if isinstance(ex, DefinitionNotFound):
        raise unprocessable("$.name", str(ex))
    if isinstance(ex, InvalidJson):
        raise invalid_json(ex)
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
    raise falcon.HTTPInternalServerError(title="Internal error", description=printable(str(ex)))
