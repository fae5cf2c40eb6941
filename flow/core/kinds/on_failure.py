"""``on_failure``: the workflow's failure handler (its config's ``on_failure``), appended
when the run fails for good, after the undos (:mod:`flow.core.saga`, :mod:`.ending`), and
run once with the failure as its input (``failed_activity``, ``error``, the outputs so
far, how the compensation went). A class runs as an activity (its own retry policy); a
definition runs as a child workflow, started as any child is. Its outcome is recorded on
the step; the workflow ends ``Failed`` whatever it is. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from flow.core import saga
from flow.core.kinds.activity import ActivityKind
from flow.core.kinds.base import Line, StepKind, Tokens
from flow.core.kinds.child import Lookup, unknown_definition
from flow.core.kinds.ending import EndingKind, FailureHandler
from flow.core.lineage import child_id
from flow.core.state import ActivityState, StepSpec, WorkflowState
from flow.core.vocabulary import HistoryType


class OnFailureKind(EndingKind):
    """The failure handler (see the module docstring)."""

    name: ClassVar[str] = "on_failure"
    view_schema: ClassVar[Mapping[str, Any]] = {
        "handles": {
            "type": ["string", "null"],
            "description": "The failure handler: the activity whose failure failed the run (null: a timeout).",
        },
    }
    lines: ClassVar[Mapping[HistoryType, Line]] = {
        **ActivityKind.lines,
        HistoryType.START_FAILURE_HANDLER: lambda data: "the failure handler runs",
    }

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        assert isinstance(spec, FailureHandler)
        return {
            "on_failure": {
                "name": spec.activity,
                "workflow": spec.definition or None,
                "version": spec.version,
                "failed_activity": spec.failed_activity,
                "ending": spec.ending_as,
            }
        }

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        found = graph.get("on_failure")
        if not found:
            return None
        return FailureHandler(
            definition=found.get("workflow") or "",
            version=found.get("version"),
            activity=found.get("name"),
            failed_activity=found.get("failed_activity"),
            ending_as=found.get("ending", "Failed"),
        )

    def view(self, state: WorkflowState, step: ActivityState, tokens: Tokens | None) -> dict[str, Any]:
        spec = step.spec
        assert isinstance(spec, FailureHandler)
        found: dict[str, Any] = {"handles": spec.failed_activity}
        if spec.activity is None:  # a child workflow: the child's keys too
            found["workflow"] = {"name": spec.definition, "version": spec.version, "input": None}
            found["child_id"] = child_id(state.id, step.id) if step.attempt else None
        return found

    def label(self, view: Mapping[str, Any]) -> str:
        return StepKind.label(self, view)

    def note(self, view: Mapping[str, Any]) -> str:
        return f"child workflow {view['child_id']}" if view.get("child_id") else "failure handler"


def unknown_handler(body: Mapping[str, Any], lookup: Lookup) -> list[tuple[str, str]]:
    """The problem of a definition whose ``on_failure`` runs a definition that ``lookup``
    does not find, worded as a child step's unknown definition. Every place that checks
    a definition's children against the others asks this too (PUT /definitions, the
    definitions directory's registration, ``flow validate``), so they agree."""
    handler = saga.handler_workflow(body)
    if handler is None or lookup(*handler) is not None:
        return []
    return [("$.config.on_failure.workflow", unknown_definition(*handler))]


ON_FAILURE = OnFailureKind()

__all__ = ["ON_FAILURE", "OnFailureKind", "unknown_handler"]
