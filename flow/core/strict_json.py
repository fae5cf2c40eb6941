"""The one strict JSON reader: every door reads JSON through it.

HTTP bodies and list cursors, AMQP start messages, the arguments of Dramatiq start
messages (already decoded by Dramatiq: :func:`check`), definition files and
``PUT``/``validate`` bodies, the CLI's ``--input``. It refuses what Python's
``json`` module accepts but Libero Flow cannot store, show or run, before anything
is stored, naming the JSON path of the offending value:

- ``NaN``, ``Infinity``, ``-Infinity`` (not JSON: browsers and strict clients fail
  on a workflow that holds them) and numbers that overflow a double (``1e999``);
- integers outside a signed 64-bit range (:data:`MIN_INT` .. :data:`MAX_INT`):
  Python cannot even print one of more than 4,300 digits;
- NUL (``\\u0000``) in any string or key: PostgreSQL text cannot hold it;
- lone surrogates (``\\ud800`` without its pair): not text, the reply that echoes
  them cannot be encoded;
- arrays and objects nested more than :data:`MAX_DEPTH` deep: the ``json`` module
  recurses and fails with ``RecursionError`` long before 100,000 levels;
- bytes that are not UTF-8.

Cost per call: at most one linear pre-scan of the text (only when it holds more
than :data:`MAX_DEPTH` brackets), ``json.loads`` with number hooks, and one
iterative walk (only when the text could hold a refused string or a hook refused
a number). Nothing here recurses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Any, TypeAlias

from flow.errors import InvalidJson

#: Deepest nesting of arrays and objects accepted; the outermost one is level 1.
MAX_DEPTH = 64
#: Integers must fit a signed 64-bit integer (what databases, Java and Go clients hold).
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)

_MAX_INT_CHARS = len(str(MIN_INT))
_INT_RANGE = f"integer out of range: integers must be within a signed 64-bit range ({MIN_INT}..{MAX_INT})"
_TOO_DEEP = f"arrays and objects are nested more than {MAX_DEPTH} levels deep"
_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# The pre-scans work on the UTF-8 bytes, where translate() and substring search run
# at memory speed.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_ALL_BUT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
#: Digits become "0" and "E" becomes "e", so that one substring search finds a run
#: of 19 digits (an integer that may not fit 64 bits, or a huge mantissa) and one
#: finds a 3-digit exponent (a float that may overflow).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789E", b"000000000e")
#: A JSON value as it is decoded: what :func:`loads` returns.
JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None

#: Escapes that decode to NUL or to half of a surrogate pair.
_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")


class _Refused:
    """A number the decoder's hooks refused, left in place so the walk can name its path."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def loads(raw: bytes | str, *, what: str = "the body") -> JSON:
    """Decode JSON text (bytes must be UTF-8); raise :class:`InvalidJson` unless it is
    JSON within the limits above. ``what`` names the text in the syntax error."""
    if isinstance(raw, str):
        text = raw
        data = text.encode("utf-8", "surrogatepass")
        may_hold_surrogates = not text.isascii()
    else:
        data = bytes(raw)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidJson("$", f"{what} is not UTF-8 text (byte {e.start})") from None
        may_hold_surrogates = False  # the UTF-8 codec refuses encoded surrogates
    if _too_deep(data):
        raise InvalidJson("$", f"{what} nests arrays and objects more than {MAX_DEPTH} levels deep")
    refused: list[_Refused] = []

    def refuse(message: str) -> _Refused:
        refused.append(_Refused(message))
        return refused[-1]

    def parse_int(literal: str) -> int | _Refused:
        # Length first: int() of a 5,000-digit literal raises (and costs).
        if len(literal) <= _MAX_INT_CHARS and MIN_INT <= (value := int(literal)) <= MAX_INT:
            return value
        return refuse(_INT_RANGE)

    def parse_float(literal: str) -> float | _Refused:
        value = float(literal)
        return value if math.isfinite(value) else refuse(f"number {literal[:40]} is too large for a double")

    def parse_constant(name: str) -> _Refused:
        return refuse(f"{name} is not a JSON number")

    # Number hooks cost a Python call per number: only when a number may be out of range.
    hooks: dict[str, Any] = {"parse_constant": parse_constant}
    digits = data.translate(_DIGITS_AS_ZERO)
    if b"0" * 19 in digits or b"e000" in digits or b"e+000" in digits:
        hooks.update(parse_int=parse_int, parse_float=parse_float)
    try:
        value = json.loads(text, **hooks)
    except json.JSONDecodeError as e:
        raise InvalidJson("$", f"{what} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:  # the pre-scan makes this unreachable; never let it escape anyway
        raise InvalidJson("$", f"{what} nests arrays and objects too deep") from None
    if refused or _RISKY_ESCAPE.search(data) or (may_hold_surrogates and _SURROGATE.search(text)):
        check(value)
    decoded: JSON = value
    return decoded


def check(value: Any, path: str = "$") -> None:
    """Raise :class:`InvalidJson` unless ``value`` (already decoded, e.g. by Dramatiq)
    is made of JSON types within the limits above. ``path`` is where it sits."""
    # Iterative depth-first walk; each entry is (value, depth of the value, where).
    # "where" is a linked list (parent, key) turned into a path only on error.
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise InvalidJson(_path(path, where), problem)
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                raise InvalidJson(_path(path, where), _INT_RANGE)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidJson(_path(path, where), f"{item} is not a JSON number")
        elif isinstance(item, Mapping | list | tuple):
            if depth > MAX_DEPTH:
                raise InvalidJson(_path(path, where), _TOO_DEEP)
            if isinstance(item, Mapping):
                for key, member in item.items():
                    if not isinstance(key, str):
                        raise InvalidJson(_path(path, where), f"object key {key!r} is not a string")
                    problem = text_problem(key)
                    if problem:
                        raise InvalidJson(_path(path, (where, key)), f"the key {problem}")
                    stack.append((member, depth + 1, (where, key)))
            else:
                stack.extend((member, depth + 1, (where, index)) for index, member in enumerate(item))
        elif isinstance(item, _Refused):
            raise InvalidJson(_path(path, where), item.message)
        else:
            raise InvalidJson(_path(path, where), f"a {type(item).__name__} is not a JSON value")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored and shown (NUL, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains NUL (\\u0000), which cannot be stored"
    if not text.isascii() and _SURROGATE.search(text):
        return "contains a lone surrogate (\\ud800-\\udfff), which is not text"
    return None


def json_path(parts: Iterable[Any], root: str = "$") -> str:
    """``["activities", 0, "required"]`` -> ``$.activities[0].required``.

    Keys that are not identifiers are quoted as JSON (``$["a b"]``), ASCII only, so
    a path can always be printed and sent, whatever the key holds.
    """
    path = root
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}"
        else:
            path += f"[{json.dumps(part)}]"
    return path


def _path(root: str, where: Any) -> str:
    parts = []
    while where is not None:
        where, key = where
        parts.append(key)
    return json_path(reversed(parts), root)


def _too_deep(data: bytes) -> bool:
    """Linear, non-recursive: are brackets outside strings nested more than MAX_DEPTH deep?

    Only texts with more than MAX_DEPTH opening brackets are scanned at all. With
    escapes removed, every remaining quote opens or closes a string, so splitting at
    quotes leaves the text outside strings at even positions. For any text ``json``
    would descend into, the text up to that point is valid JSON, so this counts
    exactly the levels it would reach.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)
    brackets = b"".join(data.split(b'"')[::2]).translate(None, _ALL_BUT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH
