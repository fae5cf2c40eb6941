"""``child``: a step that runs a registered definition as a child workflow (``workflow``
in the definition, instead of ``name``).

- The child's id is derived from the parent's id and the step's id
  (:func:`flow.core.lineage.child_id`): a redelivery or a retry never starts a second child.
- Its turn is an attempt, as an activity's (:mod:`flow.core.kinds.activity`), sent as a
  :class:`~flow.core.commands.RunChild`: the engine's plan turns it into a start of the
  child on the shared engine queue. Its input is a JMESPath expression over ``{"input":
  ..., "outputs": {id: output}}`` (:func:`child_input`, evaluated when the attempt is
  sent); it must give an object.
- Its end is the step's result (:func:`report`): finished is ``SUCCEEDED`` with the
  child's output; failed or cancelled is ``PERMANENT_FAILURE`` with its error. A child
  has no retries, timeouts or heartbeats of its own as a step: its definition has them.
- The parent's end (cancelled or failed) cancels the child in flight
  (:class:`~flow.core.commands.CancelChild`): Temporal's default parent-close policy.
  A parent retried before that child's end has reached it runs the child again when it
  does (:meth:`ChildKind.attempt_ended`), instead of failing of the old run's end.
- A definition that reaches itself through children is refused (:func:`cycle_problems`).

Pure: the shells call these.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from flow.core import graph, strict_json
from flow.core.commands import CancelChild, Command, RunActivity, RunChild
from flow.core.events import ActivityCompleted, ActivityHeartbeat
from flow.core.frozen import replace
from flow.core.kinds.activity import ActivityKind
from flow.core.kinds.base import Answer, PathOf, Tokens
from flow.core.lineage import child_id
from flow.core.policy import Timeouts
from flow.core.state import ActivityState, StepSpec, WorkflowState
from flow.core.steps import Decision, HistoryEntry, pending_again
from flow.core.vocabulary import HistoryType, Outcome, TimerKind, WorkflowStatus
from flow.errors import InvalidJson

#: Deepest chain of children (a parent, its child, the child's child...): a guard at
#: run time besides the refusal of recursive definitions at validation.
MAX_NESTING = 10
#: Most definitions one recursion check reads.
MAX_CHECKED = 1000

#: Finds a registered definition's body by name and version (None: the newest); None
#: when there is none.
Lookup = Callable[[str, int | None], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Child(StepSpec):
    """What a child step runs: a registered definition with an input."""

    kind: ClassVar[str] = "child"
    #: The definition's name.
    definition: str
    #: Its version; None: the newest one when the parent was started (pinned then, so
    #: a parent's state read back has a version unless the definition was missing).
    version: int | None = None
    #: JMESPath expression over ``{"input": ..., "outputs": {id: output}}`` giving the
    #: child's input (a JSON object); None: the parent's input.
    input: str | None = None
    #: Reset by a rerun of its parent (:mod:`flow.core.rerun`): its next attempt reruns a
    #: child that ended, finished or not, where a retry would take a finished child's output.
    fresh: bool = False


class ChildKind(ActivityKind):
    """A child workflow (see the module docstring)."""

    name: ClassVar[str] = "child"
    identity: ClassVar[tuple[str, ...]] = ("workflow",)
    properties: ClassVar[Mapping[str, Any]] = {
        "workflow": {"type": "string", "pattern": graph.NAME_PATTERN},
        "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "input": {"type": "string", "minLength": 1, "maxLength": graph.MAX_EXPRESSION_CHARS},
    }
    dependent_required: ClassVar[Mapping[str, list[str]]] = {"version": ["workflow"], "input": ["workflow"]}
    help: ClassVar[str] = "a child workflow (workflow: a definition's name)"
    runs_on_workers: ClassVar[bool] = False
    takes_queue: ClassVar[bool] = False  # a child's activities name their own pools
    view_schema: ClassVar[Mapping[str, Any]] = {
        "workflow": {
            "type": ["object", "null"],
            "description": "A child step: the definition it runs as a child workflow.",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": ["integer", "null"]},
                "input": {"type": ["string", "null"]},
            },
        },
        "child_id": {"type": ["string", "null"], "description": "A child step's child workflow, once run."},
    }

    def claims(self, entry: Mapping[str, Any]) -> bool:
        return "workflow" in entry

    def default_name(self, entry: Mapping[str, Any]) -> str:
        return str(entry["workflow"])

    def problems(
        self, entry: Mapping[str, Any], path: PathOf, known_activities: Collection[str]
    ) -> list[tuple[str, str]]:
        """A ``config`` (a child's definition has its own), an ``input`` that does not compile."""
        found = []
        if "config" in entry:
            found.append((path("config"), "a child workflow activity takes no config: its definition has one"))
        if "input" in entry:
            found += graph.expression_problems(entry["input"], path("input"))
        return found

    def parse(self, entry: Mapping[str, Any]) -> StepSpec:
        return Child(entry["workflow"], entry.get("version"), entry.get("input"))

    def step_timeouts(self, timeouts: Timeouts) -> Timeouts:
        return Timeouts()  # its definition's workflow_s bounds it

    def to_json(self, spec: StepSpec) -> dict[str, Any]:
        assert isinstance(spec, Child)
        stored: dict[str, Any] = {"name": spec.definition, "version": spec.version}
        if spec.input is not None:
            stored["input"] = spec.input
        if spec.fresh:
            stored["fresh"] = True
        return {"workflow": stored}

    def from_json(self, graph: Mapping[str, Any]) -> StepSpec | None:
        found = graph.get("workflow")
        if not found:
            return None
        return Child(found["name"], found.get("version"), found.get("input"), bool(found.get("fresh")))

    # -- decide ----------------------------------------------------------------------------

    def reset(self, step: ActivityState) -> ActivityState:
        """A reset child step reruns its child, even one that finished (:class:`Child` ``fresh``)."""
        return pending_again(replace(step, spec=replace(step.spec, fresh=True)))

    def run(self, step: ActivityState, attempt: int) -> RunActivity | RunChild:
        return RunChild(step.position, attempt)

    def on_heartbeat(self, state: WorkflowState, step: ActivityState, event: ActivityHeartbeat) -> Decision:
        return super(ActivityKind, self).on_heartbeat(state, step, event)  # a child sends none: stale

    def on_cancel(self, step: ActivityState) -> list[Command]:
        return [CancelChild(step.position)] if step.status.in_flight else []

    def attempt_ended(
        self,
        state: WorkflowState,
        step: ActivityState,
        outcome: Outcome,
        now: datetime,
        history: list[HistoryEntry],
        *,
        fired: TimerKind | None = None,
    ) -> Answer:
        """A child of the run before a retry-from-failure (marked by :meth:`outlived`) that did
        not succeed was cancelled by that run's end, or never created for it: the
        activity runs again at once (the child's next run), as an attempt stopped by a
        cancel does. Without this, the parent's new run would fail of the old run's end."""
        if outcome is not Outcome.SUCCEEDED and step.attempt == step.attempts_before and state.runs(step):
            outcome = Outcome.CANCELLED
        return super().attempt_ended(state, step, outcome, now, history, fired=fired)

    # -- views -----------------------------------------------------------------------------

    def view(self, state: WorkflowState, step: ActivityState, tokens: Tokens | None) -> dict[str, Any]:
        spec = _child(step)
        return {
            "workflow": {"name": spec.definition, "version": spec.version, "input": spec.input},
            "child_id": child_id(state.id, step.id) if step.attempt else None,
        }

    def label(self, view: Mapping[str, Any]) -> str:
        return f"{view.get('id') or view['name']} (workflow {view['workflow']['name']})"

    def note(self, view: Mapping[str, Any]) -> str:
        return f"child workflow {view['child_id']}" if view.get("child_id") else ""

    def line(
        self, kind: str, data: Mapping[str, Any], step: Mapping[str, Any], workflow: Mapping[str, Any]
    ) -> str | None:
        if kind == HistoryType.SCHEDULE_ACTIVITY:
            # Derived, not read: the workflow may have been fetched a moment before the
            # history that schedules its child (its child_id is shown only once it runs).
            return f"scheduled: child workflow {step.get('child_id') or child_id(workflow['id'], step['id'])}"
        return super().line(kind, data, step, workflow)


def _child(step: ActivityState) -> Child:
    assert isinstance(step.spec, Child)
    return step.spec


def unpinned(definition_steps: Sequence[StepSpec]) -> list[str]:
    """The definitions that the child steps among ``definition_steps`` run without a
    ``version`` (each runs the newest at its parent's start)."""
    return list(dict.fromkeys(s.definition for s in definition_steps if isinstance(s, Child) and s.version is None))


def pinned(spec: StepSpec, versions: Mapping[str, int]) -> StepSpec:
    """A child step's spec with the version it runs: the newest when its parent starts."""
    if not isinstance(spec, Child) or spec.version is not None or spec.definition not in versions:
        return spec
    return Child(spec.definition, versions[spec.definition], spec.input)


def references(body: Mapping[str, Any]) -> list[tuple[int, str, int | None]]:
    """``(index, definition name, version)`` of each child step of a definition."""
    return [
        (index, entry["workflow"], entry.get("version"))
        for index, entry in enumerate(body.get("activities", ()))
        if isinstance(entry, Mapping) and "workflow" in entry
    ]


def cycle_problems(
    body: Mapping[str, Any], lookup: Lookup, path: Callable[..., str], *, check_unknown: bool = True
) -> list[tuple[str, str]]:
    """Problems of a definition's children among the definitions ``lookup`` finds, the
    one checked being the newest of its name: a child that reaches the definition again
    (or any recursion), and, with ``check_unknown``, a child definition that does not
    exist. Each problem names the child step's ``workflow``."""
    root = body["name"]

    def resolve(name: str, version: int | None) -> Mapping[str, Any] | None:
        return body if name == root and version is None else lookup(name, version)

    found: list[tuple[str, str]] = []
    checked = 0
    for index, name, version in references(body):
        first = resolve(name, version)
        if first is None:
            if check_unknown:
                found.append((path(index, "workflow"), unknown_definition(name, version)))
            continue
        # Depth first from this child, the chain of names on the stack.
        stack: list[tuple[Mapping[str, Any], list[str]]] = [(first, [root, _label(name, version)])]
        done: set[tuple[str, int | None]] = set()
        while stack:
            current, chain = stack.pop()
            checked += 1
            if current is body or checked > MAX_CHECKED:
                why = "reaches itself" if current is body else f"reaches more than {MAX_CHECKED} definitions"
                found.append((path(index, "workflow"), f"{why} through child workflows: {' -> '.join(chain)}"))
                break
            for _, child, child_version in references(current):
                label = _label(child, child_version)
                if label in chain[1:]:
                    found.append((path(index, "workflow"), f"reaches a recursion: {' -> '.join([*chain, label])}"))
                    stack = []
                    break
                if (child, child_version) in done:
                    continue
                done.add((child, child_version))
                nested = resolve(child, child_version)
                if nested is not None:
                    stack.append((nested, [*chain, label]))
    return found


def unknown_definition(name: str, version: int | None) -> str:
    """The problem of a definition that names one that does not exist (a child step's
    ``workflow``, a failure handler's): the same words wherever it is found."""
    what = f"{name!r} version {version}" if version is not None else repr(name)
    return f"unknown workflow definition {what}: register it first"


def _label(name: str, version: int | None) -> str:
    return name if version is None else f"{name} v{version}"


def child_input(state: WorkflowState, step: ActivityState) -> tuple[dict[str, Any] | None, str | None]:
    """``(input, None)`` for the child of ``step``, or ``(None, why)`` when its ``input``
    expression cannot be evaluated or does not give a JSON object."""
    spec = _child(step)
    if spec.input is None:
        return dict(spec.input_of(state)), None
    expression = spec.input
    try:
        value = graph.evaluate(expression, graph.condition_context(state.input_data, state.activities))
    except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
        return None, graph.unevaluable("input", expression, e)
    if not isinstance(value, dict):
        return None, f"input {expression!r} gave {type(value).__name__}, not a JSON object"
    try:
        # The child's input is stored and shown: the checks every door makes (no NaN or
        # infinity from to_number, no NUL or lone surrogate from a literal).
        strict_json.check(value, path="input")
    except InvalidJson as e:
        return None, graph.storable(f"input {expression!r} gave a value that is not JSON every client reads: {e}")
    return value, None


def parent_ended(parent: WorkflowState) -> str:
    """Why a child is cancelled when its ``parent`` ended (cancelled or failed)."""
    return f"its parent {parent.id} " + ("was cancelled" if parent.status is WorkflowStatus.CANCELLED else "failed")


def id_of_child(state: WorkflowState, position: int) -> str:
    """The id of the child workflow that the step at ``position`` runs."""
    return child_id(state.id, state.activities[position].id)


def definition_of(state: WorkflowState, position: int) -> Child:
    """What the child step at ``position`` runs."""
    return _child(state.activities[position])


def report(state: WorkflowState) -> tuple[str, ActivityCompleted] | None:
    """What an ended child tells its parent: ``(parent id, the parent step's result)``
    for the parent's attempt that the child's current run answers. None for a workflow
    that is no child or has not ended."""
    parent = state.parent
    if parent is None or not state.status.ended:
        return None
    at = state.finished_at or state.created_at
    attempt = parent.attempt_of_run(state.run)
    started = state.run_started_at or state.created_at
    if state.status is WorkflowStatus.FINISHED:
        return parent.workflow_id, ActivityCompleted(
            parent.position, attempt, Outcome.SUCCEEDED, at, output=state.output, started_at=started, finished_at=at
        )
    error = f"child workflow {state.name} {state.id} {state.status.lower()}: {state.error or state.status}"
    return parent.workflow_id, ActivityCompleted(
        parent.position, attempt, Outcome.PERMANENT_FAILURE, at, error=error, started_at=started, finished_at=at
    )


CHILD = ChildKind()

__all__ = [
    "CHILD",
    "MAX_NESTING",
    "Child",
    "ChildKind",
    "child_input",
    "cycle_problems",
    "unknown_definition",
    "definition_of",
    "id_of_child",
    "parent_ended",
    "pinned",
    "references",
    "report",
    "unpinned",
]
