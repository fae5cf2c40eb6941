"""The ``flow`` command as a user runs it: a subprocess, exit codes, output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flow.testing.definitions import embedded_env
from tests.conftest import ROOT
from tests.embedded.conftest import run_cli as flow


@pytest.fixture
def env(tmp_path, definitions_dir) -> dict[str, str]:
    return embedded_env(tmp_path, definitions_dir, COLUMNS="200")


def test_run_by_name_shows_progress_and_exits_0(env):
    result = flow("run", "DummyWorkflow", "--input", '{"x": 1}', env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("scheduled", "started", "succeeded", "workflow finished", "DoAnotherThingActivity", "Finished"):
        assert expected in out
    assert out.index("DoSomethingActivity") < out.index("DoAnotherThingActivity")


def test_run_shows_a_child_workflow_in_its_progress_and_table(env):
    examples = {**env, "FLOW_DEFINITIONS_DIR": str(ROOT / "examples" / "workflows")}
    result = flow("run", "SubWorkflowExample", "--input", '{"order": 7}', env=examples)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "ship (workflow SubWorkflowChildExample)" in out
    child = re.search(r"scheduled: child workflow ([0-9a-f-]{36})", out)
    assert child, out
    assert f"child workflow {child.group(1)}" in out.split("workflow finished")[-1]  # in the final table


def test_run_by_path_of_a_definition_file(env, definitions_dir):
    result = flow("run", str(definitions_dir / "RetryWorkflow.json"), env=env)
    assert result.returncode == 0, result.stderr
    assert "will retry" in result.stdout
    assert "3/3" in result.stdout


def test_run_of_a_file_without_a_definitions_directory_warns_of_nothing(env, definitions_dir, tmp_path):
    result = flow(
        "run",
        str(definitions_dir / "RetryWorkflow.json"),
        env={**env, "FLOW_DEFINITIONS_DIR": str(tmp_path / "absent")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_run_by_name_without_a_definitions_directory_says_it_does_not_exist(env, tmp_path):
    result = flow("run", "DummyWorkflow", env={**env, "FLOW_DEFINITIONS_DIR": str(tmp_path / "absent")})
    assert result.returncode == 2
    assert f"none are registered; the definitions directory {tmp_path / 'absent'} (FLOW_DEFINITIONS_DIR)" in (
        result.stderr.replace("\n", "")
    )


def test_run_of_a_failing_workflow_exits_1(env):
    result = flow("run", "FailingWorkflow", env=env)
    assert result.returncode == 1
    assert "workflow failed" in result.stdout
    assert "RefusingActivity" in result.stdout


def test_run_ends_an_optional_activity_that_ran_out_of_attempts_with_a_permanent_failure_line(env):
    result = flow("run", "BrokenOptionalWorkflow", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    last_attempt = [i for i, line in enumerate(lines) if "attempt 2  temporary failure" in line]
    assert len(last_attempt) == 1
    assert "BrokenActivity" in lines[last_attempt[0] + 1]
    assert lines[last_attempt[0] + 1].endswith("failed permanently (optional)")


def test_run_of_a_map_shows_the_map_and_only_the_failing_items_of_a_large_one(env, tmp_path):
    definition = tmp_path / "map.json"
    definition.write_text(
        json.dumps(
            {
                "name": "Fail3",
                "config": {"retry": {"max_attempts": 1}},
                "activities": [
                    {"id": "each", "name": "ItemActivity", "map": {"over": "input.items", "max_concurrency": 4}},
                    {"name": "NoopActivity"},
                ],
            }
        )
    )
    items = [{"n": i, "fail": i == 7} for i in range(12)]
    result = flow("run", str(definition), "--input", json.dumps({"items": items}), env=env)
    assert result.returncode == 1, result.stdout
    out = result.stdout
    assert "map over 12 items, 4 at a time" in out
    assert "map failed: item 7 failed" in out
    # Routine lines of a large map's items are left out; the failing item has its own.
    assert "each[0] (ItemActivity)" not in out.split("Fail3 ")[0]
    assert re.search(r"each\[7\] \(ItemActivity\)\s+attempt 1\s+permanent failure: item 7 refused", out)
    table = out.split("Fail3 ")[-1]
    assert "item 7 of the map failed" in table and "each[0]" not in table


def test_run_json_prints_the_final_state(env):
    result = flow("run", "DummyWorkflow", "--json", env=env)
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["status"] == "Finished"
    assert [a["status"] for a in state["activities"]] == ["Succeeded", "Succeeded"]


def test_run_with_a_priority_runs_the_workflow_with_it_and_shows_it(env):
    result = flow("run", "DummyWorkflow", "--priority", "1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["priority"] == 1
    human = flow("run", "DummyWorkflow", "--priority", "5", env=env)
    assert human.returncode == 0, human.stderr
    assert re.search(r"DummyWorkflow \S+ +priority 5", human.stdout)
    assert human.stdout.rstrip().endswith("Finished")  # the last line is still the outcome
    assert json.loads(flow("run", "DummyWorkflow", "--json", env=env).stdout)["priority"] == 3


def test_run_of_an_invalid_definition_exits_2_and_starts_nothing(env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "Bad", "activities": [{"name": "DoSomethingActivity", "required": "yes"}]}))
    result = flow("run", str(bad), env=env)
    assert result.returncode == 2
    assert "$.activities[0].required" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "NoSuchWorkflow"), "no workflow definition named 'NoSuchWorkflow'"),
        (("run", "DummyWorkflow", "--input", "{nope"), "--input is not valid JSON"),
        (("run", "DummyWorkflow", "--input", "[1]"), "--input must be a JSON object"),
        (("run", "DummyWorkflow", "--input", '{"x": NaN}'), "--input $.x: NaN is not a JSON number"),
        (("run", "DummyWorkflow", "--input", '{"x": "\\u0000"}'), "--input $.x: contains NUL"),
        (("run", "DummyWorkflow", "--priority", "0"), "'--priority': 0 is not in the range 1<=x<=5"),
        (("run", "DummyWorkflow", "--priority", "first"), "'--priority': 'first' is not a valid integer"),
    ],
)
def test_run_with_bad_arguments_exits_2_with_a_clear_message(env, args, message):
    result = flow(*args, env=env)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.fixture
def big_input(tmp_path) -> tuple[dict[str, str], Path]:
    """An input of 200 KB, too long for a command line, in a file."""
    value = {"text": "x" * 200_000}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(value))
    return value, path


def test_run_reads_a_large_input_from_a_file_with_at(env, big_input):
    value, path = big_input
    result = flow("run", "DummyWorkflow", "--input", f"@{path}", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["input_data"] == value


def test_run_reads_the_input_from_stdin_with_a_dash(env, big_input):
    value, path = big_input
    result = flow("run", "DummyWorkflow", "--input", "-", "--json", env=env, stdin=path.read_text())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["input_data"] == value


@pytest.mark.parametrize(
    ("content", "argument", "message"),
    [
        (None, "@{dir}/absent.json", "--input @{dir}/absent.json: cannot read '{dir}/absent.json': No such file"),
        ("{nope", "@{dir}/bad.json", "--input @{dir}/bad.json is not valid JSON"),
        ("[1]", "@{dir}/bad.json", "--input @{dir}/bad.json must be a JSON object"),
        ('{"x": NaN}', "@{dir}/bad.json", "--input @{dir}/bad.json $.x: NaN is not a JSON number"),
        ("{nope", "-", "--input - (stdin) is not valid JSON"),
    ],
)
def test_run_with_an_input_file_or_stdin_that_is_not_an_object_exits_2_naming_it(
    env, tmp_path, content, argument, message
):
    if content is not None and argument != "-":
        (tmp_path / "bad.json").write_text(content)
    argument, message = argument.format(dir=tmp_path), message.format(dir=tmp_path)
    result = flow("run", "DummyWorkflow", "--input", argument, env=env, stdin=content or "")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_prints_each_error_with_its_path_and_exits_nonzero(env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "name": "Bad",
                "surprise": 1,
                "activities": [{"name": "NoSuchActivity"}, {"name": "DoSomethingActivity", "config": []}],
            }
        )
    )
    result = flow("validate", str(bad), str(ROOT / "workflows" / "dummy_workflow.json"), env=env)
    assert result.returncode == 2
    assert "$: Additional properties are not allowed ('surprise' was unexpected)" in result.stdout
    assert "$.activities[1].config" in result.stdout
    assert "dummy_workflow.json ok" in result.stdout.replace("\n", " ")


def test_validate_refuses_definitions_that_reach_themselves_through_children(env, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"name": "A", "activities": [{"workflow": "B"}]}))
    (tmp_path / "b.json").write_text(json.dumps({"name": "B", "activities": [{"id": "again", "workflow": "A"}]}))
    result = flow("validate", str(tmp_path / "a.json"), str(tmp_path / "b.json"), env=env)
    assert result.returncode == 2
    out = " ".join(result.stdout.split())
    assert "$.activities[0].workflow: reaches itself through child workflows: A -> B -> A" in out
    assert "$.activities[0].workflow: reaches itself through child workflows: B -> A -> B" in out


def test_validate_accepts_every_shipped_definition(env):
    files = [str(p) for p in sorted((ROOT / "workflows").glob("*.json"))]
    result = flow("validate", *files, env={**env, "FLOW_ACTIVITY_PACKAGES": ""})
    assert result.returncode == 0, result.stdout


def test_migrate_creates_the_schema(env, tmp_path):
    db = tmp_path / "fresh.db"
    result = flow("migrate", env={**env, "FLOW_DATABASE_URL": f"sqlite:///{db}"})
    assert result.returncode == 0, result.stderr
    from flow.persistence.store import Store

    assert Store.from_url(f"sqlite:///{db}").is_migrated()


def test_an_invalid_setting_names_its_variable(env):
    result = flow("run", "DummyWorkflow", env={**env, "FLOW_MAX_LIVE_ACTORS": "many"})
    assert result.returncode == 2
    assert "FLOW_MAX_LIVE_ACTORS" in result.stderr


@pytest.fixture
def broken_packages(tmp_path) -> Path:
    """``broken_sub``: a package whose submodule cannot be imported; ``raising``: a
    module that raises while imported."""
    root = tmp_path / "pkgs"
    (root / "broken_sub").mkdir(parents=True)
    (root / "broken_sub" / "__init__.py").write_text("")
    (root / "broken_sub" / "jobs.py").write_text("import no_such_dependency\n")
    (root / "raising.py").write_text("raise RuntimeError('misconfigured at import')\n")
    return root


@pytest.mark.parametrize(
    "command", [("run", "DummyWorkflow"), ("up", "--port", "0"), ("validate", "workflows/dummy_workflow.json")]
)
@pytest.mark.parametrize(
    ("packages", "message"),
    [
        ("no_such_package", "FLOW_ACTIVITY_PACKAGES names 'no_such_package', which cannot be imported"),
        ("broken_sub", "FLOW_ACTIVITY_PACKAGES names 'broken_sub', whose module 'broken_sub.jobs' cannot be imported"),
        ("raising", "FLOW_ACTIVITY_PACKAGES names 'raising', which cannot be imported: RuntimeError"),
    ],
)
def test_an_activity_package_that_cannot_be_imported_exits_2_with_one_line(
    env, broken_packages, command, packages, message
):
    result = flow(
        *command, env={**env, "FLOW_ACTIVITY_PACKAGES": packages, "COLUMNS": "60"}, extra_path=str(broken_packages)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert message in lines[0]


def test_readme_quickstart_command_runs_offline(tmp_path: Path):
    """The README's first command, with the shipped definitions and no network."""
    result = flow(
        "run",
        "DummyWorkflow",
        "--input",
        '{"x": 1}',
        env={"FLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'flow.db'}", "COLUMNS": "200"},
        timeout_s=120,
    )
    # example.org may or may not be reachable; the activity is optional either way.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Finished" in result.stdout


def readme_own_activity_script() -> str:
    """The README's "Your own activity" section as one shell script: its ``sh`` blocks as
    they are, each file block (introduced by a line naming the file) written by a heredoc."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Your own activity, from an empty directory", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]
    script = ["set -eu"]
    for intro, language, body in re.findall(r"([^\n]*)\n\n```(\w+)\n(.*?)```", section, re.S):
        if language == "sh":
            script.append(body)
        else:
            file_name = re.match(r"`([^`]+)`", intro.strip()).group(1)
            script.append(f"cat > {file_name} <<'END_OF_FILE'\n{body}END_OF_FILE")
    return "\n".join(script)


def installed_flow_env() -> dict[str, str]:
    """The environment of a user's shell: the installed ``flow`` on PATH, no PYTHONPATH, no
    FLOW_ settings (``python -m flow.cli`` would import from the current directory by itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_") and k != "PYTHONPATH"}
    return {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]), "COLUMNS": "200"}


def run_in(directory: Path, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=120)


def test_readme_own_activity_runs_literally_from_an_empty_directory(tmp_path: Path):
    script = readme_own_activity_script()
    assert "FLOW_ACTIVITY_PACKAGES=myacts flow run hello.json" in script
    assert "cat > myacts/__init__.py" in script and "cat > hello.json" in script
    env = installed_flow_env()
    result = run_in(tmp_path, ["bash", "-c", script], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "Greet" in result.stdout and "Succeeded" in result.stdout
    assert result.stdout.rstrip().endswith("Finished")
    (tmp_path / "again").mkdir()
    state = run_in(tmp_path / "again", ["bash", "-c", script.rstrip() + " --json"], env)
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout)["output"] == {"Greet": {"greeting": "hello, world"}}


def test_a_package_in_the_current_directory_that_cannot_be_imported_exits_2_with_one_line(tmp_path: Path):
    (tmp_path / "myacts").mkdir()
    (tmp_path / "myacts" / "__init__.py").write_text("import no_such_dependency\n")
    (tmp_path / "hello.json").write_text(json.dumps({"name": "Hello", "activities": [{"name": "Greet"}]}))
    env = {**installed_flow_env(), "FLOW_ACTIVITY_PACKAGES": "myacts"}
    result = run_in(tmp_path, ["flow", "run", "hello.json"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: FLOW_ACTIVITY_PACKAGES names 'myacts', which cannot be imported: "
        "ModuleNotFoundError: No module named 'no_such_dependency'"
    ]


def test_validate_checks_children_against_the_registered_definitions(env, embedded_settings, tmp_path):
    from flow.process.embedded import EmbeddedFlow

    api_def = {"name": "ApiDef", "activities": [{"name": "EchoActivity"}]}
    parent = tmp_path / "FileParent.json"
    parent.write_text(json.dumps({"name": "FileParent", "activities": [{"id": "c", "workflow": "ApiDef"}]}))
    with EmbeddedFlow(embedded_settings) as running:
        running.runtime.service.register(api_def)
    assert flow("validate", str(parent), env=env).returncode == 0
    with EmbeddedFlow(embedded_settings) as running:
        running.runtime.store.delete_definition_version("ApiDef", 1)
    # What the API would say when it loads the file: the child is gone.
    gone = flow("validate", str(parent), env=env)
    assert gone.returncode == 2, gone.stdout
    assert "$.activities[0].workflow: unknown workflow definition 'ApiDef'" in " ".join(gone.stdout.split())
    # Without a database to ask, the children not among the files are named as unchecked.
    nowhere = flow("validate", str(parent), env={**env, "FLOW_DATABASE_URL": f"sqlite:///{tmp_path}/none.db"})
    assert nowhere.returncode == 0 and "not checked" in nowhere.stdout and "ApiDef" in nowhere.stdout
    assert not (tmp_path / "none.db").exists()


def test_validate_checks_a_failure_handler_workflow_as_it_checks_a_child(env, tmp_path):
    """What PUT /definitions and the definitions directory's loading refuse, flow validate
    refuses with the same words: an on_failure workflow that is nowhere."""
    saga = tmp_path / "Saga.json"
    saga.write_text(
        json.dumps(
            {
                "name": "Saga",
                "config": {"on_failure": {"workflow": "Cleanup"}},
                "activities": [{"name": "EchoActivity"}],
            }
        )
    )
    assert flow("migrate", env=env).returncode == 0  # a database to look registered definitions up in
    missing = flow("validate", str(saga), env=env)
    assert missing.returncode == 2, missing.stdout
    said = " ".join(missing.stdout.split())
    assert "$.config.on_failure.workflow: unknown workflow definition 'Cleanup': register it first" in said
    cleanup = tmp_path / "Cleanup.json"
    cleanup.write_text(json.dumps({"name": "Cleanup", "activities": [{"name": "EchoActivity"}]}))
    assert flow("validate", str(saga), str(cleanup), env=env).returncode == 0
    nowhere = flow("validate", str(saga), env={**env, "FLOW_DATABASE_URL": f"sqlite:///{tmp_path}/none.db"})
    assert nowhere.returncode == 0 and "not checked" in nowhere.stdout and "Cleanup" in nowhere.stdout
