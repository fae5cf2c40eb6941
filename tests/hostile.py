"""Hostile inputs for every door, shared by the SQLite tests (``tests/embedded``) and the
PostgreSQL ones (``tests/integration``), with what each door must answer.

Every case must be refused with a 4xx (never a 5xx) naming what is wrong, and must
store nothing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import falcon.testing

from flow.persistence.models import DefinitionRecord, WorkflowRecord

DEEP = b"[" * 100_000 + b"]" * 100_000
DIGITS_5000 = b"7" * 5000


def start_body(name: bytes = b'"DummyWorkflow"', input_data: bytes = b"{}", extra: bytes = b"") -> bytes:
    return b'{"name": ' + name + b', "input_data": ' + input_data + extra + b"}"


#: POST /workflows bodies: (id, body, status, JSON path of the first error).
START_BODIES: list[tuple[str, bytes, int, str]] = [
    ("deep nesting", start_body(input_data=b'{"a": ' + DEEP + b"}"), 400, "$"),
    ("65 levels", start_body(input_data=b"[" * 64 + b"]" * 64), 400, "$"),
    ("5,000-digit integer", start_body(input_data=b'{"n": ' + DIGITS_5000 + b"}"), 400, "$.input_data.n"),
    ("integer over 64 bits", start_body(input_data=b'{"n": 9223372036854775808}'), 400, "$.input_data.n"),
    ("NaN", start_body(input_data=b'{"x": NaN}'), 400, "$.input_data.x"),
    ("Infinity", start_body(input_data=b'{"x": [Infinity]}'), 400, "$.input_data.x[0]"),
    ("-Infinity", start_body(input_data=b'{"x": -Infinity}'), 400, "$.input_data.x"),
    ("1e999", start_body(input_data=b'{"x": 1e999}'), 400, "$.input_data.x"),
    ("NUL in name", start_body(name=b'"Dummy\\u0000Workflow"'), 400, "$.name"),
    ("NUL in a key", start_body(input_data=b'{"a\\u0000": 1}'), 400, '$.input_data["a\\u0000"]'),
    ("NUL in a value", start_body(input_data=b'{"a": "\\u0000"}'), 400, "$.input_data.a"),
    ("NUL in the key", start_body(extra=b', "idempotency_key": "k\\u0000"'), 400, "$.idempotency_key"),
    ("surrogate in name", start_body(name=b'"\\ud800"'), 400, "$.name"),
    ("surrogate in input", start_body(input_data=b'{"a": "x\\udfffy"}'), 400, "$.input_data.a"),
    ("surrogate in a key", start_body(input_data=b'{"\\ud800": 1}'), 400, '$.input_data["\\ud800"]'),
    ("surrogate in the key", start_body(extra=b', "idempotency_key": "\\ud800"'), 400, "$.idempotency_key"),
    ("not UTF-8", b'{"name": "Dummy\xffWorkflow"}', 400, "$"),
    ("byte order mark", b'\xef\xbb\xbf{"name": "DummyWorkflow"}', 400, "$"),
    ("malformed", b'{"name": "DummyWorkflow",', 400, "$"),
    ("name is a list", start_body(name=b'["DummyWorkflow"]'), 422, "$.name"),
    ("name is not a name", start_body(name=b'"no such workflow"'), 422, "$.name"),
    ("name is 129 letters", start_body(name=b'"' + b"W" * 129 + b'"'), 422, "$.name"),
    ("unknown name", start_body(name=b'"NoSuchWorkflow"'), 422, "$.name"),
    ("input is a list", start_body(input_data=b"[1]"), 422, "$.input_data"),
    ("input is a string", start_body(input_data=b'"x"'), 422, "$.input_data"),
    ("key of 256", start_body(extra=b', "idempotency_key": "' + b"k" * 256 + b'"'), 422, "$.idempotency_key"),
    ("key is a number", start_body(extra=b', "idempotency_key": 7'), 422, "$.idempotency_key"),
    ("unknown field", start_body(extra=b', "status": "Finished"'), 422, "$.status"),
    ("priority 0", start_body(extra=b', "priority": 0'), 422, "$.priority"),
    ("priority 6", start_body(extra=b', "priority": 6'), 422, "$.priority"),
    ("priority 2.0", start_body(extra=b', "priority": 2.0'), 422, "$.priority"),
    ("priority is a string", start_body(extra=b', "priority": "1"'), 422, "$.priority"),
    ("priority is true", start_body(extra=b', "priority": true'), 422, "$.priority"),
    ("priority over 64 bits", start_body(extra=b', "priority": 9223372036854775808'), 400, "$.priority"),
    ("odd unknown field", start_body(extra=b', "a b": 1'), 422, '$["a b"]'),
    ("a list", b"[1, 2]", 422, "$"),
    ("null", b"null", 422, "$"),
    ("empty", b"", 422, "$"),
    ("input too big", start_body(input_data=b'{"blob": "' + b"x" * 300_000 + b'"}'), 422, "$.input_data"),
]


def definition_body(**config: Any) -> dict[str, Any]:
    return {"name": "HostileWorkflow", "config": config, "activities": [{"name": "NoopActivity"}]}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


#: PUT /definitions/HostileWorkflow and POST /definitions/validate bodies:
#: (id, body, status, JSON path of the first error).
DEFINITION_BODIES: list[tuple[str, bytes, int, str]] = [
    ("workflow_s 1e15", _json(definition_body(timeouts={"workflow_s": 1e15})), 422, "$.config.timeouts.workflow_s"),
    (
        "Infinity",
        _json(definition_body(timeouts={"workflow_s": 1})).replace(b"1}", b"Infinity}"),
        400,
        "$.config.timeouts.workflow_s",
    ),
    ("NaN", _json(definition_body(retry={"backoff": 2})).replace(b"2}", b"NaN}"), 400, "$.config.retry.backoff"),
    (
        "400-digit delay",
        _json(definition_body(retry={"initial_delay_ms": 1})).replace(b"1}", b"9" * 400 + b"}"),
        400,
        "$.config.retry.initial_delay_ms",
    ),
    ("delay 2**62", _json(definition_body(retry={"initial_delay_ms": 2**62})), 422, "$.config.retry.initial_delay_ms"),
    ("backoff 1e308", _json(definition_body(retry={"backoff": 1e308})), 422, "$.config.retry.backoff"),
    ("surrogate in config", _json(definition_body(label="\ud800")), 400, "$.config.label"),
    ("NUL in config", _json(definition_body(label="\x00")), 400, "$.config.label"),
    ("NUL in a config key", _json(definition_body(**{"k\x00": 1})), 400, '$.config["k\\u0000"]'),
    ("deep config", b'{"name": "HostileWorkflow", "config": ' + DEEP + b"}", 400, "$"),
    (
        "10,000 activities",
        _json({"name": "HostileWorkflow", "activities": [{"name": "NoopActivity"}] * 10_000}),
        422,
        "$.activities",
    ),
    (
        "unknown activity",
        _json({"name": "HostileWorkflow", "activities": [{"name": "Nope"}]}),
        422,
        "$.activities[0].name",
    ),
]

#: Requests whose path or query holds what must not reach the database:
#: (method, path, query string, status, where the error is).
PARAMS: list[tuple[str, str, str, int]] = [
    ("GET", "/workflows/%00", "", 404),
    ("GET", "/workflows/a%00b", "", 404),
    ("GET", "/workflows/%ED%A0%80", "", 404),
    ("GET", "/workflows/" + "x" * 37, "", 404),
    ("GET", "/workflows/%00/activities", "", 404),
    ("GET", "/workflows/%00/events", "", 404),
    ("POST", "/workflows/%00/cancel", "", 404),
    ("POST", "/workflows/%00/retry", "", 404),
    ("GET", "/definitions/%00", "", 404),
    ("GET", "/definitions/Dummy%00Workflow", "", 404),
    ("GET", "/definitions/%00/versions/1", "", 404),
    ("GET", "/definitions/DummyWorkflow/versions/" + "9" * 5000, "", 404),
    ("GET", "/workflows", "name=%00", 422),
    ("GET", "/workflows", "name=Dummy%00Workflow", 422),
    ("GET", "/workflows", "name=%ED%A0%80", 422),
    ("GET", "/workflows", "status=%00", 422),
    ("GET", "/workflows", "created_after=%00", 422),
    ("GET", "/workflows", "created_after=0001-01-01T00:00:00%2B01:00", 422),
    ("GET", "/workflows", "created_before=9999-12-31T23:59:59-01:00", 422),
    ("GET", "/workflows", "created_before=99999-01-01", 422),
    ("GET", "/workflows", "limit=" + "9" * 5000, 422),
    ("GET", "/workflows", "limit=abc", 422),
    ("GET", "/workflows", "limit=0", 422),
    # One convention for every query parameter: a bad limit is refused like a bad status.
    ("GET", "/workflows", "limit=501", 422),
    ("GET", "/workflows", "status=Nope", 422),
    ("GET", "/workflows", "status=finished", 422),
    ("GET", "/workflows/00000000-0000-0000-0000-000000000000/events", "after=" + "9" * 5000, 422),
    ("GET", "/workflows/00000000-0000-0000-0000-000000000000/events", "after=-1", 422),
]


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: ``cursor`` values of GET /workflows that this API never wrote: all 422 ``cursor``.
CURSORS: list[str] = [
    _cursor(DEEP),
    _cursor(b'["2026-01-01T00:00:00", ' + DIGITS_5000 + b"]"),
    _cursor(b"[" + DIGITS_5000 + b', "id"]'),
    _cursor(b'["2026-01-01T00:00:00", "\\u0000"]'),
    _cursor(b'["2026-01-01T00:00:00", "\\ud800"]'),
    _cursor(b'["2026-01-01T00:00:00", "' + b"x" * 37 + b'"]'),
    _cursor(b'["2026-01-01T00:00:00\\u0000", "id"]'),
    _cursor(b'["2026-01-01T00:00:00+01:00", "id"]'),
    _cursor(b'[NaN, "id"]'),
    _cursor(b'["2026-01-01T00:00:00", "id", 3]'),
    _cursor(b'{"a": 1}'),
    _cursor(b"\xff\xfe"),
    _cursor(b"not json"),
    "!!!",
    "é",
    "%00",
]


def workflow_count(store: Any) -> int:
    with store.unit_of_work():
        return WorkflowRecord.select().count()


def definition_versions(store: Any, name: str) -> int:
    with store.unit_of_work():
        return DefinitionRecord.select().where(DefinitionRecord.name == name).count()


def assert_refused(result: falcon.testing.Result, status: int, path: str | None = None) -> None:
    """A 4xx with a JSON body that says what is wrong (and where, for bodies)."""
    assert result.status_code == status, (result.status_code, result.text[:300])
    body = json.loads(result.text)  # strict clients can read it: no NaN, no lone surrogate
    assert body["title"]
    if path is not None:
        assert body["errors"][0]["path"] == path, body
    assert len(result.content) < 4096, "an error reply stays small"


def post_json(client: falcon.testing.TestClient, path: str, body: bytes, **headers: str) -> falcon.testing.Result:
    return send_json(client, "POST", path, body, **headers)


def send_json(
    client: falcon.testing.TestClient, method: str, path: str, body: bytes, **headers: str
) -> falcon.testing.Result:
    return client.simulate_request(method, path, body=body, headers={"Content-Type": "application/json", **headers})


# -- generated hostile start requests (hypothesis) --------------------------------------

#: JSON literals, good and hostile, that generated bodies are made of.
LITERALS = [
    '"DummyWorkflow"',
    '"no such workflow"',
    '"NoSuchWorkflow"',
    '"x"',
    '""',
    "{}",
    "[]",
    "null",
    "true",
    "0",
    "-0.0",
    "1.5e300",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "9223372036854775808",
    "-9223372036854775809",
    "9" * 5000,
    '"\\u0000"',
    '"a\\u0000b"',
    '"\\ud800"',
    '"x\\udfff"',
    '"\\ud83d\\ude00"',
    "[" * (65) + "]" * 65,
    "[" * 100_000 + "]" * 100_000,
]
KEYS = [
    '"name"',
    '"input_data"',
    '"idempotency_key"',
    '"workflow_id"',
    '"priority"',
    '"a\\u0000"',
    '"\\udc00"',
    '"a b"',
    '"x"',
]


def _array(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _object(members: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in members) + "}"


def _insert(text: bytes, at: int, junk: bytes) -> bytes:
    return text[:at] + junk + text[at:]


def hostile_start_texts() -> Any:
    """A hypothesis strategy of start-request bodies (bytes): JSON-like texts made of the
    literals above, objects with the start fields, some broken by stray bytes, and
    arbitrary bytes."""
    from hypothesis import strategies as st

    keys = st.sampled_from(KEYS) | st.text(max_size=8).map(json.dumps)
    values = st.recursive(
        st.sampled_from(LITERALS) | st.text(max_size=8).map(json.dumps),
        lambda inner: (
            st.lists(inner, max_size=3).map(_array) | st.lists(st.tuples(keys, inner), max_size=3).map(_object)
        ),
        max_leaves=8,
    )
    requests = st.tuples(
        st.sampled_from(LITERALS[:5]) | values,
        st.lists(st.tuples(st.sampled_from(KEYS[1:]), values), max_size=3),
    ).map(lambda t: _object([('"name"', t[0]), *t[1]]))
    texts = (requests | values).map(lambda text: text.encode("utf-8"))
    broken = st.builds(_insert, texts, st.integers(0, 40), st.binary(min_size=1, max_size=3))
    return texts | broken | st.binary(max_size=64)
