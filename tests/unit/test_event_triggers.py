"""Event triggers, the pure part (flow/core/event_triggers.py): which triggers an event
matches and the input each gives, the debounce and batch windows' arithmetic, and the
definition's ``triggers`` refused with the field named."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from flow.core.definition import parse
from flow.core.event_triggers import (
    DEBOUNCE_CAP,
    Event,
    EventTrigger,
    Match,
    Miss,
    Mode,
    Window,
    add,
    from_body,
    has_closed,
    match,
    outgrows,
    parse_event,
    window_workflow_id,
    workflow_input,
)
from flow.errors import DefinitionError, InvalidInput

T0 = datetime(2026, 12, 7, 9, 0, 0)
ORDER = Event("order.updated", "evt-1", {"order_id": 42, "status": "paid", "total": 120})


def trigger(**keys) -> EventTrigger:
    return EventTrigger(definition="OrderSync", index=0, event=keys.pop("event", "order.updated"), **keys)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # No condition, no input expression: the event's data, in the window of no key.
        (trigger(), Match(trigger(), {"order_id": 42, "status": "paid", "total": 120}, "")),
        (trigger(when="data.status == 'paid'"), Match(trigger(when="data.status == 'paid'"), dict(ORDER.data))),
        (
            trigger(when="data.total > `100`", input="{order: data.order_id}"),
            Match(trigger(when="data.total > `100`", input="{order: data.order_id}"), {"order": 42}),
        ),
        # The key is text: the number 42 and the string "42" are one key.
        (trigger(key="data.order_id"), Match(trigger(key="data.order_id"), dict(ORDER.data), "42")),
        (
            trigger(input="{type: type, id: id}"),
            Match(trigger(input="{type: type, id: id}"), {"type": "order.updated", "id": "evt-1"}),
        ),
    ],
)
def test_a_matching_trigger_gives_its_input_and_key(given, expected):
    assert match([given], ORDER) == [expected]


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (trigger(when="data.status == 'cancelled'"), """when "data.status == 'cancelled'" was false"""),
        (trigger(input="data.order_id"), "input 'data.order_id' gave 42, not an object"),
        (trigger(key="data.customer"), "key 'data.customer' is null for this event"),
        (trigger(when="length(`3`)"), "when 'length(`3`)' could not be evaluated"),
    ],
)
def test_a_trigger_that_does_not_match_says_why(given, reason):
    [missed] = match([given], ORDER)
    assert isinstance(missed, Miss)
    assert missed.reason.startswith(reason), missed


def test_only_the_triggers_of_the_events_type_are_asked():
    other = trigger(event="order.created")
    mine = trigger()
    assert match([other, mine, other], ORDER) == [Match(mine, dict(ORDER.data))]
    assert match([other], ORDER) == []


def test_an_immediate_trigger_closes_a_window_of_one_event_at_once():
    still_open, closed = add(trigger(), None, {"a": 1}, T0)
    assert still_open is None
    assert closed is not None and closed.inputs == ({"a": 1},) and closed.closes_at == T0


def test_debounce_keeps_the_last_input_and_closes_after_the_last_event():
    debounce = trigger(key="data.order_id", debounce_s=2)
    assert debounce.mode is Mode.DEBOUNCE
    window = None
    for second in range(5):  # an event every second: the window stays open
        window, closed = add(debounce, window, {"seq": second}, T0 + timedelta(seconds=second))
        assert closed is None
    assert window is not None
    assert window.inputs == ({"seq": 4},) and window.count == 5
    assert window.opened_at == T0 and window.closes_at == T0 + timedelta(seconds=6)
    assert workflow_input(debounce, window.inputs) == {"seq": 4}


def test_a_debounce_window_that_never_goes_quiet_still_closes_after_its_cap():
    debounce = trigger(debounce_s=2)
    window = None
    for second in range(0, 100):
        window, _ = add(debounce, window, {"seq": second}, T0 + timedelta(seconds=second))
    assert window is not None and window.closes_at == T0 + timedelta(seconds=2 * DEBOUNCE_CAP)


@pytest.mark.parametrize(
    ("events", "closed_sizes", "left_open"),
    [(1, [], 1), (9, [], 9), (10, [10], 0), (25, [10, 10], 5), (30, [10, 10, 10], 0)],
)
def test_a_batch_closes_when_full_and_the_next_event_opens_another(events, closed_sizes, left_open):
    batch = trigger(batch_max=10, batch_wait_s=5)
    assert batch.mode is Mode.BATCH
    window, closed_sizes_seen = None, []
    for n in range(events):
        window, closed = add(batch, window, {"n": n}, T0 + timedelta(milliseconds=n))
        if closed is not None:
            closed_sizes_seen.append(closed.count)
            assert workflow_input(batch, closed.inputs)["events"][0] == {"n": n - 9}  # oldest first
    assert closed_sizes_seen == closed_sizes
    assert (window.count if window else 0) == left_open
    if window is not None:  # it closes wait_s after its first event, not its last
        assert window.closes_at == window.opened_at + timedelta(seconds=5)


@pytest.mark.parametrize(("seconds_after_close", "closed"), [(-0.001, False), (0, True), (1, True)])
def test_a_window_has_closed_from_its_closing_time_on(seconds_after_close, closed):
    window, _ = add(trigger(debounce_s=2), None, {}, T0)
    assert window is not None
    assert has_closed(window, window.closes_at + timedelta(seconds=seconds_after_close)) is closed


def test_a_window_s_workflow_id_is_derived_from_the_event_that_opened_it():
    first = window_workflow_id("evt-1", T0, trigger())
    assert first == window_workflow_id("evt-1", T0, trigger())
    assert first != window_workflow_id("evt-1", T0, EventTrigger("OrderSync", 1, "order.updated"))
    # The same id received again after the dedup window is another event.
    assert first != window_workflow_id("evt-1", T0 + timedelta(days=2), trigger())


BASE = {"name": "OrderSync", "activities": [{"name": "NoopActivity"}]}


def test_a_definition_s_triggers_are_read():
    body = {
        **BASE,
        "triggers": [
            {"event": "order.updated", "key": "data.order_id", "debounce_s": 2},
            {"event": "file.uploaded", "batch": {"max": 100, "wait_s": 5}},
        ],
    }
    definition = parse(body, known_activities={"NoopActivity"})
    assert definition.triggers == from_body(body)
    assert [t.mode for t in definition.triggers] == [Mode.DEBOUNCE, Mode.BATCH]
    assert definition.triggers[1].batch_max == 100 and definition.triggers[1].index == 1


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"event": "order.updated", "when": "data.["}, "$.triggers[0].when"),
        ({"event": "order.updated", "input": "{a:"}, "$.triggers[0].input"),
        ({"event": "order.updated", "key": ")"}, "$.triggers[0].key"),
        ({"event": "order.updated", "debounce_s": -2}, "$.triggers[0].debounce_s"),
        ({"event": "order.updated", "debounce_s": 0}, "$.triggers[0].debounce_s"),
        ({"event": "order.updated", "batch": {"max": 0, "wait_s": 5}}, "$.triggers[0].batch.max"),
        ({"event": "order.updated", "batch": {"max": 10, "wait_s": -1}}, "$.triggers[0].batch.wait_s"),
        ({"event": "order.updated", "batch": {"max": 10}}, "$.triggers[0].batch"),
        ({"event": "order.updated", "debounce_s": 2, "batch": {"max": 10, "wait_s": 5}}, "$.triggers[0]"),
        ({"event": "not a type!"}, "$.triggers[0].event"),
        ({"event": "order.updated", "every": 3}, "$.triggers[0]"),
        ({"when": "data.paid"}, "$.triggers[0]"),
    ],
)
def test_a_bad_trigger_is_refused_naming_its_field(entry, path):
    with pytest.raises(DefinitionError) as raised:
        parse({**BASE, "triggers": [entry]}, known_activities={"NoopActivity"})
    assert path in [p for p, _ in raised.value.problems], raised.value.problems


def test_an_event_is_read_strictly():
    assert parse_event({"type": "order.updated", "id": "e-1"}) == Event("order.updated", "e-1", {})
    for body, path in [
        ({"id": "e-1"}, "$.type"),
        ({"type": "order.updated"}, "$.id"),
        ({"type": "order.updated", "id": ""}, "$.id"),
        ({"type": "order.updated\n", "id": "e"}, "$.type"),
        ({"type": "order.updated", "id": "e", "data": [1]}, "$.data"),
        ({"type": "order.updated", "id": "e\x00"}, "$.id"),
        ({"type": "order.updated", "id": "e", "extra": 1}, "$.extra"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            parse_event(body)
        assert raised.value.path == path, (body, raised.value)


@pytest.mark.parametrize(
    ("trigger", "held", "max_bytes", "expected"),
    [
        # {"events": [{"n": 0}, {"n": 1}]} is 32 bytes of JSON.
        (EventTrigger("B", 0, "e", batch_max=10, batch_wait_s=5), 1, 32, False),
        (EventTrigger("B", 0, "e", batch_max=10, batch_wait_s=5), 1, 31, True),
        (EventTrigger("B", 0, "e", batch_max=10, batch_wait_s=5), 0, 1, False),  # an empty batch takes any event
        (EventTrigger("B", 0, "e", batch_max=10, batch_wait_s=5), 1, None, False),
        (EventTrigger("D", 0, "e", debounce_s=2), 1, 1, False),  # a debounce window holds one input
    ],
)
def test_a_batch_outgrows_the_input_limit_only_with_the_event_that_would_pass_it(trigger, held, max_bytes, expected):
    window = add(trigger, None, {"n": 0}, T0)[0] if held else None
    window = window or Window(T0, T0, (), 0)
    assert outgrows(trigger, window, {"n": 1}, max_bytes) is expected
