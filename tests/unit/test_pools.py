"""Worker pools: the definition's ``queue`` key, its storage, and where planning sends
an attempt (docs/design.md, "Worker pools")."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest

from api.views import activity_view
from flow.core import kinds, pools
from flow.core.commands import RunActivity
from flow.core.events import TimerFired
from flow.core.vocabulary import ActivityStatus, Outcome, TimerKind
from flow.engine.planning import Routes, plan
from flow.persistence.mapping import ACTIVITY_COLUMNS, activity_from_row, activity_row
from flow.process.inprocess import InProcessBroker
from flow.process.queue_depths import QueueDepths
from flow.settings import Settings
from tests.unit.test_graph import T0, Run, definition, problems, state_of

ROUTES = Routes(partition=0, reply_to="flow.engine.0", activity_queue="flow.activities")


def sent_to(run: Run) -> dict[str, str]:
    """The queue of each attempt the last decision sent, by step id."""
    planned = plan(run.state, ((c, T0) for c in run.decision.commands), ROUTES, send_after=T0)
    runs = [c for c in run.decision.commands if isinstance(c, RunActivity)]
    return {run.state.activities[c.position].id: o.queue_name for c, o in zip(runs, planned.owed, strict=True)}


# -- the definition ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "queue"),
    [
        ({"name": "A"}, None),
        ({"name": "A", "queue": "gpu"}, "gpu"),
        ({"name": "A", "queue": "default"}, None),  # the default pool, said out loud
        ({"name": "A", "queue": "a"}, "a"),
        ({"name": "A", "queue": "x" * 40}, "x" * 40),
        ({"name": "A", "queue": "big-mem_2"}, "big-mem_2"),
        ({"name": "A", "id": "each", "map": {"over": "input.items"}, "queue": "gpu"}, "gpu"),
    ],
)
def test_an_activity_or_a_map_may_name_its_pool(entry: dict[str, Any], queue: str | None):
    assert definition(entry).activities[0].queue == queue
    assert definition(entry).initial_activities()[0].queue == queue


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"name": "A", "queue": "GPU"}, "'GPU' is not a worker pool"),
        ({"name": "A", "queue": ""}, "'' is not a worker pool"),
        ({"name": "A", "queue": "1gpu"}, "starting with a letter"),
        ({"name": "A", "queue": "x" * 41}, "1 to 40 lowercase"),
        ({"name": "A", "queue": "gpu.big"}, "is not a worker pool"),
        ({"name": "A", "queue": "gpu\n"}, "is not a worker pool"),
        ({"name": "A", "queue": 3}, "is not of type 'string'"),
        ({"sleep_s": 1, "queue": "gpu"}, "a sleep (sleep_s or sleep_until) runs on none"),
        ({"wait_for": "go", "queue": "gpu"}, "a wait for a signal (wait_for) runs on none"),
        ({"workflow": "g2", "queue": "gpu"}, "a child workflow (workflow: a definition's name) runs on none"),
    ],
)
def test_a_bad_queue_is_refused_with_its_path_and_why(entry: dict[str, Any], words: str):
    found = problems(entry)
    assert [path for path, _ in found] == ["$.activities[0].queue"], found
    assert words in found[0][1], found


def test_pool_names_and_their_queues():
    assert pools.pool_queue("flow.activities", None) == "flow.activities"
    assert pools.pool_queue("flow.activities", "default") == "flow.activities"
    assert pools.pool_queue("flow.activities", "gpu") == "flow.activities.gpu"
    assert pools.pool_of("flow.activities", "flow.activities") == "default"
    assert pools.pool_of("flow.activities", "flow.activities.gpu") == "gpu"
    for other in ("flow.engine", "flow.activities.default", "flow.activities.GPU", "x.activities.gpu"):
        assert pools.pool_of("flow.activities", other) is None, other
    assert pools.pool_queues("p.activities", ["gpu", "default", "gpu"]) == ("p.activities.gpu", "p.activities")


# -- routing ----------------------------------------------------------------------------------


def test_an_attempt_goes_to_its_pools_queue_and_the_others_to_the_default_one():
    run = Run(state_of({"name": "A", "queue": "gpu", "independent": True}, {"name": "B", "independent": True}))
    assert sent_to(run) == {"A": "flow.activities.gpu", "B": "flow.activities"}


def test_a_retry_goes_to_the_same_pool():
    run = Run(state_of({"name": "A", "queue": "gpu"}))
    run.end("A", outcome=Outcome.TEMPORARY_FAILURE)
    step = run.activity("A")
    assert step.status is ActivityStatus.WAITING_RETRY
    run.decision = run._decide(TimerFired(TimerKind.RETRY, step.position, step.attempt + 1, T0))
    assert sent_to(run) == {"A": "flow.activities.gpu"}


def test_a_maps_items_inherit_its_pool():
    run = Run(
        state_of(
            {"name": "A", "id": "each", "map": {"over": "input.items"}, "queue": "gpu"}, input_data={"items": [1, 2]}
        )
    )
    assert sent_to(run) == {"each[0]": "flow.activities.gpu", "each[1]": "flow.activities.gpu"}


# -- storage ----------------------------------------------------------------------------------


def test_a_step_read_back_from_its_row_keeps_its_pool():
    """An engine restart reads the steps from their rows: the pool must be there."""
    run = Run(
        state_of(
            {"name": "A", "queue": "gpu"},
            {"name": "A", "id": "each", "map": {"over": "input.items"}, "queue": "gpu"},
            {"name": "B"},
            input_data={"items": [1]},
        )
    )
    for step in run.state.activities:
        row = activity_row(run.state.id, step)
        back = activity_from_row(tuple(row[c.strip()] for c in ACTIVITY_COLUMNS.split(",")))
        assert back.queue == step.queue
    assert [a.queue for a in run.state.activities] == ["gpu", "gpu", None]


# -- visibility -------------------------------------------------------------------------------


def test_a_step_scheduled_on_a_named_pool_says_what_it_waits_for():
    run = Run(state_of({"name": "A", "queue": "gpu", "independent": True}, {"name": "B", "independent": True}))
    ids = [a.id for a in run.state.activities]
    gpu, default = run.state.activities
    assert (
        activity_view(run.state, gpu, ids, queued={"gpu": 3})["waiting_for"] == "waiting for a worker on gpu (3 queued)"
    )
    assert (
        activity_view(run.state, gpu, ids)["waiting_for"] == "waiting for a worker on gpu"
    )  # the broker did not answer
    assert activity_view(run.state, gpu, ids)["queue"] == "gpu"
    assert activity_view(run.state, default, ids)["queue"] is None
    assert activity_view(run.state, default, ids)["waiting_for"] is None
    run.end("A")
    assert activity_view(run.state, run.activity("A"), ids, queued={"gpu": 3})["waiting_for"] is None


def test_the_pools_of_definitions_list_the_default_first_and_who_names_each():
    bodies = [
        {"name": "Train", "activities": [{"name": "A", "queue": "gpu"}, {"name": "B"}]},
        {"name": "Sleepy", "activities": [{"sleep_s": 1}]},
        {"name": "Big", "activities": [{"name": "A", "queue": "big-mem"}, {"name": "A", "queue": "gpu"}]},
        {"name": "Plain", "activities": [{"name": "A", "queue": "default"}]},
    ]
    assert pools.pools_of_definitions(bodies) == {
        "default": ["Train", "Sleepy", "Plain"],
        "big-mem": ["Big"],
        "gpu": ["Train", "Big"],
    }
    assert pools.pools_of_definitions([]) == {"default": []}


def test_queue_depths_count_the_in_process_queues_and_keep_a_count_for_their_ttl():
    broker = InProcessBroker()
    broker.declare_queue("flow.activities.gpu")
    now = [0.0]
    depths = QueueDepths(Settings(broker_url="stub://"), broker, ttl_s=2, clock=lambda: now[0])
    assert depths.of(["flow.activities.gpu", "flow.activities.none"]) == {
        "flow.activities.gpu": 0,
        "flow.activities.none": 0,
    }
    broker.enqueue(dramatiq.Message("flow.activities.gpu", "flow.run_activity", (), {}, {}))
    assert depths.of(["flow.activities.gpu"]) == {"flow.activities.gpu": 0}  # within the TTL
    now[0] = 2.0
    assert depths.of(["flow.activities.gpu"]) == {"flow.activities.gpu": 1}


def test_queue_depths_are_unknown_when_rabbitmq_does_not_answer():
    depths = QueueDepths(Settings(broker_url="amqp://guest:guest@127.0.0.1:1/"), None)
    assert depths.of(["flow.activities.gpu"]) == {"flow.activities.gpu": None}


def test_flow_run_says_which_pool_an_attempt_was_sent_to():
    data = {"attempt": 1}
    gpu, default = {"kind": "activity", "queue": "gpu"}, {"kind": "item", "queue": None}
    assert kinds.line("schedule-activity", data, gpu, {}) == "scheduled on pool gpu"
    assert kinds.line("schedule-activity", data, {**gpu, "kind": "item"}, {}) == "scheduled on pool gpu"
    assert kinds.line("schedule-activity", data, default, {}) == "scheduled"
    assert kinds.line("activity-started", data, gpu, {}) == "started"
