"""``flow replay``'s contract for CI, each exit code and option the README names: 0 and 1
(tests/embedded/test_rerun.py), ``--filter`` narrowing to the workflows whose input
contains it, 2 for an invalid definition or option, 4 when the database cannot be read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.core.vocabulary import ActivityStatus
from flow.process.embedded import EmbeddedFlow
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of, run_cli

HELD = {
    "name": "Held",
    "activities": [{"id": "first", "name": "EchoActivity"}, {"id": "gate", "wait_for": "go"}],
}
#: "first" ran in every running workflow: a version without it breaks them all.
BROKEN = {"name": "Held", "activities": [{"id": "gate", "wait_for": "go"}]}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedFlow, dict[str, str], Path]]:
    base = tmp_path_factory.mktemp("cli_replay")
    with flow_of(base, {"Held": HELD}) as flow:
        ids = [flow.start("Held", {"tenant": tenant}) for tenant in ("acme", "acme", "other")]
        store = flow.runtime.store
        wait_for(
            lambda: all(store.get(i).state.activities[0].status is ActivityStatus.SUCCEEDED for i in ids),
            timeout_s=30,
            what="three workflows waiting",
        )
        broken = base / "broken.json"
        broken.write_text(json.dumps(BROKEN))
        yield flow, embedded_env(base, base / "workflows"), broken


def test_filter_checks_only_the_workflows_whose_input_contains_it(running):
    _, env, broken = running
    every = run_cli("replay", str(broken), "--json", env=env)
    assert every.returncode == 1, every.stdout + every.stderr
    assert json.loads(every.stdout)["workflows"] == 3
    acme = run_cli("replay", str(broken), "--json", "--filter", '{"tenant": "acme"}', env=env)
    assert acme.returncode == 1, acme.stdout + acme.stderr
    assert (json.loads(acme.stdout)["workflows"], json.loads(acme.stdout)["incompatible"]) == (2, 2)
    nobody = run_cli("replay", str(broken), "--json", "--filter", '{"tenant": "nobody"}', env=env)
    assert nobody.returncode == 0, nobody.stdout + nobody.stderr  # nothing running matches: nothing breaks
    assert json.loads(nobody.stdout)["workflows"] == 0


@pytest.mark.parametrize(
    ("definition", "args", "says"),
    [
        ({"name": "Held", "activities": [{"id": "x", "name": "NoSuchActivity"}]}, (), "NoSuchActivity"),
        ({"name": "Held", "activities": "nope"}, (), "$.activities"),
        (BROKEN, ("--filter", "[1]"), "--filter must be a JSON object"),
        (BROKEN, ("--filter", "{not json"), "--filter"),
    ],
    ids=["unknown-class", "not-a-definition", "filter-not-an-object", "filter-not-json"],
)
def test_an_invalid_definition_or_filter_exits_2_naming_it(running, tmp_path, definition, args, says):
    _, env, _ = running
    path = tmp_path / "new.json"
    path.write_text(json.dumps(definition))
    result = run_cli("replay", str(path), *args, env={**env, "COLUMNS": "250"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ({"workflow": "Nope", "id": "after"}, "unknown workflow definition 'Nope'"),
        ({"workflow": "Held", "id": "after"}, "Held"),
    ],
    ids=["unknown-child", "reaches-itself"],
)
def test_a_definition_put_would_refuse_for_its_children_exits_2(running, tmp_path, step, says):
    """The CI recipe's check: a change that cannot be registered is not reported safe."""
    _, env, _ = running
    path = tmp_path / "new.json"
    path.write_text(json.dumps({**HELD, "activities": [*HELD["activities"], step]}))
    result = run_cli("replay", str(path), env={**env, "COLUMNS": "250"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stdout and "$.activities[2].workflow" in result.stdout


def test_a_file_that_is_not_there_or_not_json_exits_2(running, tmp_path):
    _, env, _ = running
    missing = run_cli("replay", str(tmp_path / "missing.json"), env=env)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{")
    result = run_cli("replay", str(garbled), env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize(
    "database",
    ["sqlite:///{tmp}/none.db", "postgresql://postgres@127.0.0.1:1/flow"],
    ids=["sqlite-missing", "postgres-unreachable"],
)
def test_a_database_that_cannot_be_read_exits_4_and_creates_nothing(running, tmp_path, database):
    _, env, broken = running
    url = database.format(tmp=tmp_path)
    result = run_cli("replay", str(broken), "--database", url, env=env)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_a_database_without_the_schema_exits_4(running, tmp_path):
    _, env, broken = running
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")  # a file SQLite opens, with no tables
    result = run_cli("replay", str(broken), "--database", f"sqlite:///{empty}", env=env)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
