"""The README stays true: its configuration table matches ``Settings``."""

from __future__ import annotations

import dataclasses
import re

from flow.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def readme_variables() -> dict[str, str]:
    rows = re.findall(r"^\| `(FLOW_[A-Z_]+)` \| ([^|]+) \|", README, re.M)
    return {name: default.strip() for name, default in rows}


def test_every_setting_is_in_the_readme_and_nothing_else():
    fields = {"FLOW_" + f.name.upper() for f in dataclasses.fields(Settings)}
    assert set(readme_variables()) == fields


def test_readme_defaults_match_the_code():
    defaults = Settings()
    for name, documented in readme_variables().items():
        value = getattr(defaults, name[len("FLOW_") :].lower())
        if name == "FLOW_LOG_LEVEL":  # unset means "the entry point's default", documented in words
            assert value is None and "INFO" in documented and "WARNING" in documented
        elif value in (None, ()):
            assert documented.startswith("("), name
        else:
            shown = ",".join(value) if isinstance(value, tuple) else str(value)
            assert documented.split("`")[1] == shown, (name, documented, shown)


def test_readme_names_the_two_setup_commands():
    assert "flow run DummyWorkflow --input '{\"x\": 1}'" in README
    assert "./project_tests.sh" in README


def test_readme_states_every_bound_of_the_definition_schema():
    from flow.core.definition import MAX_ACTIVITIES, SCHEMA

    def shown(number: int) -> str:
        return f"{number:,}"

    assert f"at most {shown(MAX_ACTIVITIES)}" in README
    from flow.core.kinds.map import MAX_ITEMS

    assert f"more than {shown(MAX_ITEMS)} items" in README
    assert f"integer, 1 to {shown(MAX_ITEMS)}" in README
    from flow.core.expressions import MAX_EVALUATION_BYTES, MAX_EVALUATION_STEPS
    from flow.core.kinds.map import MAX_ITEMS_BYTES

    assert f"visits at most {shown(MAX_EVALUATION_STEPS)} elements" in README
    assert f"builds at most {shown(MAX_EVALUATION_BYTES)} bytes" in README
    assert f"items of more than {shown(MAX_ITEMS_BYTES)} bytes of JSON together" in README
    from flow.persistence.input_filter import MAX_ARRAY, MAX_DEPTH, MAX_VALUES

    assert f"nested at most {MAX_DEPTH} levels deep" in README
    assert f"at most {MAX_ARRAY} elements per array, at most {MAX_VALUES} values in all" in README
    for group in ("retry", "timeouts"):
        for name, prop in SCHEMA["$defs"][group]["properties"].items():
            rows = re.findall(rf"^\| `{group}\.{name}` \| ([^|]+) \|", README, re.M)
            assert rows, f"{group}.{name} is not in the README's option tables"
            for documented in rows:
                assert shown(prop["maximum"]) in documented, (name, documented)


def test_readme_lists_every_status():
    from flow.core.vocabulary import ActivityStatus, WorkflowStatus

    workflows = README.split("Workflow statuses:", 1)[1].split("Activity", 1)[0]
    activities = README.split("Activity\nstatuses:", 1)[1].split("\n\n", 1)[0]
    assert {f"`{s}`" for s in WorkflowStatus} <= set(re.findall(r"`[^`]+`", workflows))
    assert {f"`{s}`" for s in ActivityStatus} <= set(re.findall(r"`[^`]+`", activities))


def test_the_bad_input_section_names_every_budget_a_client_meets():
    """Issue 28's proof: every limit it added is in the README's "Bad input" section."""
    from api.resources.workflows import MAX_INPUT_FILTER
    from flow.core.expressions import MAX_EVALUATION_BYTES, MAX_EVALUATION_STEPS
    from flow.core.kinds.map import MAX_ITEMS, MAX_ITEMS_BYTES
    from flow.core.kinds.wait import MAX_SIGNALS
    from flow.persistence.input_filter import MAX_ARRAY, MAX_DEPTH, MAX_VALUES

    section = README.split("### Bad input", 1)[1].split("\n### ", 1)[0]
    for text in (
        f"at most {MAX_INPUT_FILTER:,} characters",
        f"nested at most {MAX_DEPTH} levels deep",
        f"at most {MAX_ARRAY} elements per array, at most {MAX_VALUES} values in all",
        "`FLOW_QUERY_TIMEOUT_S`",
        f"at most {MAX_EVALUATION_STEPS:,} elements visited and {MAX_EVALUATION_BYTES:,} bytes built",
        f"at most {MAX_ITEMS:,}, and {MAX_ITEMS_BYTES:,} bytes of JSON together",
        f"a workflow's signals: at most {MAX_SIGNALS:,}",
        "`FLOW_MAX_INBOX_BYTES`",
        "a schedule name in a path that\nno schedule can have: 1 to 128 characters",
        "a schedule list page (`GET /schedules`): at most 500",
    ):
        assert text in section, text
