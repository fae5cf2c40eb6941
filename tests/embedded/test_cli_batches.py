"""``flow batch ...`` against ``flow up`` as a real process: start a batch with the
filters of ``flow list`` and watch it to the end, list it, show it, and the refusals'
exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from flow.testing import flow_up
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for
from tests.embedded.conftest import run_cli as flow


@pytest.fixture
def server(tmp_path, definitions_dir) -> Iterator[dict[str, str]]:
    with flow_up(tmp_path, embedded_env(tmp_path, definitions_dir)) as url:
        yield {"FLOW_API_URL": url, "COLUMNS": "200"}


def test_a_batch_from_the_cli_retries_the_failed_workflows_with_its_progress_shown_and_refusals_say_why(server):
    api = server["FLOW_API_URL"]
    ids = [
        requests.post(f"{api}/workflows", json={"name": "FailingWorkflow"}, timeout=5).json()["id"] for _ in range(3)
    ]
    wait_for(
        lambda: all(requests.get(f"{api}/workflows/{i}", timeout=5).json()["status"] == "Failed" for i in ids),
        timeout_s=60,
        what="three failed workflows",
    )
    watched = flow("batch", "start", "retry", "--status", "Failed", "--name", "FailingWorkflow", "--watch", env=server)
    assert watched.returncode == 0, watched.stderr
    assert "started retry batch" in watched.stdout
    assert "finished: matched 3, done 3, failed 0, skipped 0, pending 0" in watched.stdout

    def retries() -> list[int]:
        events = [requests.get(f"{api}/workflows/{i}/events", timeout=5).json()["items"] for i in ids]
        return [[e["type"] for e in history].count("retry-workflow") for history in events]

    wait_for(lambda: retries() == [1, 1, 1], timeout_s=30, what="one retry of each")

    listed = json.loads(flow("batch", "list", "--json", env=server).stdout)["items"]
    assert [(b["operation"], b["status"], b["done"]) for b in listed] == [("retry", "finished", 3)]
    batch_id = listed[0]["id"]
    assert listed[0]["filter"] == {"status": "Failed", "name": "FailingWorkflow"} and listed[0]["created_by"]
    shown = flow("batch", "show", batch_id, env=server)
    assert shown.returncode == 0 and f"retry batch {batch_id} finished" in shown.stdout
    refused = flow("batch", "cancel", batch_id, env=server)
    assert refused.returncode == 5 and "409 Batch already ended" in refused.stderr

    # Refusals exit with the documented codes, in the API's words.
    for args, code, text in [
        (("batch", "start", "rerun"), 2, "$.rerun: required for a rerun"),
        (("batch", "start", "retry", "--status", "Lost"), 2, "$.filter.status: must be one of In Progress"),
        (("batch", "show", "no-such-batch"), 5, "404 Batch not found"),
    ]:
        refused = flow(*args, env=server)
        assert refused.returncode == code, refused.stderr
        assert text in refused.stderr
