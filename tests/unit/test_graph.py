"""Workflows as graphs: ids, ``depends_on`` with its trigger, and ``when`` — validated
in the definition, decided by the pure ``decide()``, rule by rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from flow.core import graph
from flow.core.commands import RunActivity
from flow.core.decide import decide
from flow.core.definition import parse
from flow.core.events import ActivityCompleted, RetryRequested, WorkflowStarted
from flow.core.state import ActivityState, WorkflowState
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, Trigger, WorkflowStatus
from flow.errors import DefinitionError

T0 = datetime(2026, 1, 1, 12, 0, 0)
S = ActivityStatus
KNOWN = {"A", "B", "C", "D"}


def definition(*activities: dict[str, Any]):
    return parse({"name": "g", "activities": list(activities)}, known_activities=KNOWN)


def problems(*activities: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        definition(*activities)
    return caught.value.problems


def state_of(*activities: dict[str, Any], input_data: dict[str, Any] | None = None) -> WorkflowState:
    """A workflow of ``activities`` (definition entries), as ``flow.persistence.starts`` builds it."""
    return WorkflowState(
        id="wf",
        name="g",
        definition_version=1,
        status=WorkflowStatus.IN_PROGRESS,
        input_data=input_data or {},
        config={},
        activities=definition(*activities).initial_activities(),
        created_at=T0,
    )


class Run:
    """Drives a state through decisions, remembering what was scheduled."""

    def __init__(self, state: WorkflowState) -> None:
        self.state = state
        self.clock = 0
        self.decision = self._decide(WorkflowStarted(self._now()))

    def _now(self) -> datetime:
        self.clock += 1
        return T0 + timedelta(seconds=self.clock)

    def _decide(self, event):
        decision = decide(self.state, event)
        self.state = decision.state
        return decision

    def end(self, activity_id: str, outcome: Outcome = Outcome.SUCCEEDED, output: Any = None):
        a = self.activity(activity_id)
        event = ActivityCompleted(a.position, a.attempt, outcome, occurred_at=self._now(), output=output)
        self.decision = self._decide(event)
        return self.decision

    def activity(self, activity_id: str) -> ActivityState:
        return next(a for a in self.state.activities if a.id == activity_id)

    def scheduled(self) -> list[str]:
        """Ids the last decision scheduled."""
        ids = [a.id for a in self.state.activities]
        return [ids[c.position] for c in self.decision.commands if isinstance(c, RunActivity)]

    def status(self, activity_id: str) -> ActivityStatus:
        return self.activity(activity_id).status


# -- validation ---------------------------------------------------------------------


def test_ids_default_to_the_class_name_and_a_repeated_class_numbers_all_but_its_last():
    d = definition({"name": "A"}, {"name": "B"}, {"name": "B"}, {"name": "B"}, {"name": "C", "id": "c"})
    assert [s.id for s in d.activities] == ["A", "B.1", "B.2", "B", "c"]


def test_the_first_release_format_means_what_it_meant():
    d = definition({"name": "A"}, {"name": "B", "independent": True}, {"name": "C"})
    assert [(s.depends_on, d.positions(s)) for s in d.activities] == [(None, None)] * 3


@pytest.mark.parametrize(
    ("activities", "expected"),
    [
        (
            [{"name": "A", "id": "x"}, {"name": "B", "id": "x"}],
            [("$.activities[1].id", "duplicate activity id 'x' (also activity 0)")],
        ),
        (
            [{"name": "A"}, {"name": "B", "depends_on": ["A", "nope"]}],
            [("$.activities[1].depends_on[1]", "unknown activity id 'nope'")],
        ),
        (
            [{"name": "A", "depends_on": ["A"]}],
            [("$.activities[0].depends_on[0]", "an activity cannot depend on itself")],
        ),
        (
            [{"name": "A"}, {"name": "B", "independent": True, "depends_on": ["A"]}],
            [("$.activities[1].independent", "an activity with depends_on cannot also be independent")],
        ),
        (
            [
                {"name": "A", "depends_on": ["C"]},
                {"name": "B", "depends_on": ["A"]},
                {"name": "C", "depends_on": ["B"]},
            ],
            [("$.activities[0].depends_on", "dependency cycle: A -> C -> B -> A")],
        ),
        # B waits for every activity listed before it, A among them.
        (
            [{"name": "A", "depends_on": ["B"]}, {"name": "B"}],
            [("$.activities[0].depends_on", "dependency cycle: A -> B -> A")],
        ),
    ],
)
def test_graph_problems_name_their_json_path(activities, expected):
    assert problems(*activities) == expected


def test_a_condition_that_does_not_compile_is_refused():
    [(path, message)] = problems({"name": "A", "when": "outputs.[["})
    assert path == "$.activities[0].when"
    assert message.startswith("not a JMESPath expression")


def test_a_condition_that_could_copy_the_data_without_bound_is_refused():
    doubling = "input" + " | [@, @]" * 7
    [(path, message)] = problems({"name": "A", "when": doubling})
    assert (path, message) == (
        "$.activities[0].when",
        "too costly: its multi-selects could copy the data 128 times; at most 64",
    )
    definition({"name": "A", "when": "input" + " | [@, @]" * 6})  # 64 copies at most: accepted


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"name": "A", "trigger": "any"}, "$.activities[0].trigger"),
        ({"name": "A", "id": "has space"}, "$.activities[0].id"),
        ({"name": "A", "depends_on": "B"}, "$.activities[0].depends_on"),
        ({"name": "A", "when": ""}, "$.activities[0].when"),
    ],
)
def test_graph_keys_are_checked_by_the_schema(entry, path):
    assert [p for p, _ in problems(entry)] == [path]


def test_a_long_chain_of_dependencies_validates_in_linear_time():
    chain = [{"name": "A", "id": "a0"}]
    chain += [{"name": "A", "id": f"a{i}", "depends_on": [f"a{i - 1}"]} for i in range(1, 1000)]
    assert len(definition(*chain).activities) == 1000


# -- decisions ----------------------------------------------------------------------


def test_a_diamond_runs_each_activity_once_its_dependencies_succeeded():
    run = Run(
        state_of(
            {"name": "A"},
            {"name": "B", "depends_on": ["A"]},
            {"name": "C", "depends_on": ["A"]},
            {"name": "D", "depends_on": ["B", "C"]},
        )
    )
    assert run.scheduled() == ["A"]
    run.end("A")
    assert run.scheduled() == ["B", "C"]
    run.end("C")
    assert run.scheduled() == []
    run.end("B")
    assert run.scheduled() == ["D"]
    run.end("D", output={"done": True})
    assert run.state.status is WorkflowStatus.FINISHED
    assert run.state.output == {"D": {"done": True}}


def test_dependencies_need_not_be_listed_first():
    run = Run(state_of({"name": "A", "depends_on": ["B"]}, {"name": "B", "independent": True}))
    assert run.scheduled() == ["B"]
    run.end("B")
    assert run.scheduled() == ["A"]


def test_a_skip_propagates_through_all_succeeded():
    run = Run(
        state_of(
            {"name": "A", "when": "input.go"},
            {"name": "B", "depends_on": ["A"]},
            {"name": "C", "depends_on": ["B"]},
            {"name": "D", "independent": True},
        )
    )
    assert run.scheduled() == ["D"]
    assert [run.status(i) for i in "ABC"] == [S.SKIPPED] * 3
    assert run.activity("A").skip_reason == "when 'input.go' was null"
    assert run.activity("B").skip_reason == "dependency 'A' was skipped"
    assert run.activity("C").skip_reason == "dependency 'B' was skipped"
    skips = [(h.position, h.data["reason"]) for h in run.decision.history if h.type is HistoryType.SKIP_ACTIVITY]
    assert [p for p, _ in skips] == [0, 1, 2]
    run.end("D")
    assert run.state.status is WorkflowStatus.FINISHED


def test_all_done_joins_after_a_branch():
    run = Run(
        state_of(
            {"name": "A", "id": "check"},
            {"name": "B", "id": "yes", "depends_on": ["check"], "when": "outputs.check.ok"},
            {"name": "C", "id": "no", "depends_on": ["check"], "when": "!(outputs.check.ok)"},
            {"name": "D", "id": "join", "depends_on": ["yes", "no"], "trigger": "all_done"},
        )
    )
    run.end("check", output={"ok": False})
    assert run.scheduled() == ["no"]
    assert run.status("yes") is S.SKIPPED
    assert run.activity("yes").skip_reason == "when 'outputs.check.ok' was false"
    run.end("no")
    assert run.scheduled() == ["join"]


def test_all_succeeded_without_all_done_would_skip_the_join():
    run = Run(
        state_of(
            {"name": "A", "id": "check"},
            {"name": "B", "id": "yes", "depends_on": ["check"], "when": "outputs.check.ok"},
            {"name": "C", "id": "no", "depends_on": ["check"], "when": "!(outputs.check.ok)"},
            {"name": "D", "id": "join", "depends_on": ["yes", "no"]},
        )
    )
    run.end("check", output={"ok": True})
    run.end("yes")
    assert run.status("join") is S.SKIPPED
    assert run.state.status is WorkflowStatus.FINISHED


def test_one_succeeded_runs_on_the_first_success_and_once_only():
    run = Run(
        state_of(
            {"name": "A", "independent": True},
            {"name": "B", "independent": True},
            {"name": "C", "depends_on": ["A", "B"], "trigger": "one_succeeded"},
        )
    )
    assert run.scheduled() == ["A", "B"]
    run.end("B")
    assert run.scheduled() == ["C"]
    run.end("A")  # the race's loser: C is not scheduled again
    assert run.scheduled() == []
    assert run.activity("C").attempt == 1
    run.end("C")
    assert run.state.status is WorkflowStatus.FINISHED


def test_one_succeeded_is_skipped_when_none_succeeded():
    run = Run(
        state_of(
            {"name": "A", "independent": True, "required": False},
            {"name": "B", "independent": True, "required": False},
            {"name": "C", "depends_on": ["A", "B"], "trigger": "one_succeeded"},
        )
    )
    run.end("A", Outcome.PERMANENT_FAILURE)
    assert run.status("C") is S.PENDING
    run.end("B", Outcome.PERMANENT_FAILURE)
    assert run.activity("C").skip_reason == "no dependency succeeded"
    assert run.state.status is WorkflowStatus.FINISHED


def test_an_optional_dependency_that_failed_counts_as_done():
    run = Run(state_of({"name": "A", "required": False}, {"name": "B", "depends_on": ["A"]}))
    run.end("A", Outcome.PERMANENT_FAILURE)
    assert run.scheduled() == ["B"]


def test_a_positional_activity_waits_for_every_one_before_it_including_skipped_ones():
    run = Run(state_of({"name": "A", "when": "`false`"}, {"name": "B"}))
    assert run.status("A") is S.SKIPPED
    assert run.scheduled() == ["B"]


@pytest.mark.parametrize(
    ("expression", "runs"),
    [
        ("input.n", True),  # 0 is true in JMESPath
        ("input.empty", False),
        ("input.none", False),
        ("input.list", True),
        ("input.n == `0`", True),
        ("length(input.list) > `5`", False),
    ],
)
def test_when_follows_jmespath_truth(expression, runs):
    run = Run(state_of({"name": "A", "when": expression}, input_data={"n": 0, "empty": "", "list": [1]}))
    assert (run.scheduled() == ["A"]) is runs


def test_when_reads_outputs_by_id():
    run = Run(state_of({"name": "A", "id": "first"}, {"name": "B", "when": "outputs.first.total > `10`"}))
    run.end("first", output={"total": 11})
    assert run.scheduled() == ["B"]


def test_retry_from_failure_decides_skipped_activities_again():
    run = Run(
        state_of(
            {"name": "A", "independent": True},
            {"name": "B", "independent": True, "when": "input.go"},
            {"name": "C", "depends_on": ["A"]},
        )
    )
    run.end("A", Outcome.PERMANENT_FAILURE)
    assert run.state.status is WorkflowStatus.FAILED
    assert run.activity("C").skip_reason == "the workflow failed"
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.scheduled() == ["A"]
    assert run.activity("C").skip_reason is None
    assert run.activity("B").skip_reason == "when 'input.go' was null"


def test_the_graph_index_is_built_once_and_carried_along():
    run = Run(state_of({"name": "A"}, {"name": "B", "depends_on": ["A"]}))
    before = run.state.dependents
    run.end("A")
    assert run.state.dependents is before
    assert before == ((1,), ())


def test_a_stale_result_changes_nothing_in_a_graph():
    run = Run(state_of({"name": "A"}, {"name": "B", "depends_on": ["A"]}))
    run.end("A")
    a = run.activity("A")
    stale = ActivityCompleted(a.position, a.attempt, Outcome.SUCCEEDED, occurred_at=run._now())
    decision = decide(run.state, stale)
    assert decision.commands == ()
    assert decision.state == run.state


def test_by_trigger_table():
    done, ok, failed = ("x", S.SUCCEEDED), ("y", S.SUCCEEDED), ("f", S.FAILED)
    skipped, pending = ("s", S.SKIPPED), ("p", S.PENDING)
    assert graph.by_trigger(Trigger.ALL_SUCCEEDED, [done, ok]).run
    assert graph.by_trigger(Trigger.ALL_SUCCEEDED, [done, failed]).run
    assert graph.by_trigger(Trigger.ALL_SUCCEEDED, [done, pending]).waits
    assert graph.by_trigger(Trigger.ALL_SUCCEEDED, [done, skipped]).skip == "dependency 's' was skipped"
    assert graph.by_trigger(Trigger.ALL_DONE, [skipped, failed]).run
    assert graph.by_trigger(Trigger.ALL_DONE, [skipped, pending]).waits
    assert graph.by_trigger(Trigger.ONE_SUCCEEDED, [pending, ok]).run
    assert graph.by_trigger(Trigger.ONE_SUCCEEDED, [pending, failed]).waits
    assert graph.by_trigger(Trigger.ONE_SUCCEEDED, [skipped, failed]).skip == "no dependency succeeded"


def test_state_replace_keeps_identity_of_unchanged_fields():
    state = state_of({"name": "A"}, {"name": "B", "depends_on": ["A"]})
    assert replace(state, error="x").dependents is state.dependents


@pytest.mark.parametrize("expression", ["length(input.n)", "input.word > `1`", "sort(input.mixed)"])
def test_a_condition_that_cannot_be_evaluated_fails_its_activity_with_the_reason(expression):
    inputs = {"n": 3, "word": "x", "mixed": [1, "a"]}
    run = Run(state_of({"name": "A", "when": expression}, {"name": "B"}, input_data=inputs))
    assert run.status("A") is S.FAILED
    assert run.activity("A").error.startswith(f"when {expression!r} could not be evaluated: ")
    assert run.state.status is WorkflowStatus.FAILED
    assert "required activity A (position 0) failed: when" in run.state.error
    assert [h.type for h in run.decision.history][-2:] == [HistoryType.FAIL_ACTIVITY, HistoryType.WORKFLOW_FAILURE]


def test_an_optional_activity_whose_condition_fails_lets_the_workflow_go_on():
    run = Run(
        state_of(
            {"name": "A", "independent": True},
            {"name": "B", "independent": True, "required": False, "when": "length(input.n)"},
            {"name": "C", "depends_on": ["B"], "trigger": "all_done"},
        ),
    )
    assert run.status("B") is S.FAILED
    assert run.scheduled() == ["A", "C"]
    run.end("A")
    run.end("C")
    assert run.state.status is WorkflowStatus.FINISHED


# -- regressions found by a hostile review of the graph features ---------------------


def test_review_a_deeply_nested_condition_is_a_problem_not_a_recursion_error():
    """Review (fixed): jmespath's parser recurses once or twice per level; a 1,000-character
    ``when`` of nested ``!``/``(``/``[`` raises RecursionError out of parse() (the API
    answers 500, ``flow validate`` crashes) instead of naming $.activities[0].when."""
    for expression in ["!" * 999 + "@", "(" * 499 + "@" + ")" * 499, "[" * 499 + "@" + "]" * 499]:
        [(path, _)] = problems({"name": "A", "when": expression})
        assert path == "$.activities[0].when"


def _bounded_in_a_child(expression: str, context: dict[str, Any]) -> tuple[int, str]:
    """Evaluate ``by_condition`` in a child process limited to 512 MB of address space
    and 60 s; its exit code and what it printed (the verdict as JSON)."""
    import json
    import subprocess
    import sys

    child = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))\n"
        "from flow.core import graph\n"
        "expression, context = json.load(sys.stdin)\n"
        "v = graph.by_condition(expression, context)\n"
        "why = (v.fail or '').split(' could not be evaluated: ', 1)[-1][:300]\n"
        "print(json.dumps({'run': v.run, 'skip': (v.skip or '')[:300], 'fail': why}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        input=json.dumps([expression, context]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr[-500:]


def _to_string_nested(levels: int) -> str:
    expression = "input"
    for _ in range(levels):
        expression = f"to_string(to_array({expression}))"
    return expression


@pytest.mark.parametrize(
    ("expression", "context"),
    [
        # Each level JSON-escapes the previous one: the backslashes double, so 47 levels
        # (999 characters) build ~2**47 bytes from a 10-byte input. No multi-select.
        (_to_string_nested(47), {"input": {"a": "b"}}),
        # join() repeats a separator as long as the data between every element: a
        # 100 KB input (under FLOW_MAX_PAYLOAD_BYTES) becomes 1.6 GB.
        ("join(to_string(input.w), input.w)", {"input": {"w": ["x"] * 20_000}}),
    ],
    ids=["to_string-nesting", "join-quadratic"],
)
def test_review_a_condition_cannot_grow_the_data_without_a_multi_select(expression, context):
    """Review (fixed): MAX_CONDITION_COPIES counts only multi-selects; to_string/to_array
    nesting (exponential) and join (quadratic) get around it, and the engine evaluates
    the condition inside decide(): memory and CPU without bound. Either validation
    refuses such a condition, or its evaluation stays within a budget and fails the
    activity saying so (not a MemoryError in a process that had room for 512 MB)."""
    assert len(expression) <= graph.MAX_EXPRESSION_CHARS
    try:
        definition({"name": "A", "when": expression})
    except DefinitionError:
        return  # refused at validation: fine
    code, out = _bounded_in_a_child(expression, context)
    assert code == 0, out
    assert "MemoryError" not in out, out


@pytest.mark.parametrize("literal", ['`"\\u0000"`', '`"\\ud800"`'], ids=["NUL", "lone-surrogate"])
def test_review_a_condition_failure_reason_is_text_the_database_can_store(literal):
    """Review (fixed): the reason quotes jmespath's message, which holds the offending value
    as is; a JSON literal in the condition puts a NUL (PostgreSQL refuses it) or a lone
    surrogate (neither SQLite nor PostgreSQL can encode it) in activity.error and the
    history, and the engine's commit raises (see tests/embedded/test_semantics.py)."""
    verdict = graph.by_condition(f"abs({literal})", {"input": {}})
    assert verdict.fail is not None
    assert "\x00" not in verdict.fail
    verdict.fail.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate


def test_review_a_condition_failure_reason_is_bounded():
    """Review (fixed): jmespath's type error quotes the whole value; ``abs(input)`` (or
    ``abs(outputs)``) copies the input and every output into activity.error, the
    fail-activity history entry, the workflow's error and the workflow-failure entry,
    where a skip reason is cut at 200 characters."""
    verdict = graph.by_condition("abs(input)", {"input": {"s": "x" * 100_000}})
    assert verdict.fail is not None
    assert len(verdict.fail) < 2_000


def test_review_a_required_condition_failing_schedules_nothing_in_the_same_decision():
    """Review (fixed): _advance schedules the candidates before the failing one, then fails
    the workflow: RunActivity (and its schedule-to-start timer) for a failed workflow.
    Listed the other way round, the same graph skips A instead: the outcome depends on
    the order of the list."""
    run = Run(
        state_of(
            {"name": "A", "independent": True},
            {"name": "B", "independent": True, "when": "length(input.n)"},
            input_data={"n": 3},
        )
    )
    assert run.state.status is WorkflowStatus.FAILED
    assert [c for c in run.decision.commands if isinstance(c, RunActivity)] == []
    assert run.status("A") is S.SKIPPED


def test_review_each_event_of_a_dense_graph_costs_what_changed():
    """Review (fixed): verdict() builds the full (id, status) list of every dependency of
    every dependent of the activity that ended, so with 640 activities each depending on
    all before it (a definition that fits FLOW_MAX_BODY_BYTES) one event reads ~200,000
    statuses and the whole run ~87 million: 34 s of engine CPU, ~0.05-0.2 s per event,
    where docs/design.md promises O(what changed)."""
    import time

    n = 640
    activities = tuple(
        ActivityState(
            position=i,
            name="A",
            independent=False,
            required=True,
            config={},
            id=f"a{i}",
            depends_on=tuple(range(i)) if i else None,
        )
        for i in range(n)
    )
    state = WorkflowState(
        id="wf",
        name="g",
        definition_version=1,
        status=WorkflowStatus.IN_PROGRESS,
        input_data={},
        config={},
        activities=activities,
        created_at=T0,
    )
    run = Run(state)
    # CPU time of this process, not the wall clock: on a busy machine the wall clock
    # counts other processes' turns (it failed at a load average of 60); the defect cost
    # 5 to 20 s of CPU for these 100 events.
    started = time.process_time()
    for i in range(100):
        run.end(f"a{i}")
    elapsed = time.process_time() - started
    assert run.scheduled() == ["a100"]
    assert elapsed < 1.0, f"100 events took {elapsed:.2f} s of CPU"


def test_review_an_activity_id_with_a_final_newline_is_refused():
    """Review (fixed): jsonschema's pattern uses re.search, where "$" matches before a final
    newline; graph.is_activity_id (with \\Z) exists but problems() never calls it (the
    definition's name has that second check, ids do not)."""
    assert [p for p, _ in problems({"name": "A", "id": "x\n"})] == ["$.activities[0].id"]
    assert [p for p, _ in problems({"name": "A"}, {"name": "B", "depends_on": ["A\n"]})] == [
        "$.activities[1].depends_on[0]"
    ]


def test_review_an_explicit_id_taking_a_default_id_names_a_path_that_exists():
    """Review (fixed): activity 0's explicit id "A.1" is the default id of activity 1, and
    the problem is reported at $.activities[1].id, a key activity 1 does not have."""
    [(path, _)] = problems({"name": "A", "id": "A.1"}, {"name": "A"}, {"name": "A"})
    assert path in ("$.activities[0].id", "$.activities[1]")


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"name": "B", "trigger": "one_succeeded"}, "$.activities[1].trigger"),
        ({"name": "B", "depends_on": []}, "$.activities[1].depends_on"),
    ],
    ids=["trigger-without-depends_on", "empty-depends_on"],
)
def test_review_graph_keys_that_mean_nothing_are_refused(entry, path):
    """Review (fixed): a trigger without depends_on is silently ignored, and an
    empty depends_on makes an activity independent (all_succeeded) or always skipped
    (one_succeeded: "no dependency succeeded"), where independent + depends_on is refused."""
    assert [p for p, _ in problems({"name": "A"}, entry)] == [path]


def test_review_a_first_release_definition_repeating_a_class_keeps_its_output_keys():
    """Review (fixed): the first release keyed the workflow's output and each activity's
    ``outputs`` by class name (a later position winning); default ids make them
    ``B.1``/``B.2`` for a class listed twice, so an unchanged definition's output changes
    shape after the upgrade and ``self.outputs["B"]`` raises KeyError (while workflows
    in flight at the upgrade, whose graph column is null, keep "B" twice)."""
    from flow.wire.attempts import Outputs

    run = Run(state_of({"name": "A"}, {"name": "B"}, {"name": "B"}, {"name": "C"}))
    run.end("A", output={"a": 1})
    run.end(run.state.activities[1].id, output={"b": 1})
    run.end(run.state.activities[2].id, output={"b": 2})
    assert Outputs(run.state).for_activity(3).get("B") == {"b": 2}
    run.end("C")
    assert run.state.output.get("B") == {"b": 2}
