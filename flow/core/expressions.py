"""JMESPath expressions in definitions (``when``, ``map.over``, ``sleep_until``, a child's
``input``): compiling them with their static bounds, and evaluating them within one budget.

Static bounds, checked when a definition is validated: length, nesting, and how many
copies of the data multi-selects could make. They cannot bound what an evaluation
costs: a projection calls what it projects once per element, so ``input.items[*].join('',
[@, @, ...])`` builds a string per item, and the data decides how many items there are.

So every evaluation gets one :class:`Budget`: elements visited (each node of the
expression each time it is evaluated, and each element a function reads) and bytes
built (each list, object and string it makes, measured as Python holds it). The
interpreter charges as it goes, functions that build text check the bytes *before*
building them, and the first charge past either limit raises
:class:`~flow.errors.EvaluationBudgetExceeded`, which names the budget: the step then
fails with that reason like any expression that cannot be evaluated. One mechanism
for every expression and every function, rather than a limit per function.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TypeVar

import jmespath
import jmespath.exceptions
import jmespath.functions
import jmespath.visitor

from flow.core.strict_json import JSON
from flow.errors import EvaluationBudgetExceeded

T = TypeVar("T")

#: Longest expression.
MAX_EXPRESSION_CHARS = 1000
#: Bound on how many copies of the data an expression's multi-selects may make (the
#: product of their sizes): ``[@, @] | [@, @] | ...`` doubles the data at each step.
MAX_CONDITION_COPIES = 64
#: Deepest nesting of an expression: the evaluator recurses once per level.
MAX_CONDITION_DEPTH = 40
#: Most bytes one evaluation may build, all its lists, objects and strings together
#: (intermediate ones too): 8 MiB lets a map list 10,000 items of a few fields each.
MAX_EVALUATION_BYTES = 8 << 20
#: Most elements one evaluation may visit: about half a second of the engine's time at
#: worst, 25 per item of a map of 10,000.
MAX_EVALUATION_STEPS = 250_000

# Sizes as CPython holds them: an empty list and string, a pointer, a list's slot
# with the spare room appends leave (at most an eighth more, and a few slots).
_LIST = sys.getsizeof([])
_STR = sys.getsizeof("")
_POINTER = 8
_GROWN = 10
_SPARE = 16 * _POINTER


class Budget:
    """What one evaluation may still spend: ``steps`` (elements visited) and ``bytes``
    (bytes built). Each charge past a limit raises :class:`EvaluationBudgetExceeded`."""

    __slots__ = ("max_bytes", "max_steps", "steps", "bytes")

    def __init__(self, *, max_steps: int = MAX_EVALUATION_STEPS, max_bytes: int = MAX_EVALUATION_BYTES) -> None:
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self.steps = 0
        self.bytes = 0

    def visit(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > self.max_steps:
            raise EvaluationBudgetExceeded(f"evaluation budget exceeded: visits more than {self.max_steps:,} elements")

    def build(self, size: int) -> None:
        """Charge ``size`` bytes about to be built (or just built)."""
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise EvaluationBudgetExceeded(f"evaluation budget exceeded: builds more than {self.max_bytes:,} bytes")

    def built(self, value: T) -> T:
        """Charge what a new list, object or string takes, and return it."""
        if isinstance(value, (list, dict, str)):
            self.build(sys.getsizeof(value))
        return value

    def __repr__(self) -> str:
        return f"Budget(steps={self.steps}/{self.max_steps}, bytes={self.bytes}/{self.max_bytes})"


@lru_cache(maxsize=1024)
def compile_condition(expression: str) -> jmespath.parser.ParsedResult:
    """The compiled expression; raises :class:`ValueError` saying why it does not compile."""
    try:
        compiled = jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as e:
        where = getattr(e, "lex_position", None)
        at = f" at character {where}" if where is not None else ""
        raise ValueError(f"not a JMESPath expression ({str(e).splitlines()[0]}{at})") from None
    except RecursionError:  # the parser recurses per level of nesting
        raise ValueError(f"nested too deeply: at most {MAX_CONDITION_DEPTH} levels") from None
    copies, depth = _cost(compiled.parsed)
    if depth > MAX_CONDITION_DEPTH:
        raise ValueError(f"nested too deeply ({depth} levels): at most {MAX_CONDITION_DEPTH}")
    if copies > MAX_CONDITION_COPIES:
        raise ValueError(
            f"too costly: its multi-selects could copy the data {copies} times; at most {MAX_CONDITION_COPIES}"
        )
    return compiled


def _cost(node: Mapping[str, Any]) -> tuple[int, int]:
    """The product of the sizes of a parsed expression's multi-selects, and its depth."""
    product, deepest = 1, 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        children = current.get("children", [])
        if current.get("type") in ("multi_select_list", "multi_select_dict"):
            product *= max(len(children), 1)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict))
    return product, deepest


def evaluate(expression: str, context: Mapping[str, Any], *, budget: Budget | None = None) -> JSON:
    """The value of a compiled-and-bounded expression over ``context``, within ``budget``
    (a fresh default one when None); raises what the evaluator raises, and
    :class:`EvaluationBudgetExceeded` past the budget."""
    value: JSON = _Interpreter(budget or Budget()).visit(compile_condition(expression).parsed, context)
    return value


class _Functions(jmespath.functions.Functions):
    """JMESPath's functions, each charged to the evaluation's budget: the elements of
    its array and object arguments as visited, its result as built. Those whose result
    can be much larger than their arguments (``to_string``, ``join``), that build more
    than their result (``sort``, ``sort_by``) or that grow a list element by element
    (``map``) charge before they build."""

    #: Functions that charge what they build themselves, before building it.
    _CHARGED_BEFORE = frozenset(("to_string", "join", "sort", "sort_by", "map"))

    def __init__(self, budget: Budget) -> None:
        super().__init__()
        self.budget = budget

    def call_function(self, function_name: str, resolved_args: list[Any]) -> Any:
        self.budget.visit(sum(len(arg) for arg in resolved_args if isinstance(arg, (list, dict))))
        result = super().call_function(function_name, resolved_args)
        # A function that returns an argument as it is (``not_null``, ``to_array`` of a
        # list, ``max``) built nothing.
        if function_name not in self._CHARGED_BEFORE and not any(result is arg for arg in resolved_args):
            self.budget.built(result)
        return result

    @jmespath.functions.signature({"types": []})
    def _func_to_string(self, arg: Any) -> str:
        if isinstance(arg, str):
            return arg
        parts, size = [], 0
        for chunk in json.JSONEncoder(separators=(",", ":"), default=str).iterencode(arg):
            self.budget.build(sys.getsizeof(chunk) + _POINTER)
            size += len(chunk)
            parts.append(chunk)
        self.budget.build(_STR + size)  # ASCII (ensure_ascii): a byte per character
        return "".join(parts)

    @jmespath.functions.signature({"types": ["string"]}, {"types": ["array-string"]})
    def _func_join(self, separator: str, array: list[str]) -> str:
        size = len(separator) * max(len(array) - 1, 0) + sum(map(len, array))
        # Python holds text at 1, 2 or 4 bytes a character: charged at the widest it can be.
        wide = not (separator.isascii() and all(part.isascii() for part in array))
        self.budget.build(_STR + size * (4 if wide else 1))
        return separator.join(array)

    @jmespath.functions.signature({"types": ["array-number", "array-string"]})
    def _func_sort(self, arg: list[Any]) -> list[Any]:
        self.budget.build(2 * (_LIST + _GROWN * len(arg)))  # sorted(), then list() of it
        ordered: list[Any] = super()._func_sort(arg)
        return ordered

    @jmespath.functions.signature({"types": ["array"]}, {"types": ["expref"]})
    def _func_sort_by(self, array: list[Any], expref: Any) -> list[Any]:
        # sorted() keeps every element's key beside it, then list() copies the result.
        self.budget.build(3 * (_LIST + _GROWN * len(array)))
        ordered: list[Any] = super()._func_sort_by(array, expref)
        return ordered

    @jmespath.functions.signature({"types": ["expref"]}, {"types": ["array"]})
    def _func_map(self, expref: Any, arg: list[Any]) -> list[Any]:
        self.budget.build(_LIST + _SPARE)
        result = []
        for element in arg:
            self.budget.build(_GROWN)
            result.append(expref.visit(expref.expression, element))
        return result


class _Interpreter(jmespath.visitor.TreeInterpreter):
    """jmespath's interpreter, charging :class:`Budget`: one step per node evaluated
    (a projection evaluates its right side once per element), and the lists and
    objects it builds: projections and flattens as they grow, slices and multi-selects
    once built (their size is bounded by a list that exists already, or by the
    expression)."""

    def __init__(self, budget: Budget) -> None:
        super().__init__(jmespath.Options(custom_functions=_Functions(budget)))
        self.budget = budget

    def visit(self, node: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.budget.visit()
        return super().visit(node, *args, **kwargs)

    def _collect(self, elements: Any, project: Mapping[str, Any], keep: Mapping[str, Any] | None = None) -> list[Any]:
        """The right side of a projection over ``elements``, each result charged as the
        list grows (``keep``: a filter's condition)."""
        self.budget.build(_LIST + _SPARE)
        collected = []
        for element in elements:
            if keep is not None and not self._is_true(self.visit(keep, element)):
                continue
            current = self.visit(project, element)
            if current is not None:
                self.budget.build(_GROWN)
                collected.append(current)
        return collected

    def visit_projection(self, node: Mapping[str, Any], value: Any) -> Any:
        base = self.visit(node["children"][0], value)
        return self._collect(base, node["children"][1]) if isinstance(base, list) else None

    def visit_filter_projection(self, node: Mapping[str, Any], value: Any) -> Any:
        base = self.visit(node["children"][0], value)
        if not isinstance(base, list):
            return None
        return self._collect(base, node["children"][1], keep=node["children"][2])

    def visit_value_projection(self, node: Mapping[str, Any], value: Any) -> Any:
        base = self.visit(node["children"][0], value)
        return self._collect(base.values(), node["children"][1]) if isinstance(base, dict) else None

    def visit_flatten(self, node: Mapping[str, Any], value: Any) -> Any:
        base = self.visit(node["children"][0], value)
        if not isinstance(base, list):
            return None
        self.budget.visit(len(base))
        self.budget.build(_LIST + _SPARE + _GROWN * sum(len(e) if isinstance(e, list) else 1 for e in base))
        merged: list[Any] = []
        for element in base:
            if isinstance(element, list):
                merged.extend(element)
            else:
                merged.append(element)
        return merged

    def visit_slice(self, node: Mapping[str, Any], value: Any) -> Any:
        return self.budget.built(super().visit_slice(node, value))

    def visit_multi_select_list(self, node: Mapping[str, Any], value: Any) -> Any:
        return self.budget.built(super().visit_multi_select_list(node, value))

    def visit_multi_select_dict(self, node: Mapping[str, Any], value: Any) -> Any:
        return self.budget.built(super().visit_multi_select_dict(node, value))


__all__ = [
    "MAX_CONDITION_COPIES",
    "MAX_CONDITION_DEPTH",
    "MAX_EVALUATION_BYTES",
    "MAX_EVALUATION_STEPS",
    "MAX_EXPRESSION_CHARS",
    "Budget",
    "compile_condition",
    "evaluate",
]
