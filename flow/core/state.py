"""The state of one workflow instance, as frozen dataclasses.

The database holds the truth; these records are what :func:`flow.core.decide.decide`
reads and returns. Change them with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flow.core.lineage import ChildWorkflow, ParentLink
from flow.core.policy import RetryPolicy, Timeouts
from flow.core.vocabulary import ActivityStatus, Trigger, WorkflowStatus

__all__ = ["ActivityState", "ActivityStatus", "WorkflowState", "WorkflowStatus"]


@dataclass(frozen=True)
class ActivityState:
    """One activity of one workflow instance."""

    #: Index in the definition's ``activities`` list; the activity's id within its workflow.
    position: int
    #: ``BaseActivity`` subclass name.
    name: str
    independent: bool
    required: bool
    #: Effective config: workflow config overlaid with the activity's own.
    config: Mapping[str, Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    status: ActivityStatus = ActivityStatus.PENDING
    #: Number of the current (or last) attempt, 1-based; 0 before the first. Never
    #: reused, so a result always names exactly one attempt.
    attempt: int = 0
    #: Attempts made before the workflow's last retry-from-failure; the retry policy
    #: counts only the attempts after it.
    attempts_before: int = 0
    output: Any = None
    #: Message (and traceback) of the last failed attempt.
    error: str | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: Unique within the workflow (``id`` in the definition; see
    #: :func:`flow.core.graph.default_ids`); outputs are keyed by it. Empty: ``name``.
    id: str = ""
    #: Positions of the activities it waits for; None: the positional rule.
    depends_on: tuple[int, ...] | None = None
    trigger: Trigger = Trigger.ALL_SUCCEEDED
    #: JMESPath condition; a false value skips the activity.
    when: str | None = None
    #: Why it was skipped, when it was.
    skip_reason: str | None = None
    #: The child workflow it runs (``workflow`` in the definition); None: a class.
    child: ChildWorkflow | None = None

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)


@dataclass(frozen=True)
class WorkflowState:
    """One workflow instance: its status and every activity's."""

    id: str
    name: str
    definition_version: int
    status: WorkflowStatus
    input_data: Mapping[str, Any]
    config: Mapping[str, Any]
    activities: tuple[ActivityState, ...]
    created_at: datetime
    #: ``False`` until the engine handled the start (the start-workflow decision).
    started: bool = False
    #: 1, then 2 after the first retry-from-failure, ...
    run: int = 1
    #: When the current run started (its workflow timeout counts from here).
    run_started_at: datetime | None = None
    output: Any = None
    error: str | None = None
    finished_at: datetime | None = None
    #: The W3C ``traceparent`` of the workflow's span (its current run's), which every
    #: attempt it dispatches carries; None while tracing is off. Opaque here: only the
    #: shells (:mod:`flow.tracing`) make or read it, ``decide`` never looks at it.
    traceparent: str | None = None
    #: The parent's activity this child workflow reports to; None: not a child.
    parent: ParentLink | None = None
    #: A lower bound of the first position whose activity has not ended (every
    #: activity before it has), so that finding the next sequential activity costs
    #: O(what changed), not O(activities). Derived, never stored; -1 means unknown.
    frontier: int = field(default=-1, compare=False, repr=False)
    #: For each position, the positions whose ``depends_on`` names it. Derived once
    #: (``replace`` carries it along: the graph never changes), never stored.
    dependents: tuple[tuple[int, ...], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.dependents) != len(self.activities):
            dependents: list[list[int]] = [[] for _ in self.activities]
            for a in self.activities:
                for dependency in a.depends_on or ():
                    dependents[dependency].append(a.position)
            object.__setattr__(self, "dependents", tuple(map(tuple, dependents)))

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts.from_config(self.config)

    def activity(self, position: int) -> ActivityState | None:
        if 0 <= position < len(self.activities):
            return self.activities[position]
        return None

    def __repr__(self) -> str:
        return f"<WorkflowState {self.name} {self.id} {self.status}>"
