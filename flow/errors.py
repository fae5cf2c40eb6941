"""Every error that Libero Flow raises on purpose, rooted at :class:`FlowError`.

Foreign exceptions (psycopg, pika, jsonschema) are translated at the boundary with
``raise ... from e`` so callers only ever catch these. HTTP status codes for them
live in ``api/`` alone.
"""

from __future__ import annotations


class FlowError(Exception):
    """Base class for every error Libero Flow raises on purpose."""


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


class WorkflowNotFound(FlowError):
    """Raised when a workflow id matches no stored workflow."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow with id {workflow_id!r}")


class ConcurrentUpdate(FlowError):
    """Raised when another engine committed a transition for the same workflow first.

    The loser reloads the workflow and decides again (invariant 4).
    """


class WorkflowActorCrashed(FlowError):
    """Raised to the caller when handling an event raised a ``BaseException``
    (``SystemExit``, ``KeyboardInterrupt``) inside a workflow actor.

    Pykka would stop every actor of the process for such an exception; the workflow
    actor turns it into this error instead, so only that event fails (and is retried).
    """


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
