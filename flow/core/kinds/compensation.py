"""``compensation``: the undo of an activity that succeeded, appended when the run fails
(or is cancelled, with ``compensate_on_cancel``) and run once, latest first, while the
workflow is ``Compensating`` (the rules: :mod:`flow.core.saga`; the ending's steps:
:mod:`.ending`).

Its class is the activity's ``compensate`` ``name``, with its own config and retry
policy; it sees the original's input, config and output as ``self.compensating``. Its
permanent failure stops the chain (the undos after it are skipped) and is reported as
the workflow's ``compensation: "failed"``. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from flow.core.kinds.activity import ActivityKind
from flow.core.kinds.base import Line, Tokens
from flow.core.kinds.ending import Compensation, EndingKind
from flow.core.state import ActivityState, StepSpec, WorkflowState
from flow.core.vocabulary import HistoryType


def _started(data: Mapping[str, Any]) -> str:
    ending = str(data.get("ending", "Failed")).lower()
    return f"the run {ending}: its undos run, in this order: {', '.join(data.get('undo', []))}"


class CompensationKind(EndingKind):
    """An undo (see the module docstring)."""

    name: ClassVar[str] = "compensation"
    view_schema: ClassVar[Mapping[str, Any]] = {
        "compensates": {"type": ["string", "null"], "description": "An undo: the id of the activity it undoes."},
    }
    lines: ClassVar[Mapping[HistoryType, Line]] = {
        **ActivityKind.lines,
        HistoryType.START_COMPENSATION: _started,
        HistoryType.END_COMPENSATION: lambda data: f"compensation {data.get('outcome')}",
    }

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        assert isinstance(spec, Compensation)
        return {"compensates": spec.compensates, "ending": spec.ending_as}

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        if graph.get("compensates") is None:
            return None
        return Compensation(graph["compensates"], graph.get("ending", "Failed"))

    def view(self, state: WorkflowState, step: ActivityState, tokens: Tokens | None) -> dict[str, Any]:
        spec = step.spec
        assert isinstance(spec, Compensation)
        return {"compensates": state.activities[spec.compensates].id}

    def note(self, view: Mapping[str, Any]) -> str:
        return f"undoes {view['compensates']}"


COMPENSATION = CompensationKind()

__all__ = ["COMPENSATION", "Compensation", "CompensationKind"]
