"""Workflows as graphs: activity ids, ``depends_on`` with its ``trigger``, and ``when``.

Two rules decide when a pending activity's turn has come:

- *positional* (the first release's format, and any activity without ``depends_on``):
  an ``independent`` activity starts with the workflow, any other one once every
  activity listed before it has ended;
- *dependencies* (``depends_on``): once its dependencies have ended as its
  :class:`~flow.core.vocabulary.Trigger` asks, or skipped when they never can.

Then its ``when`` condition, a JMESPath expression over ``{"input": ..., "outputs":
{id: output}}``, is evaluated: a false value (JMESPath's falsiness: ``null``,
``false``, ``""``, ``[]``, ``{}``; ``0`` is true) skips it, and the reason says which
expression gave which value. A skipped activity has ended, so its own dependents are
decided in turn (docs/design.md, "Graphs").

Pure: expressions are evaluated by :mod:`flow.core.expressions`, within a budget.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flow.core.expressions import MAX_EXPRESSION_CHARS as MAX_EXPRESSION_CHARS
from flow.core.expressions import compile_condition as compile_condition
from flow.core.expressions import evaluate as evaluate
from flow.core.frozen import replace
from flow.core.state import ActivityState, WorkflowState
from flow.core.vocabulary import ActivityStatus, Trigger

#: What a definition's name looks like; a name that does not match cannot exist.
NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
_NAME = re.compile(NAME_PATTERN.replace("$", r"\Z"))
#: What an activity id looks like.
ID_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_ID = re.compile(ID_PATTERN.replace("$", r"\Z"))
#: Most dependencies in one definition, all activities together: a definition where
#: each of 1,000 activities depends on every one before it would take seconds to check.
MAX_DEPENDENCIES = 20_000
#: Longest reason recorded when a condition could not be evaluated.
MAX_REASON_CHARS = 500
#: Longest value quoted in a skip reason.
_MAX_QUOTED = 200


def default_ids(entries: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """Each activity's id: its own ``id``, else its name (``names``: each entry's, its
    class or what its kind calls it). A name listed more than once without ids gets
    ``<name>.1``, ``<name>.2``, ... for all but its last appearance, which keeps the name:
    outputs keyed by class name then mean what they meant in the first release (the later
    activity's output wins)."""
    counts = Counter(name for entry, name in zip(entries, names, strict=True) if "id" not in entry)
    seen: Counter[str] = Counter()
    ids = []
    for entry, name in zip(entries, names, strict=True):
        if "id" in entry:
            ids.append(entry["id"])
            continue
        seen[name] += 1
        ids.append(name if seen[name] == counts[name] else f"{name}.{seen[name]}")
    return ids


def is_definition_name(name: Any) -> bool:
    """Whether ``name`` could name a definition (anything else is refused when registering)."""
    return isinstance(name, str) and _NAME.match(name) is not None


def is_activity_id(value: str) -> bool:
    return _ID.match(value) is not None


def dependency_count(entries: Any) -> int:
    """How many ``depends_on`` items a definition's ``activities`` hold (any JSON)."""
    if not isinstance(entries, list):
        return 0
    lists = (e.get("depends_on") for e in entries if isinstance(e, dict))
    return sum(len(d) for d in lists if isinstance(d, list))


def expression_problems(expression: str, path: str) -> list[tuple[str, str]]:
    """Why ``expression`` (at JSON path ``path``) is no expression a step may evaluate, if it is none."""
    try:
        compile_condition(expression)
    except ValueError as e:
        return [(path, str(e))]
    return []


def problems(entries: Sequence[Mapping[str, Any]], ids: list[str], path: Any) -> list[tuple[str, str]]:
    """Problems of the graph keys of a definition's ``activities`` (already valid
    against the schema; ``ids``: each one's, :func:`default_ids`): duplicate or unknown
    ids, ``independent`` with ``depends_on``, conditions that do not compile, and cycles.
    ``path(index, *keys)`` gives a problem's JSON path."""
    found: list[tuple[str, str]] = []
    first: dict[str, int] = {}
    for index, (entry, activity_id) in enumerate(zip(entries, ids, strict=True)):
        if "id" in entry and not is_activity_id(activity_id):
            found.append((path(index, "id"), f"{activity_id!r} does not match {ID_PATTERN!r}"))
        elif activity_id in first and "id" in entry:
            found.append(
                (path(index, "id"), f"duplicate activity id {activity_id!r} (also activity {first[activity_id]})")
            )
        elif activity_id in first:
            found.append(
                (path(index), f"its default id {activity_id!r} is activity {first[activity_id]}'s id: give it an id")
            )
        first.setdefault(activity_id, index)
    for index, entry in enumerate(entries):
        depends_on = entry.get("depends_on")
        if depends_on is not None and entry.get("independent"):
            found.append((path(index, "independent"), "an activity with depends_on cannot also be independent"))
        if "trigger" in entry and depends_on is None:
            found.append((path(index, "trigger"), "a trigger applies to depends_on, which this activity does not have"))
        for n, dependency in enumerate(depends_on or ()):
            if not is_activity_id(dependency):
                found.append((path(index, "depends_on", n), f"{dependency!r} does not match {ID_PATTERN!r}"))
            elif dependency not in first:
                found.append((path(index, "depends_on", n), f"unknown activity id {dependency!r}"))
            elif dependency == ids[index]:
                found.append((path(index, "depends_on", n), "an activity cannot depend on itself"))
        if isinstance(entry.get("when"), str):
            found += expression_problems(entry["when"], path(index, "when"))
    if not found:
        cycle = _cycle(entries, ids)
        if cycle:
            found.append((path(first[cycle[0]], "depends_on"), "dependency cycle: " + " -> ".join(cycle + [cycle[0]])))
    return found


def _cycle(entries: Sequence[Mapping[str, Any]], ids: list[str]) -> list[str]:
    """Ids on a cycle of "waits for", or ``[]``. Positional activities wait for every
    activity listed before them: that is drawn through one chain of virtual nodes
    (``("prefix", k)``: activities 0..k have ended), so the graph stays linear in size."""
    position = {activity_id: index for index, activity_id in enumerate(ids)}
    edges: dict[Any, list[Any]] = {}
    for index, entry in enumerate(entries):
        if entry.get("depends_on") is not None:
            edges[index] = [position[d] for d in entry["depends_on"]]
        elif not entry.get("independent") and index > 0:
            edges[index] = [("prefix", index - 1)]
        edges[("prefix", index)] = [index] + ([("prefix", index - 1)] if index > 0 else [])
    state: dict[Any, int] = {}
    for root in range(len(entries)):
        if root in state:
            continue
        stack: list[tuple[Any, Iterator[Any]]] = [(root, iter(edges.get(root, ())))]
        trail = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                trail.pop()
                state[node] = 2
            elif state.get(child) == 1:
                loop = trail[trail.index(child) :]
                return [ids[n] for n in loop if isinstance(n, int)]
            elif child not in state:
                state[child] = 1
                trail.append(child)
                stack.append((child, iter(edges.get(child, ()))))
    return []


@dataclass(frozen=True)
class Verdict:
    """Whether a pending activity runs now, waits, is skipped, or fails before it runs
    (its condition could not be evaluated), and why."""

    run: bool = False
    skip: str | None = None
    fail: str | None = None

    @property
    def waits(self) -> bool:
        return not self.run and self.skip is None and self.fail is None


WAIT = Verdict()
RUN = Verdict(run=True)


def by_trigger(trigger: Trigger, dependencies: Sequence[tuple[str, ActivityStatus]]) -> Verdict:
    """What the ended (or not) ``dependencies``, ``(id, status)`` pairs, mean for an
    activity with ``trigger``. A dependency that failed while not required counts as
    done for ``all_succeeded`` (its failure did not fail the workflow)."""
    if trigger is Trigger.ONE_SUCCEEDED:
        if any(status is ActivityStatus.SUCCEEDED for _, status in dependencies):
            return RUN
        if all(status.ended for _, status in dependencies):
            return Verdict(skip="no dependency succeeded")
        return WAIT
    if not all(status.ended for _, status in dependencies):
        return WAIT
    if trigger is Trigger.ALL_SUCCEEDED:
        done = (ActivityStatus.SUCCEEDED, ActivityStatus.FAILED)
        skipped = [d for d, status in dependencies if status not in done]
        if skipped:
            return Verdict(skip=f"dependency {skipped[0]!r} was skipped")
    return RUN


def by_condition(expression: str, context: Mapping[str, Any]) -> Verdict:
    """Run unless ``expression`` gives a false value over ``context``; fail when it
    cannot be evaluated (``length(`3`)``; jmespath also raises a plain ``TypeError``
    comparing a string with a number), so that a bad condition ends the activity with
    the reason instead of stopping the workflow's every decision."""
    try:
        value = evaluate(expression, context)
    except Exception as e:  # noqa: BLE001 - whatever the evaluator raises, the answer is the same
        return Verdict(fail=unevaluable("when", expression, e))
    if _truthy(value):
        return RUN
    return Verdict(skip=f"when {expression!r} was {quoted(value)}")


def unevaluable(what: str, expression: str, error: Exception) -> str:
    """Why ``what`` (``when``, ``map.over``...) ``expression`` gave no value: the
    expression quoted short enough that the evaluator's reason (a budget's name) fits."""
    return storable(f"{what} {shown(expression)} could not be evaluated: {type(error).__name__}: {error}")


def shown(expression: str) -> str:
    """``expression`` quoted, cut to :data:`_MAX_QUOTED` characters, to quote in a reason."""
    return repr(expression) if len(expression) <= _MAX_QUOTED else repr(expression[: _MAX_QUOTED - 1] + "…")


def quoted(value: Any) -> str:
    """``value`` as JSON, cut to :data:`_MAX_QUOTED` characters, to quote in a reason."""
    text = json.dumps(value)
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 1] + "…"


def storable(text: str) -> str:
    """``text`` as every database stores it (no NUL, no lone surrogate: the evaluator's
    message may quote the data), at most :data:`MAX_REASON_CHARS` long."""
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _truthy(value: Any) -> bool:
    """JMESPath's truth: false, null and empty strings, lists and objects are false."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


def verdict(
    state: WorkflowState, activities: list[ActivityState], activity: ActivityState, first_unended: int
) -> Verdict:
    """Whether the pending ``activity`` runs now, waits, or is skipped (``activities``:
    the current ones; ``first_unended``: see :func:`frontier`)."""
    if activity.depends_on is not None:
        # Latest-listed first: the dependency most likely still running answers "wait"
        # at once, so an event costs O(its dependents), not O(their dependencies).
        if activity.trigger is not Trigger.ONE_SUCCEEDED and any(
            not activities[d].status.ended for d in reversed(activity.depends_on)
        ):
            return WAIT
        dependencies = [(activities[d].id, activities[d].status) for d in activity.depends_on]
        turn = by_trigger(activity.trigger, dependencies)
    else:
        turn = RUN if activity.independent or activity.position <= first_unended else WAIT
    if turn.run and activity.when is not None:
        return by_condition(activity.when, condition_context(state.input_data, activities))
    return turn


def condition_context(input_data: Mapping[str, Any], activities: Iterable[ActivityState]) -> dict[str, Any]:
    """What a ``when`` (or ``map.over``) expression reads: the input, and the outputs
    so far by id (a map's, once it ended, is the list of its items' outputs)."""
    outputs = {a.id: a.output for a in activities if a.output is not None and a.parent is None}
    return {"input": input_data, "outputs": outputs}


def frontier(activities: list[ActivityState], hint: int, size: int) -> int:
    """The first position (of the definition's ``size`` activities; the items of maps
    come after them) whose activity has not ended (``size`` when all have)."""
    position = max(hint, 0)
    while position < size and activities[position].status.ended:
        position += 1
    return position


def ready_positions(state: WorkflowState) -> list[int]:
    """Pending activities whose turn has come, before their ``when`` (for tests and
    tools; ``decide`` is incremental)."""
    if not state.started or not state.status.open:
        return []
    activities = list(state.activities)
    first = frontier(activities, -1, state.size)
    return [
        a.position
        for a in activities[: state.size]
        if a.status is ActivityStatus.PENDING and verdict(state, activities, replace(a, when=None), first).run
    ]
