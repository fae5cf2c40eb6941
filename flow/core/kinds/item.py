"""``item``: one item of a map (:mod:`flow.core.kinds.map`): the map's activity run for
that item, with its own attempts and retry budget (the attempt rules of
:mod:`flow.core.kinds.activity`). Items come from the map's list when its turn comes,
never from a definition. Their end is their map's business: the next item is scheduled,
or the map ends; a retry-from-failure leaves them to the map's resume, and an item of a
map that stopped running is not retried. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from flow.core.commands import Command
from flow.core.frozen import replace
from flow.core.kinds.activity import ActivityKind
from flow.core.kinds.base import Tokens
from flow.core.kinds.map import Item, item_ended
from flow.core.state import ActivityState, StepSpec, WorkflowState
from flow.core.steps import HistoryEntry
from flow.core.vocabulary import ActivityStatus


class ItemKind(ActivityKind):
    """An item of a map: an activity's attempts (:class:`ActivityKind`), whose end is its
    map's business."""

    name: ClassVar[str] = "item"
    identity: ClassVar[tuple[str, ...]] = ()
    properties: ClassVar[Mapping[str, Any]] = {}
    help: ClassVar[str] = ""
    view_schema: ClassVar[Mapping[str, Any]] = {
        "parent": {"type": ["string", "null"], "description": "An item of a map: the map's id."},
        "index": {"type": ["integer", "null"], "description": "An item of a map: its index in the list."},
        "item": {"description": "An item of a map: the item it runs for."},
    }

    def claims(self, entry: Mapping[str, Any]) -> bool:
        return False  # items come from a map's list, never from a definition

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        assert isinstance(spec, Item)
        return {"parent": spec.map, "index": spec.index, "item": spec.item}

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        return Item(graph["parent"], graph["index"], graph.get("item")) if graph.get("parent") is not None else None

    def may_retry(self, state: WorkflowState, step: ActivityState) -> bool:
        """Not once its map stopped running (it failed, or the workflow's retry reset it):
        its result is recorded, no new attempt is sent for it."""
        parent = step.parent
        return parent is None or state.activities[parent].status is ActivityStatus.RUNNING

    def rerun(self, step: ActivityState) -> ActivityState:
        return step  # a retry-from-failure leaves items to their map's resume (MapKind.start)

    def moved(self, step: ActivityState, parent: int) -> ActivityState:
        return replace(step, spec=replace(_item(step), map=parent))

    def item(self, step: ActivityState) -> tuple[int, Any] | None:
        spec = _item(step)
        return spec.index, spec.item

    def after_end(
        self,
        state: WorkflowState,
        step: ActivityState,
        now: datetime,
        commands: list[Command],
        history: list[HistoryEntry],
    ) -> tuple[WorkflowState, ActivityState | None]:
        return item_ended(state, step, now, commands, history)

    def view(self, state: WorkflowState, step: ActivityState, tokens: Tokens | None) -> dict[str, Any]:
        spec = _item(step)
        return {"parent": state.activities[spec.map].id, "index": spec.index, "item": spec.item}


def _item(step: ActivityState) -> Item:
    assert isinstance(step.spec, Item)
    return step.spec


ITEM = ItemKind()

__all__ = ["ITEM", "ItemKind"]
