"""A rolling upgrade from the previous release, on one database and queue prefix: this
release's ``flow migrate`` under the running previous release, then the workers, the
engines (one at a time) and the API replaced, so that the previous release's engine and
API run beside this release's workers, each release's API starts workflows on each
release's engine, and (the workers put back for a while) this release's engine and API
run beside the previous release's workers. Workflows with every kind of step (an
activity, a map, a heartbeating activity, a sleep, a child workflow, a signal, a search
attribute) run to their end in each mix, and those waiting for a signal from the start
end on this release alone.

The previous release is :data:`PREVIOUS_RELEASE`, a commit of ``main`` (a clean clone has
it; a tag might not be pushed), run from a ``git archive`` of it with this interpreter's
libraries (its ``setup.py`` asks for the same ones). What differs (README, "Deploying"):
its engines keep each heartbeat of a current attempt in the history (this release keeps
it on the activity) and do not keep ``workflows.history_length`` (migration 0022, which
they do not know); its schema lacks 0022 and 0023 (a batch's idempotency key); its
``flow.record_result`` reader checks search attributes by hand (this one's codec does).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from flow.testing import Processes, check_settled, free_port, migrate, new_database, new_queue_prefix, query, wait_http
from flow.testing.cluster import FAST_RECOVERY
from tests.conftest import ROOT, wait_for
from tests.integration.conftest import wait_ended

pytestmark = pytest.mark.services

#: main before the perf merge (f45559e): the last commit without migration 0022, whose
#: engines write each current heartbeat to the history and never keep ``history_length``.
PREVIOUS_RELEASE = "3c5add87ada9aa5c4963928c5d9c94e76645adee"

#: Each request's bound: generous, as a request waits for a publish, which a busy broker
#: (or one that blocks publishers for a while) can hold for seconds.
HTTP_TIMEOUT_S = 30

#: The previous release's packages that its processes import.
PACKAGES = ("flow", "api", "actors", "activities")

#: A user's activity package, put on every process's ``PYTHONPATH``: it says which
#: release's worker ran it (the source tree its ``flow`` was imported from).
WHERE = """
import os
from pathlib import Path

import flow
from activities.base import BaseActivity


class WhereActivity(BaseActivity):
    def do_activity(self):
        tree = str(Path(flow.__file__).resolve().parents[1])
        self.output = {"tree": tree, "pid": os.getpid()}
        if self.config.get("mark"):  # a search attribute travels in the result message
            self.set_attribute("ran_on", tree)
        return self.SUCCEEDED
"""

DEFINITIONS = {
    "Rollout": {
        "name": "Rollout",
        "attributes": {"ran_on": "string"},
        "activities": [
            {"id": "first", "name": "WhereActivity", "config": {"mark": True}},
            {"id": "each", "name": "WhereActivity", "map": {"over": "input.items", "max_concurrency": 2}},
            {
                "id": "beat",
                "name": "BeatActivity",
                "config": {"steps": 2, "step_s": 0.1, "timeouts": {"heartbeat_s": 5}},
            },
            {"id": "nap", "sleep_s": 0.3},
            {"id": "sub", "workflow": "RolloutChild"},
            {"id": "go", "wait_for": "go", "timeout_s": 600},
            {"id": "last", "name": "WhereActivity", "config": {"mark": True}},
        ],
    },
    "RolloutChild": {"name": "RolloutChild", "activities": [{"id": "inner", "name": "WhereActivity"}]},
}


def previous_release(dest: Path) -> Path:
    """The previous release's packages, from this repository's history, in ``dest``."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS_RELEASE, *PACKAGES],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        message = f"the previous release ({PREVIOUS_RELEASE}) is not in this checkout's history: {e}"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI clones main with its history", pytrace=False)
        pytest.skip(message)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def partitions_held(pg_url: str) -> dict[str, int]:
    """How many partitions each engine holds, by its owner name."""
    now = "now() AT TIME ZONE 'UTC'"
    return dict(query(pg_url, f"SELECT owner, count(*) FROM partition_leases WHERE expires_at > {now} GROUP BY 1"))


class Rollout:
    """One deployment on one database and queue prefix, its processes of either release."""

    def __init__(self, tmp_path: Path, pg_url: str, prefix: str) -> None:
        lib = tmp_path / "lib"
        lib.mkdir()
        (lib / "rollout_activities.py").write_text(WHERE)
        definitions = tmp_path / "workflows"
        definitions.mkdir()
        for name, body in DEFINITIONS.items():
            (definitions / f"{name}.json").write_text(json.dumps(body))
        env = {
            "FLOW_DATABASE_URL": pg_url,
            "FLOW_QUEUE_PREFIX": prefix,
            "FLOW_DEFINITIONS_DIR": str(definitions),
            "FLOW_ACTIVITY_PACKAGES": "flow.testing.activities,rollout_activities",
            "FLOW_START_ROUTING_KEY": f"starter_{prefix}",
            "PYTHONPATH": str(lib),
            **FAST_RECOVERY,
        }
        self.pg_url, self.prefix = pg_url, prefix
        (tmp_path / "previous-logs").mkdir()
        (tmp_path / "this-logs").mkdir()
        self.previous = Processes(tmp_path / "previous-logs", env, root=previous_release(tmp_path / "previous"))
        self.this = Processes(tmp_path / "this-logs", env)
        #: The source tree of each release, as ``WhereActivity`` reports it.
        self.old_tree, self.new_tree = str(self.previous.root.resolve()), str(ROOT.resolve())
        self.url = ""

    def api(self, procs: Processes) -> str:
        """Start the API of ``procs``'s release; its URL (once it answers: :meth:`serve`)."""
        port = free_port()
        procs.gunicorn("api", port, workers=1)
        return f"http://127.0.0.1:{port}"

    def serve(self, url: str) -> None:
        """Send requests to ``url`` from now on, once it answers."""
        wait_http(f"{url}/health", timeout_s=60)
        self.url = url

    def workers(self, to: Processes) -> None:
        """Replace the worker by ``to``'s release's (it joins first, the other stops gracefully)."""
        to.dramatiq("worker", f"{self.prefix}.activities")
        other = self.previous if to is self.this else self.this
        assert other.stop("worker") == 0

    def upgrade_engine_and_api(self) -> list[str]:
        """This release's engine joins and takes half the partitions; through each
        release's API, workflows are started until one is on each engine's partitions;
        then the previous engine stops. Returns the workflows started meanwhile."""
        self.this.dramatiq("engine", f"{self.prefix}.engine")
        new_api = self.api(self.this)
        half = int(FAST_RECOVERY["FLOW_PARTITIONS"]) // 2
        wait_for(lambda: list(partitions_held(self.pg_url).values()) == [half, half], timeout_s=60, what="halves")
        during = self.start_on_each_engine()
        self.serve(new_api)
        assert self.previous.stop("api") == 0
        during += self.start_on_each_engine()
        assert self.previous.stop("engine") == 0
        return during

    def start_on_each_engine(self) -> list[str]:
        """Start workflows until one is on a partition of each of the two engines (a
        workflow's partition is a hash of its id, which a start cannot choose)."""
        owners = dict(query(self.pg_url, "SELECT partition, owner FROM partition_leases"))
        started: list[str] = []
        while len({owners[partition] for partition in self.partitions(started)}) < 2:
            assert len(started) < 30, "30 workflows on one engine's partitions, of two halves"
            started.append(self.start(signalled=True))
        return started

    def partitions(self, workflows: list[str]) -> list[int]:
        rows = query(self.pg_url, "SELECT partition FROM workflows WHERE id = ANY(%s)", workflows)
        return [partition for (partition,) in rows]

    def start(self, *, signalled: bool) -> str:
        body = {"name": "Rollout", "input_data": {"items": [1, 2, 3]}}
        response = requests.post(f"{self.url}/workflows", json=body, timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 201, response.text
        workflow_id = response.json()["id"]
        if signalled:  # sent before its wait: kept until the wait's turn
            self.send_go(workflow_id)
        return workflow_id

    def send_go(self, workflow_id: str) -> None:
        sent = requests.post(
            f"{self.url}/workflows/{workflow_id}/signals/go", json={"payload": "go"}, timeout=HTTP_TIMEOUT_S
        )
        assert sent.status_code == 202, sent.text

    def view(self, workflow_id: str) -> dict:
        return requests.get(f"{self.url}/workflows/{workflow_id}", timeout=HTTP_TIMEOUT_S).json()

    def step(self, workflow_id: str, step_id: str) -> dict:
        return next(a for a in self.view(workflow_id)["activities"] if a["id"] == step_id)

    def trees(self, workflow_id: str) -> dict[str, str]:
        """Which release's worker ran each step of the workflow (a map's items, its child's
        activity): ``"previous"`` or ``"this"`` (both: ``"both"``)."""
        steps = {a["id"]: a for a in self.view(workflow_id)["activities"]}
        child = self.view(steps["sub"]["child_id"])
        found = {
            "first": {steps["first"]["output"]["tree"]},
            "each": {item["tree"] for item in steps["each"]["output"]},
            "inner": {child["activities"][0]["output"]["tree"]},
            "last": {steps["last"]["output"]["tree"]},
        }
        names = {frozenset({self.old_tree}): "previous", frozenset({self.new_tree}): "this"}
        return {key: names.get(frozenset(trees), "both") for key, trees in found.items()}

    def history(self, workflow_id: str) -> list[str]:
        events = requests.get(
            f"{self.url}/workflows/{workflow_id}/events", params={"limit": 500}, timeout=HTTP_TIMEOUT_S
        ).json()
        return [e["type"] for e in events["items"]]

    def engine(self, workflow_id: str) -> str:
        """Which release's engine decided the workflow, from what differs (module docstring):
        ``"previous"`` (heartbeats in the history, none counted in ``history_length``),
        ``"this"`` (no heartbeat in the history, every entry counted), ``"both, counted"``
        (heartbeats in the history, every entry counted: the previous engine before the
        migration counted its entries, this one after)."""
        history = self.history(workflow_id)
        length, beats = self.view(workflow_id)["history_length"], "activity-heartbeat" in history
        if beats and length == 0:
            return "previous"
        if length == len(history):
            return "both, counted" if beats else "this"
        return f"neither: history_length {length}, history {history}"

    def stop(self) -> None:
        for procs in (self.this, self.previous):
            procs.stop_all(sig=signal.SIGKILL)


def test_a_rolling_upgrade_from_the_previous_release_runs_every_workflow_to_its_end(services, tmp_path):
    """Upgraded one kind of process at a time, in both orders' middle states: the workers
    first (the previous engine and API with this release's workers), then the engines
    and API, then the workers put back to the previous release's for a while (this
    release's engine and API with the previous release's workers, as when the engines go
    first), then this release everywhere."""
    with new_database() as pg_url, new_queue_prefix() as prefix:
        rollout = Rollout(tmp_path, pg_url, prefix)
        previous, this = rollout.previous, rollout.this
        try:
            # The previous release, on its own schema, with workflows waiting for a signal.
            migrate(previous.env, root=previous.root)
            previous.dramatiq("engine", f"{prefix}.engine")
            previous.dramatiq("worker", f"{prefix}.activities")
            rollout.serve(rollout.api(previous))
            crossing = [rollout.start(signalled=False) for _ in range(2)]
            for workflow_id in crossing:
                wait_for(lambda w=workflow_id: rollout.step(w, "go")["status"] == "Waiting", timeout_s=60)

            # This release's `flow migrate` while the previous one runs; it goes on.
            migrate(this.env)
            migrated = [rollout.start(signalled=True) for _ in range(2)]
            wait_finished(rollout, migrated)

            # The workers first: the previous engine and API, this release's workers.
            rollout.workers(this)
            workers_first = [rollout.start(signalled=True) for _ in range(2)]
            wait_finished(rollout, workers_first)

            # The engines one at a time, and the API.
            during = rollout.upgrade_engine_and_api()

            # As if the engines had gone first: this release's engine and API, the previous workers.
            rollout.workers(previous)
            engines_first = [rollout.start(signalled=True) for _ in range(2)]
            wait_finished(rollout, engines_first)

            # This release everywhere: the workflows waiting since the start go on.
            rollout.workers(this)
            for workflow_id in crossing:
                rollout.send_go(workflow_id)
            upgraded = [rollout.start(signalled=True) for _ in range(2)]

            everyone = crossing + migrated + workers_first + during + engines_first + upgraded
            expected = {"Rollout": "Finished", "RolloutChild": "Finished"}
            figures = check_settled(pg_url, dict.fromkeys(everyone, "Rollout"), expected, timeout_s=60)
            assert figures["workflows"] == 2 * len(everyone)  # each with its child

            # Each step ran on the worker of the release the test says, not the other's by accident.
            steps = ["first", "each", "inner", "last"]
            for workflow_id in crossing:
                assert rollout.trees(workflow_id) == {**dict.fromkeys(steps, "previous"), "last": "this"}
            for workflows, release in [
                (migrated, "previous"),
                (workers_first, "this"),
                (during, "this"),
                (engines_first, "previous"),
            ]:
                for workflow_id in workflows:
                    assert rollout.trees(workflow_id) == dict.fromkeys(steps, release)
            for workflow_id in upgraded:
                assert rollout.trees(workflow_id) == dict.fromkeys(steps, "this")
            # The attribute the first and last steps set reached the engine in their results.
            for workflow_id in everyone:
                tree = rollout.view(workflow_id)["attributes"]["ran_on"]
                assert tree == (rollout.new_tree if rollout.trees(workflow_id)["last"] == "this" else rollout.old_tree)

            # Each workflow was decided by the engine the test says (its history tells them apart).
            for workflow_id in migrated + workers_first:
                assert rollout.engine(workflow_id) == "previous"
            for workflow_id in engines_first + upgraded:
                assert rollout.engine(workflow_id) == "this"
            for workflow_id in crossing:  # counted by the migration, then by this release's engine
                assert rollout.engine(workflow_id) == "both, counted"
        finally:
            rollout.stop()


def wait_finished(rollout: Rollout, workflows: list[str]) -> None:
    for workflow_id in workflows:
        assert wait_ended(rollout.url, workflow_id)["status"] == "Finished"
