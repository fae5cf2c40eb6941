"""``flow prune`` against the database, and ``flow delete`` and ``flow list --input``
against a running ``flow up``, as subprocesses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from flow.clock import utcnow
from flow.persistence.models import WorkflowRecord
from flow.process.embedded import EmbeddedFlow
from flow.testing import flow_up
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for
from tests.embedded.conftest import run_cli as flow


@pytest.fixture
def env(tmp_path, definitions_dir) -> dict[str, str]:
    return embedded_env(tmp_path, definitions_dir, COLUMNS="200")


def test_prune_deletes_what_ended_before_the_retention_and_says_how_many(env, embedded_settings):
    with EmbeddedFlow(embedded_settings) as running:
        ids = [running.start("DummyWorkflow") for _ in range(3)]
        for workflow_id in ids:
            running.wait(workflow_id, timeout_s=20)
        with running.runtime.store.unit_of_work():
            WorkflowRecord.update(finished_at=utcnow() - timedelta(days=10)).where(
                WorkflowRecord.id.in_(ids[:2])
            ).execute()

    off = flow("prune", env=env)
    assert off.returncode == 2 and "--older-than" in off.stderr

    dry = flow("prune", "--older-than", "7", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "2 workflows ended before" in dry.stdout and "would be deleted" in dry.stdout

    pruned = flow("prune", "--json", env={**env, "FLOW_RETENTION_DAYS": "7"})
    assert pruned.returncode == 0, pruned.stderr
    summary = json.loads(pruned.stdout)
    assert summary["workflows"] == 2 and summary["dry_run"] is False
    assert json.loads(flow("prune", "--older-than", "7", "--json", env=env).stdout)["workflows"] == 0
    assert json.loads(flow("prune", "--older-than", "0.000001", "--json", env=env).stdout)["workflows"] == 1


def test_prune_refuses_a_retention_that_is_not_a_positive_number(env):
    result = flow("prune", "--older-than", "-1", env=env)
    assert result.returncode == 2


@pytest.fixture
def server(tmp_path, definitions_dir) -> Iterator[dict[str, str]]:
    with flow_up(tmp_path, embedded_env(tmp_path, definitions_dir)) as url:
        yield {"FLOW_API_URL": url, "COLUMNS": "200"}


def test_delete_and_list_by_input_from_the_cli(server):
    first = json.loads(flow("start", "DummyWorkflow", "--input", '{"order_id": 42}', "--json", env=server).stdout)
    other = json.loads(flow("start", "DummyWorkflow", "--input", '{"order_id": 43}', "--json", env=server).stdout)
    listed = json.loads(flow("list", "--input", '{"order_id": 42}', "--json", env=server).stdout)
    assert [w["id"] for w in listed["items"]] == [first["id"]]
    bad = flow("list", "--input", '{"order_id": ', env=server)
    assert bad.returncode == 2 and "--input" in bad.stderr

    wait_for(lambda: json.loads(flow("status", first["id"], "--json", env=server).stdout)["status"] == "Finished")
    deleted = flow("delete", first["id"], env=server)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted {first['id']}" in deleted.stdout
    assert flow("status", first["id"], env=server).returncode == 5
    assert flow("delete", first["id"], env=server).returncode == 5  # 404
    listed = json.loads(flow("list", "--json", env=server).stdout)
    assert [w["id"] for w in listed["items"]] == [other["id"]]
