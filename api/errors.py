"""HTTP mapping of :mod:`flow.errors`: the only place that knows both.

The convention: 400 when the body (or a cursor) is not JSON that Libero Flow reads
(:class:`~flow.errors.InvalidJson`: malformed, not UTF-8, ``NaN``, a number out of
range, NUL or a lone surrogate in a string, nested too deep); 422 when it is JSON
but a field is wrong. Both list each problem as ``{"path": ..., "message": ...}``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, MutableMapping
from typing import Any

import falcon

from flow.errors import (
    BatchEnded,
    BatchNotFound,
    BrokerBlocked,
    CallbackTokenSpent,
    DefinitionError,
    DefinitionInUse,
    DefinitionNotFound,
    EventNotFound,
    FilterTooCostly,
    FlowError,
    IdempotencyConflict,
    InboxFull,
    InvalidInput,
    InvalidJson,
    NameTaken,
    PauseRefused,
    QuotaExceeded,
    RerunRefused,
    ResumeRefused,
    RetryRefused,
    StartBacklogFull,
    StoreUnavailable,
    TooManyBatches,
    TooManyStarts,
    UnknownCallbackToken,
    VersionIncompatible,
    WorkflowConflict,
    WorkflowEnded,
    WorkflowInProgress,
    WorkflowNotFound,
)

logger = logging.getLogger(__name__)

Params = dict[str, Any]


class ValidationFailed(falcon.HTTPError):
    """422 (or ``status``) whose body also lists each problem as
    ``{"path": "$.field", "message": ...}``."""

    def __init__(self, *, title: str, problems: list[tuple[str, str]], status: str = falcon.HTTP_422) -> None:
        problems = [(printable(path), printable(message)) for path, message in problems]
        super().__init__(status, title=title, description="; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems

    def to_dict(self, obj_type: type[MutableMapping[str, Any]] = dict) -> MutableMapping[str, Any]:
        body: MutableMapping[str, Any] = super().to_dict(obj_type)
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


# One handler per error type. Falcon picks the handler of the most specific class in the
# exception's MRO (falcon/app.py, App._find_error_handler), whatever the order they were
# added in: InvalidJson gets its own 400 although it is an InvalidInput, and FlowError
# is the fallback for every other error of Libero Flow.


def _workflow_not_found(req: falcon.Request, resp: falcon.Response, ex: WorkflowNotFound, params: Params) -> None:
    raise falcon.HTTPNotFound(title="Workflow not found", description=printable(str(ex)))


def _batch_not_found(req: falcon.Request, resp: falcon.Response, ex: BatchNotFound, params: Params) -> None:
    raise falcon.HTTPNotFound(title="Batch not found", description=printable(str(ex)))


def _batch_ended(req: falcon.Request, resp: falcon.Response, ex: BatchEnded, params: Params) -> None:
    raise falcon.HTTPConflict(title="Batch already ended", description=printable(str(ex)))


def _too_many_batches(req: falcon.Request, resp: falcon.Response, ex: TooManyBatches, params: Params) -> None:
    raise falcon.HTTPConflict(title="Too many batches running", description=printable(str(ex)))


def _event_not_found(req: falcon.Request, resp: falcon.Response, ex: EventNotFound, params: Params) -> None:
    raise falcon.HTTPNotFound(title="Event not found", description=printable(str(ex)))


def _unknown_callback_token(
    req: falcon.Request, resp: falcon.Response, ex: UnknownCallbackToken, params: Params
) -> None:
    raise falcon.HTTPNotFound(title="Callback token not found", description=str(ex))


def _callback_token_spent(req: falcon.Request, resp: falcon.Response, ex: CallbackTokenSpent, params: Params) -> None:
    raise falcon.HTTPGone(title="Callback token spent", description=printable(str(ex)))


def _idempotency_conflict(req: falcon.Request, resp: falcon.Response, ex: IdempotencyConflict, params: Params) -> None:
    raise falcon.HTTPConflict(title="Idempotency key reused", description=printable(str(ex)))


def _inbox_full(req: falcon.Request, resp: falcon.Response, ex: InboxFull, params: Params) -> None:
    raise falcon.HTTPContentTooLarge(title="Inbox full", description=printable(str(ex)))


def _definition_not_found(req: falcon.Request, resp: falcon.Response, ex: DefinitionNotFound, params: Params) -> None:
    # Only a start names an unknown definition (a URL naming one answers 404 itself):
    # the request's field is wrong.
    raise unprocessable("$.name", str(ex))


def _invalid_json(req: falcon.Request, resp: falcon.Response, ex: InvalidJson, params: Params) -> None:
    raise invalid_json(ex)


def _invalid_input(req: falcon.Request, resp: falcon.Response, ex: InvalidInput, params: Params) -> None:
    raise unprocessable(ex.path, ex.message)


def _definition_error(req: falcon.Request, resp: falcon.Response, ex: DefinitionError, params: Params) -> None:
    raise ValidationFailed(title="Invalid workflow definition", problems=ex.problems)


def _workflow_in_progress(req: falcon.Request, resp: falcon.Response, ex: WorkflowInProgress, params: Params) -> None:
    raise falcon.HTTPConflict(title="Workflow in progress", description=printable(str(ex)))


#: The title of each refusal of a request about a workflow (flow/service/checks.py).
CONFLICT_TITLES: dict[type[WorkflowConflict], str] = {
    WorkflowEnded: "Workflow already ended",
    PauseRefused: "Workflow cannot be paused",
    ResumeRefused: "Workflow cannot be resumed",
    RetryRefused: "Workflow cannot be retried",
    RerunRefused: "Workflow cannot be rerun",
}


def _workflow_conflict(req: falcon.Request, resp: falcon.Response, ex: WorkflowConflict, params: Params) -> None:
    title = CONFLICT_TITLES.get(type(ex), "Workflow conflict")
    raise falcon.HTTPConflict(title=title, description=printable(str(ex)))


def _definition_in_use(req: falcon.Request, resp: falcon.Response, ex: DefinitionInUse, params: Params) -> None:
    raise falcon.HTTPConflict(title="Definition version in use", description=printable(str(ex)))


class Incompatible(falcon.HTTPError):
    """409 whose body also holds the replay report: each workflow's verdict."""

    def __init__(self, ex: VersionIncompatible) -> None:
        super().__init__(falcon.HTTP_409, title="Definition version incompatible", description=printable(str(ex)))
        self.report = ex.report

    def to_dict(self, obj_type: type[MutableMapping[str, Any]] = dict) -> MutableMapping[str, Any]:
        body: MutableMapping[str, Any] = super().to_dict(obj_type)
        body["workflows"] = self.report
        return body


def _version_incompatible(req: falcon.Request, resp: falcon.Response, ex: VersionIncompatible, params: Params) -> None:
    raise Incompatible(ex)


def _store_unavailable(req: falcon.Request, resp: falcon.Response, ex: StoreUnavailable, params: Params) -> None:
    logger.error("database unavailable: %s", ex)
    raise falcon.HTTPServiceUnavailable(
        title="Database unavailable",
        description="The database cannot be reached; try again shortly.",
        retry_after=5,
    )


def _broker_blocked(req: falcon.Request, resp: falcon.Response, ex: BrokerBlocked, params: Params) -> None:
    logger.warning("answering 503: %s", ex)
    raise falcon.HTTPServiceUnavailable(
        title="Broker blocked",
        description="RabbitMQ blocks publishers (a memory or disk alarm); nothing was stored, try again shortly.",
        retry_after=max(1, math.ceil(ex.retry_after_s)),
    )


def _too_many_starts(req: falcon.Request, resp: falcon.Response, ex: TooManyStarts, params: Params) -> None:
    raise falcon.HTTPTooManyRequests(
        title="Too many starts at once", description=printable(str(ex)), retry_after=ex.retry_after_s
    )


def _start_backlog_full(req: falcon.Request, resp: falcon.Response, ex: StartBacklogFull, params: Params) -> None:
    raise falcon.HTTPServiceUnavailable(
        title="Start backlog full", description=printable(str(ex)), retry_after=ex.retry_after_s
    )


def _filter_too_costly(req: falcon.Request, resp: falcon.Response, ex: FilterTooCostly, params: Params) -> None:
    # 422 when the client's filter is to blame (the same query would cost the same);
    # 503 with Retry-After when the database was merely slow.
    if ex.retry_after_s is None:
        raise unprocessable(ex.parameter, ex.message)
    raise falcon.HTTPServiceUnavailable(
        title="Query over budget", description=printable(str(ex)), retry_after=ex.retry_after_s
    )


def _name_taken(req: falcon.Request, resp: falcon.Response, ex: NameTaken, params: Params) -> None:
    raise falcon.HTTPConflict(title="Name not available", description=printable(str(ex)))


def _quota_exceeded(req: falcon.Request, resp: falcon.Response, ex: QuotaExceeded, params: Params) -> None:
    raise falcon.HTTPTooManyRequests(
        title="Namespace quota exceeded", description=printable(str(ex)), retry_after=ex.retry_after_s
    )


def _flow_error(req: falcon.Request, resp: falcon.Response, ex: FlowError, params: Params) -> None:
    logger.exception("unexpected error", exc_info=ex)
    raise falcon.HTTPInternalServerError(title="Internal error", description=printable(str(ex)))


#: The HTTP answer to each :class:`FlowError`, most specific first.
HANDLERS: dict[type[FlowError], Callable[..., None]] = {
    WorkflowNotFound: _workflow_not_found,
    EventNotFound: _event_not_found,
    UnknownCallbackToken: _unknown_callback_token,
    CallbackTokenSpent: _callback_token_spent,
    IdempotencyConflict: _idempotency_conflict,
    InboxFull: _inbox_full,
    WorkflowInProgress: _workflow_in_progress,
    WorkflowConflict: _workflow_conflict,
    DefinitionInUse: _definition_in_use,
    VersionIncompatible: _version_incompatible,
    DefinitionNotFound: _definition_not_found,
    InvalidJson: _invalid_json,
    InvalidInput: _invalid_input,
    DefinitionError: _definition_error,
    StoreUnavailable: _store_unavailable,
    BrokerBlocked: _broker_blocked,
    TooManyStarts: _too_many_starts,
    StartBacklogFull: _start_backlog_full,
    FilterTooCostly: _filter_too_costly,
    BatchNotFound: _batch_not_found,
    BatchEnded: _batch_ended,
    TooManyBatches: _too_many_batches,
    NameTaken: _name_taken,
    QuotaExceeded: _quota_exceeded,
    FlowError: _flow_error,
}


def add_error_handlers(app: falcon.App) -> None:
    """Register :data:`HANDLERS` on ``app``."""
    for error, handler in HANDLERS.items():
        app.add_error_handler(error, handler)
