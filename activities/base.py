"""``BaseActivity``: what every activity subclasses."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from flow.core.attributes import MAX_ATTRIBUTES, Typed, typed_value
from flow.core.vocabulary import Outcome
from flow.errors import InvalidInput

if TYPE_CHECKING:
    from flow.wire.attempts import AttemptRequest


class ActivityCancelled(BaseException):  # noqa: N818 - named as what happened, like asyncio's CancelledError
    """Raised by :meth:`BaseActivity.heartbeat` once the engine said to stop: the
    workflow was cancelled, or this attempt is no longer the current one. Let it
    propagate (clean up in ``finally``): the attempt then ends ``Cancelled``. A
    ``BaseException``, so that an activity's ``except Exception`` does not swallow it.
    """


class BaseActivity:
    """One step of a workflow. Subclass it and implement :meth:`do_activity`.

    ``do_activity()`` returns :attr:`SUCCEEDED`, :attr:`TEMPORARY_FAILURE` (tried
    again per the retry policy) or :attr:`PERMANENT_FAILURE` (never retried). An
    exception it raises counts as a temporary failure, with its traceback recorded,
    unless it is one of :attr:`non_retryable_exceptions`.
    Set :attr:`output` to a JSON-serialisable value to hand it to later activities,
    and :attr:`error` to say why an attempt failed.

    The worker builds each instance from its attempt's message with
    :meth:`from_request`; a test builds one with keyword arguments, all but
    ``workflow_id`` optional: ``ResizeImage(workflow_id="w", config={"width": 3})``.
    """

    SUCCEEDED = Outcome.SUCCEEDED
    TEMPORARY_FAILURE = Outcome.TEMPORARY_FAILURE
    PERMANENT_FAILURE = Outcome.PERMANENT_FAILURE

    #: Exceptions that no retry can fix: raised by ``do_activity()`` they fail the
    #: activity permanently (traceback recorded) instead of being retried.
    non_retryable_exceptions: tuple[type[BaseException], ...] = ()

    def __init__(
        self,
        *,
        workflow_id: str,
        input_data: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        attempt: int = 1,
        position: int = 0,
        outputs: Mapping[str, Any] | None = None,
        item: Any = None,
        index: int | None = None,
        last_heartbeat: Any = None,
        compensating: Mapping[str, Any] | None = None,
    ) -> None:
        #: Id of the workflow instance this attempt belongs to.
        self.workflow_id = workflow_id
        #: The workflow's input, as given when it started.
        self.input_data: Mapping[str, Any] = dict(input_data or {})
        #: The workflow's ``config`` overlaid with this activity's own.
        self.config: Mapping[str, Any] = dict(config or {})
        #: 1 for the first attempt, 2 for the first retry, ...
        self.attempt = attempt
        #: Index of this activity in the definition.
        self.position = position
        #: Outputs of the activities that already succeeded, by activity id (the class
        #: name unless the definition gives an id).
        self.outputs: Mapping[str, Any] = dict(outputs or {})
        #: For an activity with ``map``: the item this run is for, and its index in the
        #: list (None otherwise).
        self.item: Any = item
        self.index: int | None = index
        #: What the last heartbeat of an earlier attempt said (``heartbeat(details)``):
        #: where a long job that failed got to, so this attempt can resume from there.
        self.last_heartbeat: Any = last_heartbeat
        #: An undo (``compensate`` in the definition): the activity it undoes, with that
        #: activity's ``input``, ``config`` and ``output``; None for any other activity.
        self.compensating: Mapping[str, Any] | None = dict(compensating) if compensating is not None else None
        # Set by the worker running the attempt (flow.worker.execution); a test may set them.
        self._beat: Callable[[Any], None] | None = None
        self._cancel = threading.Event()
        #: What this attempt hands on; stored with the activity and shown by the API.
        self.output: Any = None
        #: Why this attempt failed, when it returns a failure; shown by the API and CLI.
        self.error: str | None = None
        #: What :meth:`set_attribute` set, typed; sent with the result.
        self.attributes_set: dict[str, Typed] = {}
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"activities.{type(self).__name__}"),
            {"workflow_id": workflow_id, "activity": f"{position}:{type(self).__name__}", "attempt": attempt},
        )

    @classmethod
    def from_request(cls, request: AttemptRequest) -> Self:
        """The instance that runs the attempt ``request`` asks for: the part of the
        message an activity sees (not its class name, time limit or reply queue)."""
        return cls(
            workflow_id=request.workflow_id,
            input_data=request.input_data,
            config=request.config,
            attempt=request.attempt,
            position=request.position,
            outputs=request.outputs,
            item=request.item,
            index=request.index,
            last_heartbeat=request.last_heartbeat,
            compensating=request.compensating,
        )

    def heartbeat(self, details: Any = None) -> None:
        """Say this attempt is alive, and optionally how far it got (JSON ``details``,
        handed to the next attempt as :attr:`last_heartbeat` if this one fails).

        Call it as often as you like: the worker sends at most one heartbeat per half
        ``timeouts.heartbeat_s``. With ``heartbeat_s`` set, an attempt that stops beating
        for that long fails and is retried: a dead worker is noticed in seconds.
        Raises :class:`ActivityCancelled` once the engine said to stop.
        """
        if self._cancel.is_set():
            raise ActivityCancelled(f"attempt {self.attempt} of workflow {self.workflow_id} was cancelled")
        if self._beat is not None:
            self._beat(details)

    def set_attribute(self, name: str, value: str | float | bool | datetime) -> None:
        """Set or change the workflow's search attribute ``name`` (``GET
        /workflows?attr.<name>=...`` finds it). The value's type is the attribute's:
        ``str``, ``int``/``float``, ``bool`` or ``datetime`` (naive means UTC). Committed
        with this attempt's result, whatever its outcome; the last value set wins.
        Raises :class:`~flow.errors.InvalidInput` for another name or value, or for a
        name past the :data:`~flow.core.attributes.MAX_ATTRIBUTES` a result may carry (the
        engine would refuse the whole result, and the workflow would wait for ever)."""
        typed = typed_value(name, value)
        if name not in self.attributes_set and len(self.attributes_set) >= MAX_ATTRIBUTES:
            raise InvalidInput(
                f"set_attribute({name!r})",
                f"an attempt sets at most {MAX_ATTRIBUTES} search attributes (what a result may carry), "
                "and this one already set as many",
            )
        self.attributes_set[name] = typed

    @property
    def cancelled(self) -> bool:
        """True once the engine said to stop this attempt (for activities that poll
        rather than call :meth:`heartbeat`)."""
        return self._cancel.is_set()

    def do_activity(self) -> Outcome | str:
        """Do the work; return one of the three outcome constants."""
        raise NotImplementedError(f"{type(self).__name__} must implement do_activity()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} workflow={self.workflow_id} attempt={self.attempt}>"
