from __future__ import annotations

import json
from pathlib import Path

import pytest

from activities.discovery import discover
from flow.core.definition import SCHEMA, parse
from flow.errors import DefinitionError, DefinitionNotFound
from flow.service.catalog import Catalog, load_file

KNOWN = {"DoSomethingActivity", "DoAnotherThingActivity"}


def valid() -> dict:
    return {
        "name": "W",
        "config": {"retry": {"max_attempts": 2}},
        "activities": [
            {"name": "DoSomethingActivity", "independent": False, "required": True, "config": {"a": 1}},
            {"name": "DoAnotherThingActivity"},
        ],
    }


def problems(body) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        parse(body, known_activities=KNOWN)
    return info.value.problems


def test_a_valid_definition_gets_defaults():
    d = parse(valid(), known_activities=KNOWN)
    assert [a.name for a in d.activities] == ["DoSomethingActivity", "DoAnotherThingActivity"]
    assert d.activities[1].independent is False and d.activities[1].required is True
    assert d.activity_config(d.activities[0]) == {"retry": {"max_attempts": 2}, "a": 1}
    assert d.retry_policy(d.activities[1]).max_attempts == 2


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda b: b["activities"][0].update(independent="yes"), "$.activities[0].independent"),
        (lambda b: b["activities"][1].update(required=1), "$.activities[1].required"),
        (lambda b: b["activities"][0].update(config=[]), "$.activities[0].config"),
        (lambda b: b["activities"][0].update(colour="red"), "$.activities[0]"),
        (lambda b: b.update(extra=True), "$"),
        (lambda b: b.pop("name"), "$"),
        (lambda b: b.update(activities=[]), "$.activities"),
        (lambda b: b["config"]["retry"].update(max_attempts=0), "$.config.retry.max_attempts"),
        (lambda b: b["config"]["retry"].update(initial_delay_ms=-1), "$.config.retry.initial_delay_ms"),
        (lambda b: b["activities"][0].update(name="NoSuchActivity"), "$.activities[0].name"),
    ],
)
def test_each_problem_is_reported_with_its_json_path(mutate, path):
    body = valid()
    mutate(body)
    assert path in [p for p, _ in problems(body)]


def test_unknown_key_message_names_the_key():
    body = valid()
    body["activities"][0]["colour"] = "red"
    [(_, message)] = problems(body)
    assert "colour" in message


def test_every_error_is_reported_not_just_the_first():
    body = valid()
    body["activities"][0]["independent"] = "yes"
    body["activities"][1]["required"] = "no"
    assert len(problems(body)) == 2


def test_load_file_reports_bad_json_with_its_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "W",')
    with pytest.raises(DefinitionError) as info:
        load_file(path, known_activities=KNOWN)
    assert "line 1" in str(info.value)


def test_catalog_loads_the_shipped_dummy_workflow():
    catalog = Catalog.from_directory("workflows", known_activities=KNOWN)
    assert "DummyWorkflow" in catalog.names()
    with pytest.raises(DefinitionNotFound, match="DummyWorkflow"):
        catalog.get("Nope")


def test_catalog_leaves_out_a_second_file_of_one_name_and_an_invalid_file_as_broken(tmp_path):
    for n in ("a", "b"):
        (tmp_path / f"{n}.json").write_text(json.dumps(valid()))
    (tmp_path / "c.json").write_text("{not json")
    catalog = Catalog.from_directory(tmp_path, known_activities=KNOWN)
    assert catalog.names() == [valid()["name"]]
    broken = {Path(b.source).name: b for b in catalog.broken}
    assert set(broken) == {"b.json", "c.json"}
    assert "also defined" in broken["b.json"].error and "not valid JSON" in broken["c.json"].error


def test_digest_ignores_key_order():
    a = parse(valid(), known_activities=KNOWN)
    reordered = json.loads(json.dumps(valid(), sort_keys=True))
    assert parse(reordered, known_activities=KNOWN).digest == a.digest


# -- hostile definitions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"timeouts": {"workflow_s": 1e15}}, "$.config.timeouts.workflow_s"),
        ({"timeouts": {"start_to_close_s": 366 * 24 * 3600 + 1}}, "$.config.timeouts.start_to_close_s"),
        ({"timeouts": {"schedule_to_start_s": 1e300}}, "$.config.timeouts.schedule_to_start_s"),
        ({"retry": {"initial_delay_ms": 2**62}}, "$.config.retry.initial_delay_ms"),
        ({"retry": {"max_delay_ms": 7 * 24 * 3600 * 1000 + 1}}, "$.config.retry.max_delay_ms"),
        ({"retry": {"backoff": 1e308}}, "$.config.retry.backoff"),
        ({"retry": {"max_attempts": 1001}}, "$.config.retry.max_attempts"),
        ({"retry": {"jitter": 1.5}}, "$.config.retry.jitter"),
    ],
)
def test_numbers_beyond_the_documented_bounds_are_refused(config, path):
    body = valid()
    body["config"] = config
    assert [p for p, _ in problems(body)] == [path]


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"timeouts": {"workflow_s": float("inf")}}, "$.config.timeouts.workflow_s"),
        ({"retry": {"backoff": float("nan")}}, "$.config.retry.backoff"),
        ({"retry": {"initial_delay_ms": 10**400}}, "$.config.retry.initial_delay_ms"),
        ({"label": "caf\ud800"}, "$.config.label"),
        ({"k\x00": 1}, '$.config["k\\u0000"]'),
    ],
)
def test_values_that_are_not_strict_json_are_refused_with_their_path(config, path):
    # NaN passes "minimum"/"maximum" in jsonschema (every comparison with it is false).
    body = valid()
    body["config"] = config
    assert [p for p, _ in problems(body)] == [path]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (b'{"name": "W", "config": {"timeouts": {"workflow_s": Infinity}}, "activities": []}', "$.config.timeouts"),
        (b'{"name": "W", "config": {"retry": {"initial_delay_ms": ' + b"9" * 400 + b"}}}", "$.config.retry"),
        (b'{"name": "W", "config": {"x": "\\ud800"}}', "$.config.x"),
        (b'{"name": "W", "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "$"),
        (b'{"name": "W\xff"}', "$"),
    ],
)
def test_load_file_reads_strictly(tmp_path, text, path):
    file = tmp_path / "w.json"
    file.write_bytes(text)
    with pytest.raises(DefinitionError) as info:
        load_file(file, known_activities=KNOWN)
    [(found, _)] = info.value.problems
    assert found.startswith(path)


def test_ten_thousand_activities_are_refused_in_one_short_problem():
    body = valid()
    body["activities"] = [{"name": "DoSomethingActivity", "colour": "red"}] * 10_000
    with pytest.raises(DefinitionError) as info:
        parse(body, known_activities=KNOWN)
    assert info.value.problems == [("$.activities", "has 10000 activities; a definition may have at most 1000")]
    assert len(str(info.value)) < 300


def test_the_problems_reported_are_capped():
    body = valid()
    body["activities"] = [{"name": "DoSomethingActivity", "independent": "yes"}] * 30
    found = problems(body)
    assert len(found) == 21
    assert found[-1] == ("$", "... and 10 more problems")


def test_a_problem_that_quotes_a_huge_value_is_shortened():
    body = valid()
    body["config"] = ["x" * 1000] * 100
    [(path, message)] = problems(body)
    assert path == "$.config"
    assert len(message) <= 300


def test_a_name_with_a_trailing_newline_is_refused():
    body = valid()
    body["name"] = "W\n"  # Python's "$" matches before it; the pattern must not
    assert [p for p, _ in problems(body)] == ["$.name"]


def test_every_example_of_the_schema_runs_with_the_activities_that_ship():
    for example in SCHEMA["examples"]:
        assert parse(example, known_activities=discover()).name == example["name"]
