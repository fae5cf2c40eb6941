"""``flow up`` as a real process, and the remote commands against it, as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from flow.testing import flow_up
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions
from flow.testing.processes import free_port
from tests.conftest import ROOT, wait_for
from tests.embedded.conftest import run_cli as flow


@pytest.fixture(scope="module")
def server(tmp_path_factory, http_server) -> Iterator[dict[str, str]]:
    """One ``flow up`` for the tests that read only what they made (a ``flow up`` costs a
    process's start): each starts its own workflows and registers definitions, schedules
    and events under names no other test uses, so none changes what another finds; a bad
    name is refused, so it changes nothing."""
    base = tmp_path_factory.mktemp("shared")
    definitions = write_definitions(base / "workflows", sample_definitions(http_server))
    with flow_up(base, embedded_env(base, definitions)) as url:
        yield {"FLOW_API_URL": url, "COLUMNS": "200"}


@pytest.fixture
def own_server(tmp_path, definitions_dir) -> Iterator[dict[str, str]]:
    """A ``flow up`` of the test's own, for a test that reads what the whole server holds
    (every workflow of a name, every schedule)."""
    with flow_up(tmp_path, embedded_env(tmp_path, definitions_dir)) as url:
        yield {"FLOW_API_URL": url, "COLUMNS": "200"}


def test_start_wait_shows_progress_and_exits_with_the_outcome(server):
    ok = flow("start", "DummyWorkflow", "--input", '{"x": 1}', "--wait", env=server)
    assert ok.returncode == 0, ok.stderr
    assert "workflow finished" in ok.stdout and "Finished" in ok.stdout
    failed = flow("start", "FailingWorkflow", "--wait", env=server)
    assert failed.returncode == 1
    assert "workflow failed" in failed.stdout


def test_start_status_list_events_as_json(own_server):
    started = json.loads(flow("start", "RetryWorkflow", "--json", env=own_server).stdout)
    workflow_id = started["id"]
    wait_for(lambda: json.loads(flow("status", workflow_id, "--json", env=own_server).stdout)["status"] == "Finished")
    listed = json.loads(flow("list", "--json", "--name", "RetryWorkflow", env=own_server).stdout)
    assert [w["id"] for w in listed["items"]] == [workflow_id]
    history = json.loads(flow("events", workflow_id, "--json", env=own_server).stdout)
    assert [e["type"] for e in history].count("reschedule-activity") == 2
    human = flow("events", workflow_id, env=own_server)
    assert "will retry" in human.stdout


def test_start_with_a_priority_and_list_and_status_show_it(server):
    urgent = json.loads(flow("start", "RetryWorkflow", "--priority", "1", "--json", env=server).stdout)
    plain = json.loads(flow("start", "RetryWorkflow", "--json", env=server).stdout)
    assert (urgent["priority"], plain["priority"]) == (1, 3)
    listed = json.loads(flow("list", "--json", "--priority", "1", env=server).stdout)
    assert [(w["id"], w["priority"]) for w in listed["items"]] == [(urgent["id"], 1)]
    shown = flow("status", urgent["id"], env=server)
    assert shown.returncode == 0, shown.stderr
    assert f"{urgent['id']}  priority 1" in shown.stdout
    refused = flow("start", "RetryWorkflow", "--priority", "6", env=server)
    assert refused.returncode == 2 and "'--priority': 6 is not in the range 1<=x<=5" in refused.stderr


def test_start_reads_the_input_from_a_file_or_stdin(server, tmp_path):
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"text": "x" * 200_000}))
    from_file = json.loads(flow("start", "DummyWorkflow", "--input", f"@{path}", "--json", env=server).stdout)
    from_stdin = json.loads(
        flow("start", "DummyWorkflow", "--input", "-", "--json", env=server, stdin='{"y": 2}').stdout
    )
    assert len(from_file["input_data"]["text"]) == 200_000
    assert from_stdin["input_data"] == {"y": 2}


def test_events_show_no_line_for_events_that_decide_nothing(server):
    workflow_id = json.loads(flow("start", "ParallelWorkflow", "--json", env=server).stdout)["id"]
    wait_for(lambda: json.loads(flow("status", workflow_id, "--json", env=server).stdout)["status"] == "Finished")
    history = json.loads(flow("events", workflow_id, "--json", env=server).stdout)
    assert "do-nothing" in [e["type"] for e in history]  # each "started" report, each independent result
    human = flow("events", workflow_id, env=server)
    assert "started" in human.stdout
    assert "do-nothing" not in human.stdout and "nothing to do" not in human.stdout


def test_idempotency_key_from_the_cli(server):
    first = json.loads(flow("start", "DummyWorkflow", "--idempotency-key", "k-1", "--json", env=server).stdout)
    second = json.loads(flow("start", "DummyWorkflow", "--idempotency-key", "k-1", "--json", env=server).stdout)
    assert first["id"] == second["id"]


def test_cancel_and_retry_from_the_cli(server):
    slow = {
        "name": "SlowOne",
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 30}}, {"name": "NoopActivity"}],
    }
    put = requests.put(f"{server['FLOW_API_URL']}/definitions/SlowOne", json=slow, timeout=5)
    assert put.status_code == 201
    workflow_id = json.loads(flow("start", "SlowOne", "--json", env=server).stdout)["id"]
    cancelled = flow("cancel", workflow_id, "--reason", "testing", env=server)
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(lambda: json.loads(flow("status", workflow_id, "--json", env=server).stdout)["status"] == "Cancelled")
    refused = flow("cancel", workflow_id, env=server)
    assert refused.returncode == 5  # already ended: 409, in the API's words
    assert f"409 Workflow already ended: workflow {workflow_id} is Cancelled; only a running" in refused.stderr

    failed = json.loads(flow("start", "FailingWorkflow", "--json", env=server).stdout)["id"]
    wait_for(lambda: json.loads(flow("status", failed, "--json", env=server).stdout)["status"] == "Failed")
    assert flow("retry", failed, env=server).returncode == 0
    wait_for(lambda: json.loads(flow("status", failed, "--json", env=server).stdout)["status"] != "In Progress")
    events = json.loads(flow("events", failed, "--json", env=server).stdout)
    assert "retry-workflow" in [e["type"] for e in events]


def test_signal_from_the_cli_once_per_key(server):
    url = server["FLOW_API_URL"]
    body = {
        "name": "TwoWaits",
        "activities": [{"id": "approval", "wait_for": "approved"}, {"id": "shipping", "wait_for": "shipped"}],
    }
    assert requests.put(f"{url}/definitions/TwoWaits", json=body, timeout=5).status_code == 201
    workflow_id = json.loads(flow("start", "TwoWaits", "--json", env=server).stdout)["id"]
    for _ in range(2):  # a retried send with the same key delivers once
        sent = flow("signal", workflow_id, "approved", "--data", '{"by": "ana"}', "--key", "k1", env=server)
        assert sent.returncode == 0, sent.stderr
        assert "sent signal approved" in sent.stdout

    def events() -> list[dict]:
        return json.loads(flow("events", workflow_id, "--json", env=server).stdout)

    wait_for(lambda: [e["type"] for e in events()].count("signal-received") == 2)
    assert flow("signal", workflow_id, "shipped", "--data", "-", env=server, stdin="42").returncode == 0
    wait_for(lambda: json.loads(flow("status", workflow_id, "--json", env=server).stdout)["status"] == "Finished")
    view = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()
    assert [a["output"] for a in view["activities"]] == [{"by": "ana"}, 42]
    history = events()
    approved = [e["data"]["signal_id"] for e in history if e["type"] == "signal-received"][:2]
    assert approved[0] == approved[1]
    assert [e["type"] for e in history].count("end-wait") == 2
    # Ended: 409, exit 5; unknown workflow: 404, exit 5; a name no signal can have: 422, exit 2.
    assert flow("signal", workflow_id, "approved", env=server).returncode == 5
    assert flow("signal", "no-such-workflow", "approved", env=server).returncode == 5
    bad = flow("signal", workflow_id, "not%20a%20name", env=server)
    assert bad.returncode == 2, (bad.returncode, bad.stderr)


def test_signal_by_callback_token_from_the_cli_delivers_once(server):
    url = server["FLOW_API_URL"]
    body = {"name": "WaitOnly", "activities": [{"id": "approval", "wait_for": "approved"}]}
    assert requests.put(f"{url}/definitions/WaitOnly", json=body, timeout=5).status_code == 201
    workflow_id = json.loads(flow("start", "WaitOnly", "--json", env=server).stdout)["id"]
    status = json.loads(flow("status", workflow_id, "--json", env=server).stdout)
    token = status["activities"][0]["callback_token"]
    sent = flow("signal", "--token", token, "--data", '{"by": "vendor"}', env=server)
    assert sent.returncode == 0, sent.stderr
    assert f"sent signal approved to {workflow_id} by its callback token" in sent.stdout
    wait_for(lambda: json.loads(flow("status", workflow_id, "--json", env=server).stdout)["status"] == "Finished")
    assert requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()["output"] == {"approval": {"by": "vendor"}}
    # Spent (410) and forged (404): the API refused, exit 5; ID or --key with a token: usage, exit 2.
    assert flow("signal", "--token", token, env=server).returncode == 5
    assert flow("signal", "--token", token[:-2] + "xx", env=server).returncode == 5
    assert flow("signal", workflow_id, "approved", "--token", token, env=server).returncode == 2
    assert flow("signal", "--token", token, "--key", "k", env=server).returncode == 2
    assert flow("signal", workflow_id, env=server).returncode == 2


def test_pause_and_resume_from_the_cli(server):
    url = server["FLOW_API_URL"]
    body = {
        "name": "GoThenNoop",
        "activities": [{"id": "go", "wait_for": "go"}, {"id": "next", "name": "NoopActivity"}],
    }
    assert requests.put(f"{url}/definitions/GoThenNoop", json=body, timeout=5).status_code == 201
    workflow_id = json.loads(flow("start", "GoThenNoop", "--json", env=server).stdout)["id"]

    def view() -> dict:
        return requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()

    assert flow("pause", workflow_id, env=server).returncode == 0
    wait_for(lambda: view()["paused"])
    refused = flow("pause", workflow_id, env=server)
    assert refused.returncode == 5  # paused already: 409, in the API's words
    assert f"409 Workflow cannot be paused: workflow {workflow_id} is paused already" in refused.stderr
    assert flow("signal", workflow_id, "go", env=server).returncode == 0
    # The wait takes its signal while paused; the next activity is not scheduled.
    wait_for(lambda: view()["activities"][0]["status"] == "Succeeded")
    events = json.loads(flow("events", workflow_id, "--json", env=server).stdout)
    assert "pause-workflow" in [e["type"] for e in events]
    assert view()["activities"][1]["status"] == "Pending" and view()["status"] == "In Progress"
    assert flow("resume", workflow_id, env=server).returncode == 0
    wait_for(lambda: view()["status"] == "Finished")
    assert not view()["paused"]
    assert flow("resume", workflow_id, env=server).returncode == 5  # ended: 409


def test_definitions_from_the_cli(server):
    listed = flow("definitions", env=server)
    assert listed.returncode == 0 and "DummyWorkflow" in listed.stdout
    shown = json.loads(flow("definitions", "DummyWorkflow", "--json", env=server).stdout)
    assert shown["version"] == 1


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("status", "no-such-id"), 5, "404"),
        (("start", "NoSuchWorkflow"), 2, "NoSuchWorkflow"),
        (("start", "DummyWorkflow", "--input", "[]"), 2, "JSON object"),
        (("retry", "no-such-id"), 5, "404"),
    ],
)
def test_remote_errors_have_clear_messages_and_exit_codes(server, args, code, text):
    result = flow(*args, env=server)
    assert result.returncode == code
    assert text in result.stderr


def test_an_unreachable_api_exits_4():
    result = flow("list", env={"FLOW_API_URL": f"http://127.0.0.1:{free_port()}"})
    assert result.returncode == 4
    assert "cannot reach the API" in result.stderr


def test_list_pages_filters_and_never_cuts_ids(own_server):
    narrow = {**own_server, "COLUMNS": "80"}
    started = [json.loads(flow("start", "DummyWorkflow", "--json", env=own_server).stdout) for _ in range(3)]
    ids = [w["id"] for w in reversed(started)]  # newest first

    first = flow("list", "--name", "DummyWorkflow", "--limit", "2", env=narrow)
    assert first.returncode == 0, first.stderr
    rows = [line.split("\t") for line in first.stdout.splitlines()]
    assert [row[0] for row in rows] == ids[:2]  # whole ids, not cut at 80 columns
    assert [row[1] for row in rows] == ["DummyWorkflow"] * 2
    more = first.stderr.strip()
    assert more.startswith("more: flow list --name DummyWorkflow --limit 2 --cursor ")

    rest = flow(*more.removeprefix("more: flow ").split(), env=narrow)
    assert [line.split("\t")[0] for line in rest.stdout.splitlines()] == ids[2:]
    assert rest.stderr == ""

    every = json.loads(
        flow("list", "--name", "DummyWorkflow", "--limit", "1", "--all", "--json", env=own_server).stdout
    )
    assert [w["id"] for w in every["items"]] == ids and every["next"] is None

    since = json.loads(
        flow(
            "list", "--created-after", started[1]["created_at"], "--name", "DummyWorkflow", "--json", env=own_server
        ).stdout
    )
    assert [w["id"] for w in since["items"]] == ids[:2]
    until = json.loads(flow("list", "--created-before", started[1]["created_at"], "--json", env=own_server).stdout)
    assert [w["id"] for w in until["items"]] == ids[2:]
    bad = flow("list", "--created-after", "yesterday", env=own_server)
    assert bad.returncode == 2 and "created_after" in bad.stderr


def test_the_list_table_keeps_whole_ids_on_a_narrow_terminal():
    import io

    from rich.console import Console

    from flow.cli.remote import workflow_table

    workflow_id = "53649108-630b-481c-9acb-6510824abbe3"
    summary = {
        "id": workflow_id,
        "name": "SomeRatherLongWorkflowName",
        "status": "In Progress",
        "created_at": "2026-11-29T23:38:55.673000Z",
        "finished_at": None,
    }
    screen = io.StringIO()
    Console(file=screen, width=80, force_terminal=True, color_system=None).print(workflow_table([summary]))
    assert workflow_id in screen.getvalue()
    assert "…" not in screen.getvalue()  # other columns wrap; nothing is cut
    assert all(len(line) <= 80 for line in screen.getvalue().splitlines())


def test_schedules_from_the_cli(server, tmp_path):
    path = tmp_path / "nightly.json"
    path.write_text(json.dumps({"workflow": "DummyWorkflow", "cron": "30 2 * * *", "timezone": "Europe/Paris"}))
    put = flow("schedules", "put", str(path), "--json", env=server)
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["name"] == "nightly"
    listed = flow("schedules", "list", env=server)
    assert "nightly" in listed.stdout and "30 2 * * *" in listed.stdout
    assert flow("schedules", "pause", "nightly", env=server).returncode == 0
    assert json.loads(flow("schedules", "show", "nightly", "--json", env=server).stdout)["paused"] is True
    assert "next run" in flow("schedules", "resume", "nightly", env=server).stdout
    started = json.loads(flow("schedules", "trigger", "nightly", "--json", env=server).stdout)
    shown = flow("schedules", "show", "nightly", env=server)
    assert started["id"] in shown.stdout and "manual" in shown.stdout
    assert flow("schedules", "delete", "nightly", env=server).returncode == 0
    missing = flow("schedules", "show", "nightly", env=server)
    assert missing.returncode == 5 and "no schedule named 'nightly'" in missing.stderr
    path.write_text(json.dumps({"workflow": "DummyWorkflow", "cron": "99 * * * *"}))
    invalid = flow("schedules", "put", str(path), env=server)
    assert invalid.returncode == 2 and "$.cron" in invalid.stderr


@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        ("with space", 2, "422"),
        ("what?", 2, "422"),
        ("hash#tag", 2, "422"),
        ("..", 2, "422"),
        ("%41", 2, "422"),
        # The server decodes %2F before routing: no route, 404 (exit 5), not another schedule.
        ("a/b", 5, "404"),
    ],
)
def test_names_are_quoted_in_urls_and_a_bad_one_exits_with_a_documented_code(server, name, code, status):
    for args in (
        ("schedules", "show", name),
        ("schedules", "pause", name),
        ("schedules", "resume", name),
        ("schedules", "trigger", name),
        ("schedules", "delete", name),
    ):
        result = flow(*args, env=server)
        # The name reached the API as one path segment, which refused it by the rule.
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr and status in result.stderr, (args, result.stderr)
    shown = flow("definitions", name, env=server)
    assert shown.returncode == 5, shown.stderr
    assert "Traceback" not in shown.stderr and "404" in shown.stderr


def test_schedules_list_follows_every_page(own_server, tmp_path):
    import requests as http

    body = {"workflow": "DummyWorkflow", "cron": "0 0 1 1 *", "paused": True}
    for n in range(55):  # more than one page of the API's default 50
        assert http.put(f"{own_server['FLOW_API_URL']}/schedules/s{n:02}", json=body, timeout=10).status_code == 201
    listed = json.loads(flow("schedules", "list", "--json", env=own_server).stdout)
    assert [s["name"] for s in listed["items"]] == [f"s{n:02}" for n in range(55)]
    assert listed["next"] is None
    table = flow("schedules", "list", env=own_server)
    assert table.returncode == 0 and "s00" in table.stdout and "s54" in table.stdout


def test_event_send_show_and_list(server):
    body = {
        "name": "OnCliEvent",
        "triggers": [{"event": "cli.done", "input": "{who: data.who}"}],
        "activities": [{"name": "NoopActivity"}],
    }
    assert requests.put(f"{server['FLOW_API_URL']}/definitions/OnCliEvent", json=body, timeout=5).status_code == 201
    sent = json.loads(
        flow("event", "send", "cli.done", "--id", "cli-1", "--data", '{"who": "me"}', "--json", env=server).stdout
    )
    assert sent["duplicate"] is False and len(sent["workflows"]) == 1
    again = flow("event", "send", "cli.done", "--id", "cli-1", "--data", '{"who": "me"}', env=server)
    assert again.returncode == 0 and "was sent before: nothing new started" in again.stdout
    shown = flow("event", "show", "cli-1", env=server)
    assert shown.returncode == 0 and f"OnCliEvent trigger 0: {sent['workflows'][0]}" in shown.stdout
    listed = flow("event", "list", env=server)
    assert listed.returncode == 0 and "cli-1" in listed.stdout and "cli.done" in listed.stdout
    bad = flow("event", "send", "cli.done", "--data", "[1]", env=server)
    assert bad.returncode == 2 and "--data must be a JSON object" in bad.stderr


def test_a_remote_command_starts_without_the_engine_the_schemas_or_the_database_driver():
    # The group imports a command's module when the command runs (flow.cli.app.Commands).
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from flow.cli import main; main(['status', '--help'], standalone_mode=False); "
            "print(' '.join(sorted(sys.modules)), file=sys.stderr)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stderr.split()
    assert "flow.cli.remote" in loaded
    for heavy in ("jsonschema", "jmespath", "flow.core.decide", "flow.core.definition", "peewee", "flow.cli.embedded"):
        assert heavy not in loaded, heavy
