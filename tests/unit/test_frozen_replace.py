"""``flow.core.frozen.replace`` (issue 25): the record ``dataclasses.replace`` makes, for
the core's frozen dataclasses, including what their ``__post_init__`` derives."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass

import pytest

from flow.core.frozen import replace
from flow.core.vocabulary import ActivityStatus
from tests.unit.test_graph import state_of


def test_an_activity_replaced_is_the_record_dataclasses_replace_makes():
    state = state_of({"name": "A"}, {"name": "B", "id": "b"})
    for activity in state.activities:
        for changes in ({"status": ActivityStatus.SUCCEEDED, "attempt": 2}, {"id": ""}, {}):
            fast, slow = replace(activity, **changes), dataclasses.replace(activity, **changes)
            assert fast == slow and fast.__dict__ == slow.__dict__ and fast is not activity


def test_a_state_whose_steps_grow_derives_its_dependents_and_items_again():
    state = state_of({"name": "A"}, {"name": "B"})
    shorter = replace(state, activities=state.activities[:1])
    assert shorter.__dict__ == dataclasses.replace(state, activities=state.activities[:1]).__dict__
    assert len(shorter.dependents) == len(shorter.items) == 1 and shorter.size == 1


def test_an_unknown_field_is_refused_as_dataclasses_replace_refuses_it():
    with pytest.raises(TypeError):
        replace(state_of({"name": "A"}).activities[0], colour="red")


@dataclass(frozen=True)
class WithInitVar:
    x: int
    scale: InitVar[int] = 1

    def __post_init__(self, scale: int) -> None:
        object.__setattr__(self, "x", self.x * scale)


def test_a_class_with_an_init_var_goes_through_dataclasses_replace():
    assert replace(WithInitVar(2, 3), scale=1).x == 6  # InitVars must be given again: as dataclasses does
