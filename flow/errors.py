"""Every error that Libero Flow raises on purpose, rooted at :class:`FlowError`.

Foreign exceptions (psycopg, pika, jsonschema) are translated at the boundary with
``raise ... from e`` so callers only ever catch these. HTTP status codes for them
live in ``api/`` alone.
"""

from __future__ import annotations


class FlowError(Exception):
    """Base class for every error Libero Flow raises on purpose.

    ``retryable`` says whether trying the same thing again later can succeed: a
    database outage can pass, a malformed message never will. Every door (HTTP,
    AMQP, Dramatiq, the engine's queues) decides from it alone whether to retry or
    to refuse for good (:func:`is_retryable`).
    """

    retryable = False


class ConfigurationError(FlowError):
    """Raised when a ``FLOW_`` environment variable has an invalid value."""


class DefinitionError(FlowError):
    """Raised when a workflow definition is malformed or names unknown activities.

    ``problems`` lists ``(json_path, message)`` pairs, one per error found.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(f"invalid workflow definition {source}: {lines}")


class DefinitionNotFound(FlowError):
    """Raised when a workflow is started with a definition name nobody registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        choices = ", ".join(sorted(known)) or "none are loaded"
        super().__init__(f"no workflow definition named {name!r} (known: {choices})")


class IdempotencyConflict(FlowError):
    """Raised when a start reuses an idempotency key (or workflow id) with another
    definition or input: the key names one request, so the API answers 409."""


class WorkflowNotFound(FlowError):
    """Raised when a workflow id matches no stored workflow."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow with id {workflow_id!r}")


class ConcurrentUpdate(FlowError):
    """Raised when another engine committed a transition for the same workflow first.

    The loser reloads the workflow and decides again (invariant 4).
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


class StoreUnavailable(FlowError):
    """Raised when the database cannot be reached or refuses the operation."""

    retryable = True


class PartitionNotHeld(FlowError):
    """Raised when an engine is asked to handle a workflow of a partition it does not hold
    (any more): the message goes back to the queue for the partition's owner."""

    retryable = True


def is_retryable(error: BaseException) -> bool:
    """Can the operation that raised ``error`` succeed if tried again later?

    Libero Flow's own errors say so themselves. Of foreign ones, connection trouble
    (peewee's ``OperationalError``/``InterfaceError``, pika's connection errors,
    ``OSError``) can pass; anything else — bad data a driver refused, a bug tripped
    by one message — would fail the same way again.
    """
    if isinstance(error, FlowError):
        return error.retryable
    import peewee

    if isinstance(error, (peewee.OperationalError, peewee.InterfaceError, ConnectionError, TimeoutError)):
        return True
    try:
        import pika.exceptions

        if isinstance(error, (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)):
            return True
    except ImportError:  # pragma: no cover - pika is a dependency
        pass
    return False
