"""Every error that Libero Flow raises on purpose, rooted at :class:`FlowError`, and
the one answer to "would trying again later help?" (:func:`is_retryable`).

Foreign exceptions (psycopg, pika, jsonschema) are translated at the boundary with
``raise ... from e`` so callers only ever catch these. HTTP status codes for them
live in ``api/`` alone.

Each class says whether it is ``retryable``: a door that fails to handle a message
(the AMQP start consumer, the Dramatiq tasks) asks :func:`is_retryable` and either
tries again later, a bounded number of times, or dead-letters the message at once.
Nothing else decides that.
"""

from __future__ import annotations

import functools
from typing import Any


class FlowError(Exception):
    """Base class for every error Libero Flow raises on purpose."""

    #: Would the same request or message succeed if tried again later, unchanged?
    #: ``False`` for anything caused by the input itself: retrying it only delays
    #: the messages behind it.
    retryable: bool = False


class ConfigurationError(FlowError):
    """Raised when a ``FLOW_`` environment variable has an invalid value."""


class DefinitionError(FlowError):
    """Raised when a workflow definition is malformed or names unknown activities.

    ``problems`` lists ``(json_path, message)`` pairs, one per error found. Not
    retryable: a stored definition whose activity class has since been removed
    stays broken until someone registers a fixed version.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(f"invalid workflow definition {source}: {lines}")


class DefinitionNotFound(FlowError):
    """Raised when a workflow is started with a definition name nobody registered.

    The message lists the first :attr:`MAX_LISTED` known names and counts the rest (a
    deployment may hold hundreds); ``hint`` says why none are known, when that is known.
    """

    #: Known names the message lists at most.
    MAX_LISTED = 10

    def __init__(self, name: str, known: list[str], *, hint: str | None = None) -> None:
        self.name = name
        self.known = known
        listed = sorted(known)[: self.MAX_LISTED]
        more = len(known) - len(listed)
        if listed:
            choices = "known: " + ", ".join(listed) + (f" and {more} more (GET /definitions)" if more else "")
        else:
            choices = "none are registered" + (f"; {hint}" if hint else "")
        super().__init__(f"no workflow definition named {name!r} ({choices})")


class IdempotencyConflict(FlowError):
    """Raised when a start reuses an idempotency key (or workflow id) with another
    definition or input: the key names one request, so the API answers 409."""


class InboxFull(FlowError):
    """Raised when a signal no step waits for would be kept, but the workflow's kept
    signals hold ``FLOW_MAX_INBOX_BYTES`` already with it, or its inbox holds
    ``flow.core.kinds.wait.MAX_SIGNALS`` signals: the API answers 413."""


class WorkflowNotFound(FlowError):
    """Raised when a workflow id matches no stored workflow."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow with id {workflow_id!r}")


class UnknownCallbackToken(FlowError):
    """Raised when a callback token is not one this deployment made: malformed, forged,
    signed with another secret, or naming no wait. One answer for all of them (the API
    answers 404), so that a caller learns nothing from trying."""

    def __init__(self) -> None:
        super().__init__("no such callback token")


class CallbackTokenSpent(FlowError):
    """Raised when a genuine callback token can never deliver again: its wait has ended
    (a signal took it, it timed out, it was skipped or cancelled), its workflow has
    ended, was deleted, or runs again with fresh tokens (the API answers 410)."""


class WorkflowInProgress(FlowError):
    """Raised when deleting a workflow that has not ended: its engine may still write
    to it, and a workflow deleted under its engine would lose what it is doing. Cancel
    it first (the API answers 409)."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"workflow {workflow_id} is In Progress; only an ended workflow (Finished, Failed or Cancelled) "
            "can be deleted: cancel it first"
        )


class ChildrenInProgress(WorkflowInProgress):
    """Raised when deleting an ended workflow whose child workflows are still in
    progress (their cancel, owed by its end, is on its way): deleted under them, they
    would report to nobody and could never be retried, since a child is retried only
    through its parent. Wait for them to end, or cancel them (the API answers 409)."""

    #: Shown at most: the first few children in progress, by id.
    SHOWN = 5

    def __init__(self, workflow_id: str, children: list[str]) -> None:
        self.workflow_id = workflow_id
        self.children = children
        FlowError.__init__(
            self,
            f"workflow {workflow_id} has child workflows in progress ({', '.join(children[: self.SHOWN])}): "
            "it can be deleted once they have ended (its end cancels them; or cancel them)",
        )


class DefinitionInUse(FlowError):
    """Raised when deleting a definition version that a workflow in progress was started
    with, or that a registered definition's child step or a running workflow's still
    needs (the API answers 409); ``count`` says how many workflows, ``needed_by`` which
    definitions ("Parent version 2 (step c)", "Parent version 1 (2 In Progress)")."""

    def __init__(self, name: str, version: int, count: int, *, needed_by: tuple[str, ...] = ()) -> None:
        self.count = count
        self.needed_by = needed_by
        if not needed_by:
            super().__init__(
                f"{name} version {version} is used by {count} workflow(s) In Progress; "
                "delete it once they have ended (or cancel them)"
            )
            return
        super().__init__(
            f"{name} version {version} is needed by {', '.join(needed_by)}; change or delete those "
            "definitions (or let their running workflows end, or cancel them) first"
        )


class WorkflowConflict(FlowError):
    """Raised when a request about a workflow cannot apply to it as it stands (the API
    answers 409): the base of the refusals of cancel, signal, pause, resume and retry,
    which the starting side checks in one place (``flow/service/checks.py``) for every
    door. ``workflow_id`` names the workflow; the message says why, for a person."""

    def __init__(self, workflow_id: str, reason: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(reason)


class WorkflowEnded(WorkflowConflict):
    """Raised when cancelling or signalling a workflow that has ended."""


class PauseRefused(WorkflowConflict):
    """Raised when pausing a workflow that has ended or is paused already."""


class ResumeRefused(WorkflowConflict):
    """Raised when resuming a workflow that has ended or is not paused."""


class RetryRefused(WorkflowConflict):
    """Raised when retrying a workflow that is not Failed or Cancelled (nothing to
    retry), or a child workflow, which only its parent's retry runs again."""


class RerunRefused(WorkflowConflict):
    """Raised when rerunning a workflow that has not ended (nothing to rerun yet), or a
    child workflow, which its parent's rerun runs again."""


class VersionIncompatible(FlowError):
    """Raised when a definition version would not take over the history of running
    workflows (``PUT /definitions/{name}?check=running``), or of the workflow a rerun
    moves to it (:mod:`flow.core.replay`). ``report`` holds each workflow's verdict
    (``workflow_id``, ``compatible``, ``divergences``); the API answers 409 with it."""

    def __init__(self, message: str, report: list[dict[str, Any]]) -> None:
        self.report = report
        super().__init__(message)


class ConcurrentUpdate(FlowError):
    """Raised when another engine committed a transition for the same workflow first.

    The loser reloads the workflow and decides again (docs/design.md, invariant 4); retryable.
    """

    retryable = True


class WorkflowActorCrashed(FlowError):
    """Raised to the caller when handling an event raised a ``BaseException``
    (``SystemExit``, ``KeyboardInterrupt``) inside a workflow actor.

    Pykka would stop every actor of the process for such an exception; the workflow
    actor turns it into this error instead, so only that event fails (and is retried).
    """

    retryable = True


class UnknownActivity(FlowError):
    """Raised when a message names an activity class that was not discovered."""


class InvalidInput(FlowError):
    """Raised when a start request or message is malformed.

    ``path`` names the offending field, e.g. ``$.input_data``.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


class InvalidJson(InvalidInput):
    """Raised by :mod:`flow.core.strict_json` when text or a decoded value is not JSON that
    Libero Flow accepts: not UTF-8, not JSON at all, ``NaN``/``Infinity``, a number
    out of range, NUL or a lone surrogate in a string, or nesting deeper than
    :data:`flow.core.strict_json.MAX_DEPTH`.

    ``path`` is the JSON path of the offending value (``$`` for the text as a whole).
    A kind of :class:`InvalidInput`, so every door that refuses bad input refuses it.
    """


class EvaluationBudgetExceeded(FlowError):
    """Raised when evaluating an expression of a definition (``when``, ``map.over``...)
    would visit more elements or build more bytes than one evaluation's budget
    (:mod:`flow.core.expressions`); the message names the budget. The step fails with it."""


class FilterTooCostly(FlowError):
    """Raised when a client's query would cost more than its budget: a list filter
    nested or sized beyond its limits, or a query that ran past its time budget.

    ``parameter`` names the query parameter to blame; ``retry_after_s`` is set when the
    same query may succeed later (it ran out of time on a busy database).
    """

    def __init__(self, parameter: str, message: str, *, retry_after_s: int | None = None) -> None:
        self.parameter = parameter
        self.message = message
        self.retry_after_s = retry_after_s
        self.retryable = retry_after_s is not None
        super().__init__(f"{parameter}: {message}")


class PollTimeout(FlowError):
    """Raised by :func:`flow.loops.poll_until` when its condition did not come true in time.

    ``last`` is the check's last answer (a falsy value: ``None``, ``False``, a
    workflow view that is still in progress), for callers that report it.
    """

    def __init__(self, what: str, timeout_s: float, last: object = None) -> None:
        super().__init__(f"timed out after {timeout_s:g} s waiting for {what}")
        self.what = what
        self.timeout_s = timeout_s
        self.last = last


class ScheduleNotFound(FlowError):
    """Raised when a schedule name matches no stored schedule."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r}")


class BatchNotFound(FlowError):
    """Raised when a batch id matches no stored batch."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(f"no batch with id {batch_id!r}")


class BatchEnded(FlowError):
    """Raised when cancelling a batch that has finished or was cancelled already."""


class TooManyBatches(FlowError):
    """Raised when starting a batch while ``MAX_LIVE_BATCHES`` batches run already."""


class EventNotFound(FlowError):
    """Raised when an event id matches no event remembered (never received, or received
    longer ago than ``FLOW_EVENT_DEDUP_S``)."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"no event with id {event_id!r} (events are remembered for FLOW_EVENT_DEDUP_S)")


class NameTaken(FlowError):
    """Raised when a namespace registers a definition or schedule, or sets a limit, under
    a name that another namespace holds (the API answers 409 without saying whose)."""

    def __init__(self, what: str, name: str) -> None:
        self.name = name
        super().__init__(f"the {what} name {name!r} is not available in this namespace; choose another")


class QuotaExceeded(FlowError):
    """Raised when a start would pass its namespace's quota (running workflows or starts
    per second); the API answers 429 with ``Retry-After`` (``retry_after_s``); retryable:
    a broker door delivers the message again later, the engine tries a schedule's tick
    or an event's start again after ``retry_after_s``."""

    retryable = True

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class StoreUnavailable(FlowError):
    """Raised when the database cannot be reached or refuses the operation; retryable."""

    retryable = True


class BrokerBlocked(FlowError):
    """Raised when RabbitMQ blocks this process's publishes (a memory or disk alarm): a
    publish waited ``FLOW_BROKER_BLOCKED_TIMEOUT_S`` unconfirmed, or one did so less than
    that long ago; retryable."""

    retryable = True

    def __init__(self, retry_after_s: float) -> None:
        #: Seconds until this process tries to publish again.
        self.retry_after_s = retry_after_s
        super().__init__(f"RabbitMQ blocks publishers (a memory or disk alarm); retry in {retry_after_s:.0f} s")


class StartShed(FlowError):
    """Raised when the API sheds a start it cannot take now (:mod:`flow.service.intake`);
    nothing was stored. ``retry_after_s``: when to try again."""

    retryable = True

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooManyStarts(StartShed):
    """Raised when this API process works on ``FLOW_MAX_STARTS_IN_FLIGHT`` starts already (429)."""


class StartBacklogFull(StartShed):
    """Raised when the engines' backlog of unstarted workflows is at ``FLOW_MAX_START_BACKLOG`` (503)."""


@functools.cache
def _foreign() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """``(transient, permanent)`` exceptions of the libraries below Libero Flow, imported
    on first use so that the pure core, which raises these errors, imports no driver."""
    import peewee
    import psycopg2

    # "The service is in trouble", not "the data is wrong": a connection dropped, a
    # server restarting, a timeout.
    transient = (
        peewee.OperationalError,
        peewee.InterfaceError,
        psycopg2.OperationalError,
        psycopg2.InterfaceError,
        OSError,  # ConnectionError, TimeoutError, socket errors
    )
    # What the same input raises every time: the database refused the data (a NUL in
    # a PostgreSQL string, a constraint), or Python could not handle it (too deep, too
    # big, not text, wrong type).
    permanent = (
        peewee.DatabaseError,  # DataError, IntegrityError, ProgrammingError (after the transient ones)
        psycopg2.DatabaseError,
        RecursionError,
        ValueError,  # UnicodeError, json.JSONDecodeError, "integer string too long"
        TypeError,
        LookupError,
        AttributeError,
        ArithmeticError,  # OverflowError, ZeroDivisionError
    )
    return transient, permanent


def is_retryable(exc: BaseException) -> bool:
    """Would handling the same message again later help?

    A :class:`FlowError` says so itself (``retryable``). Of other exceptions, the
    database and network ones that mean an outage are retryable; data errors and
    the errors Python raises for input it cannot handle are not. Anything else is
    assumed to be transient: every door bounds its retries, so an unforeseen error
    costs a few deliveries before the message is dead-lettered, never a loop.
    """
    if isinstance(exc, FlowError):
        return exc.retryable
    transient, permanent = _foreign()
    if isinstance(exc, transient):
        return True
    return not isinstance(exc, permanent)
