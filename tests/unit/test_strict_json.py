"""The strict JSON reader: what it refuses, where it says the problem is, and that it
reads everything else exactly as ``json`` does (example tests, then properties)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flow.core import strict_json
from flow.core.strict_json import MAX_DEPTH, MAX_INT, MIN_INT, check, json_path, loads
from flow.errors import InvalidJson

DEEP = b"[" * 100_000 + b"]" * 100_000

REFUSED = [
    # (text, path, words in the message)
    (b'{"a": NaN}', "$.a", "NaN"),
    (b'{"a": [1, Infinity]}', "$.a[1]", "Infinity"),
    (b"[-Infinity]", "$[0]", "-Infinity"),
    (b'{"a": 1e999}', "$.a", "too large"),
    (b'{"a": -1E+400}', "$.a", "too large"),
    (b'{"n": ' + b"7" * 5000 + b"}", "$.n", "64-bit"),
    (b'{"n": -' + b"7" * 4301 + b"}", "$.n", "64-bit"),
    (b'{"n": %d}' % (MAX_INT + 1), "$.n", "64-bit"),
    (b'{"n": %d}' % (MIN_INT - 1), "$.n", "64-bit"),
    (b'{"a": "x\\u0000y"}', "$.a", "NUL"),
    (b'{"a\\u0000": 1}', '$["a\\u0000"]', "NUL"),
    (b'{"a": ["ok", "\\ud800"]}', "$.a[1]", "surrogate"),
    (b'{"a": "\\udfff"}', "$.a", "surrogate"),
    (b'{"\\uDBFF": 1}', '$["\\udbff"]', "surrogate"),
    (b'{"a": "\\ude00\\ud83d"}', "$.a", "surrogate"),  # the pair in the wrong order
    (b'{"a b": {"c": [0, {"d": NaN}]}}', '$["a b"].c[1].d', "NaN"),
    (DEEP, "$", f"more than {MAX_DEPTH} levels"),
    (b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "$", "levels"),
    (b"\xff\xfe", "$", "UTF-8"),
    (b'"\xed\xa0\x80"', "$", "UTF-8"),  # a surrogate encoded in UTF-8
    (b'\xef\xbb\xbf{"a": 1}', "$", "not valid JSON"),  # a byte order mark
    (b'{"a": "\x00"}', "$", "not valid JSON"),  # a raw control character
    (b'{"a": 1,', "$", "line 1"),
    (b"", "$", "not valid JSON"),
]


@pytest.mark.parametrize(("text", "path", "words"), REFUSED, ids=lambda v: repr(v)[:40] if isinstance(v, bytes) else "")
def test_refused_text_names_the_json_path(text, path, words):
    with pytest.raises(InvalidJson) as info:
        loads(text)
    assert info.value.path == path
    assert words in info.value.message


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'{"a": "\\u0000"}', DEEP, b"\xff"])
def test_refused_text_given_as_str_is_refused_the_same_way(text):
    with pytest.raises(InvalidJson):
        loads(text.decode("utf-8", "surrogateescape"))


def test_a_raw_lone_surrogate_in_a_str_is_refused():
    with pytest.raises(InvalidJson) as info:
        loads('{"name": "W\ud800"}')
    assert info.value.path == "$.name"


ACCEPTED = [
    b'{"a": 9223372036854775807, "b": -9223372036854775808}',
    b'{"a": 1.7976931348623157e308, "b": 5e-324, "c": 1e-999, "d": -0.0}',
    b'{"a": "\\ud83d\\ude00", "b": "\\\\u0000", "c": "caf\\u00e9", "d": "\xc3\xa9"}',
    b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}",
    b'{"s": "' + b"[" * 10_000 + b'"}',  # brackets inside a string do not nest
    b'{"s": "\\"[[[[' + b"[" * 100 + b'"}',  # nor after an escaped quote
    b'[1, 2.5, true, false, null, "x", {}, []]',
    b"  42 ",
]


@pytest.mark.parametrize("text", ACCEPTED, ids=lambda v: repr(v)[:40])
def test_json_within_the_limits_reads_as_json_does(text):
    assert loads(text) == json.loads(text)


@pytest.mark.timeout(20)
def test_the_pre_scan_stays_linear_on_texts_made_to_defeat_it():
    # A regex that failed to match at every quote of this text would take minutes.
    hostile = b'"' + b'\\"' * 300_000 + b"[" * (MAX_DEPTH + 1)
    with pytest.raises(InvalidJson):
        loads(hostile)
    with pytest.raises(InvalidJson):
        loads(b"[" + b"[]," * 300_000 + b"[" * 100_000)


CHECK_REFUSED = [
    ({"a": float("nan")}, "$.a"),
    ({"a": [float("inf")]}, "$.a[0]"),
    ({"n": 10**5000}, "$.n"),
    ({"n": -(2**63) - 1}, "$.n"),
    ({"k\x00": 1}, '$["k\\u0000"]'),
    ({"k": "v\ud800"}, "$.k"),
    ({"k": {1, 2}}, "$.k"),
    ({1: "x"}, "$"),
    ({"k": b"bytes"}, "$.k"),
]


@pytest.mark.parametrize(("value", "path"), CHECK_REFUSED, ids=[path for _, path in CHECK_REFUSED])
def test_check_refuses_decoded_values_with_their_path(value, path):
    with pytest.raises(InvalidJson) as info:
        check(value)
    assert info.value.path == path


def test_check_is_not_recursive():
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidJson) as info:
        check({"input_data": deep}, "$.kwargs")
    assert info.value.path.startswith("$.kwargs.input_data[0]")
    assert f"more than {MAX_DEPTH}" in info.value.message


def test_check_accepts_json_values_and_tuples():
    check({"a": [1, 2.5, True, None, "x", (1, 2)], "b": {"c": MAX_INT, "d": MIN_INT}})


def test_json_path_quotes_keys_that_are_not_identifiers():
    assert json_path(["input_data", "a.b", 3, "x y", "ok_1"]) == '$.input_data["a.b"][3]["x y"].ok_1'
    assert json_path(["\x00\ud800"]) == '$["\\u0000\\ud800"]'


# -- properties -------------------------------------------------------------------------

#: Strings the reader accepts: any text without NUL and without lone surrogates.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=MIN_INT, max_value=MAX_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
GOOD = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=25,
)
CONTAINERS = st.lists(GOOD, max_size=4) | st.dictionaries(TEXT, GOOD, max_size=4)

#: Literals that must be refused wherever they appear, and the path they are reported at
#: (None: at the leaf where they were put).
BAD_LITERALS = [
    ("NaN", None),
    ("Infinity", None),
    ("-Infinity", None),
    ("1e999", None),
    ("-2.5E+308", None),
    (str(MAX_INT + 1), None),
    (str(MIN_INT - 1), None),
    ("9" * 5000, None),
    ('"a\\u0000b"', None),
    ('"\\ud800"', None),
    ('"x\\uDC00y"', None),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "$"),
    ("[" * 100_000 + "]" * 100_000, "$"),
]
PLACEHOLDER = "__strict_json_placeholder__"


@st.composite
def with_bad_leaf(draw) -> tuple[str, str, str]:
    """JSON text with one refused literal at a drawn place; ``(text, literal, path)``."""
    value = draw(CONTAINERS)
    literal, fixed_path = draw(st.sampled_from(BAD_LITERALS))
    as_key = draw(st.booleans()) and literal.startswith('"')
    parts: list[Any] = []
    node = value
    while True:  # descend into a drawn child container, or put the placeholder here
        items = node.items() if isinstance(node, dict) else enumerate(node)
        children = [(k, v) for k, v in items if isinstance(v, list | dict)]
        if not children or draw(st.booleans()):
            break
        key, node = draw(st.sampled_from(children))
        parts.append(key)
    as_key = as_key and isinstance(node, dict)
    if isinstance(node, dict):
        key = PLACEHOLDER + "k" if as_key else draw(TEXT.filter(lambda k: PLACEHOLDER not in k))
        node[key] = 0 if as_key else PLACEHOLDER
        parts.append(key)
    else:
        index = draw(st.integers(0, len(node)))
        node.insert(index, PLACEHOLDER)
        parts.append(index)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    assume(text.count(PLACEHOLDER) == 1)
    text = text.replace(f'"{PLACEHOLDER}k"' if as_key else f'"{PLACEHOLDER}"', literal)
    if as_key:
        decoded_key = json.loads(literal)
        parts[-1] = decoded_key
    return text, literal, fixed_path or json_path(parts)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(value=GOOD, ensure_ascii=st.booleans(), as_bytes=st.booleans())
def test_any_json_within_the_limits_reads_exactly_as_json_does(value, ensure_ascii, as_bytes):
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    raw = text.encode("utf-8") if as_bytes else text
    assert loads(raw) == json.loads(text)
    check(value)


@FAST
@given(case=with_bad_leaf(), as_bytes=st.booleans())
def test_a_refused_literal_anywhere_is_refused_with_its_path(case, as_bytes):
    text, literal, path = case
    with pytest.raises(InvalidJson) as info:
        loads(text.encode("utf-8") if as_bytes else text)
    assert info.value.path == path, (literal, text[:200])


@FAST
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_any_input_is_read_or_refused_never_anything_else(raw):
    try:
        value = loads(raw)
    except InvalidJson as e:
        assert e.path.startswith("$") and e.message
        return
    check(value)  # what it returns passes the same limits
    assert value == json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def test_the_limits_are_documented_in_the_module():
    doc = strict_json.__doc__ or ""
    assert "MAX_DEPTH" in doc and "MIN_INT" in doc and "NUL" in doc and "surrogate" in doc
