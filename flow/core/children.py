"""Sub-workflows: the rules of an activity that runs a child workflow (``workflow`` in
the definition, instead of ``name``). Pure: the shells call these.

- The child's id is derived from the parent's id and the activity's id
  (:func:`flow.core.lineage.child_id`): a redelivery or a retry never starts a second child.
- Its input is a JMESPath expression over ``{"input": ..., "outputs": {id: output}}``
  (:func:`child_input`, evaluated when the attempt is sent); it must give an object.
- Its end is the activity's result (:func:`report`): finished is ``SUCCEEDED`` with the
  child's output; failed or cancelled is ``PERMANENT_FAILURE`` with its error. A child
  has no retries or timeouts of its own as an activity: its definition has them.
- A definition that reaches itself through children is refused (:func:`cycle_problems`).

``decide`` schedules a child activity like any other (``RunActivity``) and asks for
:class:`~flow.core.commands.CancelChild` when the parent is cancelled; the engine's plan
turns those into messages (docs/design.md, "Sub-workflows").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flow.core import graph, strict_json
from flow.core.events import ActivityCompleted
from flow.core.lineage import child_id
from flow.core.state import ActivityState, WorkflowState
from flow.core.vocabulary import Outcome, WorkflowStatus
from flow.errors import InvalidJson

#: Deepest chain of children (a parent, its child, the child's child...): a guard at
#: run time besides the refusal of recursive definitions at validation.
MAX_NESTING = 10
#: Most definitions one recursion check reads.
MAX_CHECKED = 1000

#: Finds a registered definition's body by name and version (None: the newest); None
#: when there is none.
Lookup = Callable[[str, int | None], Mapping[str, Any] | None]


def problems(entries: Sequence[Mapping[str, Any]], path: Callable[..., str]) -> list[tuple[str, str]]:
    """Problems of the child activities of a definition's ``activities`` (valid against
    the schema): a ``config`` (a child's definition has its own), an ``input`` that
    does not compile."""
    found = []
    for index, entry in enumerate(entries):
        if "workflow" not in entry:
            continue
        if "config" in entry:
            found.append((path(index, "config"), "a child workflow activity takes no config: its definition has one"))
        if "input" in entry:
            try:
                graph.compile_condition(entry["input"])
            except ValueError as e:
                found.append((path(index, "input"), str(e)))
    return found


def references(body: Mapping[str, Any]) -> list[tuple[int, str, int | None]]:
    """``(index, definition name, version)`` of each child activity of a definition."""
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
    exist. Each problem names the child activity's ``workflow``."""
    root = body["name"]

    def resolve(name: str, version: int | None) -> Mapping[str, Any] | None:
        return body if name == root and version is None else lookup(name, version)

    found: list[tuple[str, str]] = []
    checked = 0
    for index, name, version in references(body):
        first = resolve(name, version)
        if first is None:
            if check_unknown:
                what = f"{name!r} version {version}" if version is not None else repr(name)
                found.append((path(index, "workflow"), f"unknown workflow definition {what}: register it first"))
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


def _label(name: str, version: int | None) -> str:
    return name if version is None else f"{name} v{version}"


def child_input(state: WorkflowState, activity: ActivityState) -> tuple[dict[str, Any] | None, str | None]:
    """``(input, None)`` for the child of ``activity``, or ``(None, why)`` when its
    ``input`` expression cannot be evaluated or does not give a JSON object."""
    assert activity.child is not None
    if activity.child.input is None:
        return dict(state.input_data), None
    expression = activity.child.input
    try:
        value = graph.evaluate(expression, graph.condition_context(state.input_data, state.activities))
    except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
        return None, f"input {expression!r} could not be evaluated: {type(e).__name__}: {e}"[:500]
    if not isinstance(value, dict):
        return None, f"input {expression!r} gave {type(value).__name__}, not a JSON object"
    try:
        # The child's input is stored and shown: the checks every door makes (no NaN or
        # infinity from to_number, no NUL or lone surrogate from a literal).
        strict_json.check(value, path="input")
    except InvalidJson as e:
        return None, graph.storable(f"input {expression!r} gave a value that is not JSON every client reads: {e}")
    return value, None


def id_of_child(state: WorkflowState, position: int) -> str:
    """The id of the child workflow that the activity at ``position`` runs."""
    return child_id(state.id, state.activities[position].id)


def report(state: WorkflowState) -> tuple[str, ActivityCompleted] | None:
    """What an ended child tells its parent: ``(parent id, the parent activity's
    result)`` for the parent's attempt that the child's current run answers. None for
    a workflow that is no child or has not ended."""
    parent = state.parent
    if parent is None or not state.status.ended:
        return None
    at = state.finished_at or state.created_at
    attempt = parent.attempt_of_run(state.run)
    timings = {"started_at": state.run_started_at or state.created_at, "finished_at": at}
    if state.status is WorkflowStatus.FINISHED:
        return parent.workflow_id, ActivityCompleted(
            parent.position, attempt, Outcome.SUCCEEDED, at, output=state.output, **timings
        )
    error = f"child workflow {state.name} {state.id} {state.status.lower()}: {state.error or state.status}"
    return parent.workflow_id, ActivityCompleted(
        parent.position, attempt, Outcome.PERMANENT_FAILURE, at, error=error, **timings
    )


__all__ = ["MAX_NESTING", "child_input", "cycle_problems", "id_of_child", "problems", "references", "report"]
