"""Sub-workflows: how a child workflow knows its parent, and its id.

A step with ``workflow`` (instead of ``name``) runs a registered definition as a child
workflow (:mod:`flow.core.kinds.child`); the child knows its parent by
:class:`ParentLink` (on its :class:`~flow.core.state.WorkflowState`). This module holds
only the record and the id, so that the state can carry them without the kind's rules.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

#: Namespace of child workflow ids (:func:`child_id`).
CHILD_NAMESPACE = uuid.UUID("6f1c1d0e-5a7e-4c53-9a61-7c0f3b1e2d4a")


@dataclass(frozen=True)
class ParentLink:
    """Where a child workflow reports: its parent's activity, and the parent's attempt
    that created it. The child's run ``r`` answers the parent's attempt
    ``attempt + r - 1``: a parent's retry-from-failure retries the child (its next
    run) rather than creating another one."""

    workflow_id: str
    position: int
    attempt: int

    def attempt_of_run(self, run: int) -> int:
        """The parent's attempt that the child's run ``run`` answers."""
        return self.attempt + run - 1

    def run_of_attempt(self, attempt: int) -> int:
        """The child's run that answers the parent's ``attempt``."""
        return attempt - self.attempt + 1


def child_id(parent_id: str, activity_id: str) -> str:
    """The id of the child that the activity ``activity_id`` of ``parent_id`` runs: the
    same for every attempt and every redelivery, so there is never a second child. A
    UUID (name-based), so it fits the 36 characters of a workflow id."""
    return str(uuid.uuid5(CHILD_NAMESPACE, f"{parent_id}/{activity_id}"))


__all__ = ["ParentLink", "child_id"]
