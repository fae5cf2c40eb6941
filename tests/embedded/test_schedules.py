"""Cron schedules on the embedded engine, through the API: a schedule ticking every
second starts a workflow per tick; pause stops it, resume starts it again, trigger
starts one now, delete stops it for good; bodies are checked field by field; schedule
files in the definitions directory are applied."""

from __future__ import annotations

import json
import logging

import pytest

from flow.core.schedules import SCHEDULE_NAME_RULE, tick_workflow_id
from flow.core.timestamps import parse_iso
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for

TICK = {"name": "Tick", "activities": [{"name": "EchoActivity"}]}
YEARLY = {"workflow": "Tick", "cron": "0 0 1 1 *", "paused": True}
EVERY_SECOND = {"workflow": "Tick", "cron": "* * * * * *", "input_data": {"from": "schedule"}}


@pytest.fixture
def client(client):
    assert client.simulate_put("/definitions/Tick", json=TICK).status_code in (200, 201)
    return client


def get(client, name: str) -> dict:
    response = client.simulate_get(f"/schedules/{name}")
    assert response.status_code == 200, response.text
    return response.json


def runs(client, name: str) -> list[dict]:
    return get(client, name)["recent_runs"]


def passes_after(flow, count: int) -> None:
    """Wait until the engine has made ``count`` more schedule passes (each one reads the
    schedules anew): what a schedule would have done by then, it has done."""
    ticker = flow.engine.schedules
    target = ticker.passes + count
    wait_for(lambda: ticker.passes >= target, timeout_s=30, what=f"{count} schedule passes")


def test_a_schedule_ticking_every_second_starts_one_workflow_per_tick(client, flow):
    response = client.simulate_put("/schedules/every-second", json=EVERY_SECOND)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/schedules/every-second"
    assert response.json["next_run_at"] and response.json["overlap"] == "skip"

    def three_finished() -> list[dict] | None:
        done = [r for r in runs(client, "every-second") if r["status"] == "Finished"]
        return done[:3] if len(done) >= 3 else None

    finished = wait_for(three_finished, timeout_s=60, what="three ticks' workflows to finish")
    for run in finished:
        # One workflow per tick, its id derived from the schedule and the tick.
        assert run["trigger"] == "cron"
        assert run["workflow_id"] == tick_workflow_id("every-second", parse_iso(run["tick_at"]))
        workflow = client.simulate_get(f"/workflows/{run['workflow_id']}").json
        assert workflow["name"] == "Tick" and workflow["input_data"] == {"from": "schedule"}
    assert len({r["tick_at"] for r in finished}) == 3
    shown = get(client, "every-second")
    assert shown["fired"] >= 3 and shown["last_workflow_id"]


def test_pause_stops_the_ticks_and_resume_starts_them_again(client, flow):
    assert client.simulate_put("/schedules/pausable", json=EVERY_SECOND).status_code == 201
    wait_for(lambda: runs(client, "pausable") or None, timeout_s=30, what="a first tick")

    paused = client.simulate_post("/schedules/pausable/pause")
    assert paused.status_code == 200 and paused.json["paused"] is True
    assert paused.json["next_run_at"] is None
    paused_at = parse_iso(paused.json["updated_at"])
    passes_after(flow, 4)
    cron_runs = [r for r in runs(client, "pausable") if r["trigger"] == "cron"]
    assert all(parse_iso(r["tick_at"]) <= paused_at for r in cron_runs), cron_runs
    assert get(client, "pausable")["paused"] is True

    resumed = client.simulate_post("/schedules/pausable/resume")
    assert resumed.status_code == 200 and resumed.json["paused"] is False
    wait_for(
        lambda: any(parse_iso(r["tick_at"]) > paused_at for r in runs(client, "pausable")),
        timeout_s=30,
        what="a tick after the resume",
    )


def test_trigger_starts_a_workflow_now_even_while_paused(client, flow):
    body = {**EVERY_SECOND, "cron": "0 0 1 1 *", "paused": True}
    assert client.simulate_put("/schedules/yearly", json=body).status_code == 201
    response = client.simulate_post("/schedules/yearly/trigger")
    assert response.status_code == 201, response.text
    workflow_id = response.json["id"]
    assert response.headers["Location"] == f"/workflows/{workflow_id}"
    assert response.json["input_data"] == {"from": "schedule"}
    assert flow.wait(workflow_id, timeout_s=30).state.status == "Finished"
    [run] = runs(client, "yearly")
    assert run["trigger"] == "manual" and run["workflow_id"] == workflow_id and run["status"] == "Finished"
    assert get(client, "yearly")["last_workflow_id"] == workflow_id


def test_delete_stops_the_schedule(client, flow):
    assert client.simulate_put("/schedules/doomed", json=EVERY_SECOND).status_code == 201
    first = wait_for(lambda: runs(client, "doomed") or None, timeout_s=30, what="a first tick")
    assert client.simulate_delete("/schedules/doomed").status_code == 204
    assert client.simulate_get("/schedules/doomed").status_code == 404
    assert client.simulate_delete("/schedules/doomed").status_code == 404

    def started() -> set[str]:
        items = client.simulate_get("/workflows", params={"name": "Tick", "limit": 500}).json["items"]
        return {w["id"] for w in items}

    passes_after(flow, 1)
    before = started()
    assert first[0]["workflow_id"] in before
    passes_after(flow, 4)
    assert started() == before


def test_put_again_replaces_and_answers_200(client):
    assert client.simulate_put("/schedules/nightly", json={**EVERY_SECOND, "cron": "0 2 * * *"}).status_code == 201
    body = {**EVERY_SECOND, "cron": "30 2 * * *", "timezone": "Europe/Paris", "overlap": "buffer_one"}
    response = client.simulate_put("/schedules/nightly", json=body)
    assert response.status_code == 200
    assert (response.json["cron"], response.json["timezone"], response.json["overlap"]) == (
        "30 2 * * *",
        "Europe/Paris",
        "buffer_one",
    )
    listed = client.simulate_get("/schedules").json["items"]
    assert [s["name"] for s in listed if s["name"] == "nightly"] == ["nightly"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"cron": "* * * * *"}, "$.workflow"),
        ({"workflow": "Tick", "cron": "not cron"}, "$.cron"),
        ({"workflow": "Tick", "cron": "* * * * *", "timezone": "Nowhere/Atlantis"}, "$.timezone"),
        ({"workflow": "Tick", "cron": "* * * * *", "overlap": "queue"}, "$.overlap"),
        ({"workflow": "Tick", "cron": "* * * * *", "catch_up_s": -5}, "$.catch_up_s"),
        ({"workflow": "NoSuchWorkflow", "cron": "* * * * *"}, "$.workflow"),
        ({"workflow": "Tick", "cron": "* * * * *", "input_data": []}, "$.input_data"),
        ({"workflow": "Tick", "cron": "* * * * *", "name": "another"}, "$.name"),
    ],
)
def test_an_invalid_schedule_is_422_naming_the_field_and_stores_nothing(client, body, path):
    response = client.simulate_put("/schedules/broken", json=body)
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json["errors"]] == [path]
    assert client.simulate_get("/schedules/broken").status_code == 404


def test_unknown_schedules_are_404(client):
    for method, path in [
        ("GET", "/schedules/missing"),
        ("DELETE", "/schedules/missing"),
        ("POST", "/schedules/missing/pause"),
        ("POST", "/schedules/missing/resume"),
        ("POST", "/schedules/missing/trigger"),
    ]:
        assert client.simulate_request(method, path).status_code == 404, (method, path)


def test_schedule_files_in_the_definitions_directory_are_applied(embedded_settings, definitions_dir):
    import falcon.testing

    from api.app import create_app
    from flow.process.embedded import EmbeddedFlow

    folder = definitions_dir / "schedules"
    folder.mkdir()
    (definitions_dir / "Tick.json").write_text(json.dumps(TICK))
    (folder / "from-file.json").write_text(json.dumps(EVERY_SECOND))
    (folder / "broken.json").write_text(json.dumps({"workflow": "Tick"}))  # no cron: left out, logged
    with EmbeddedFlow(embedded_settings) as running:
        client = falcon.testing.TestClient(create_app(runtime=running.runtime))
        shown = get(client, "from-file")
        assert shown["source"] == "file" and shown["cron"] == "* * * * * *"
        assert client.simulate_get("/schedules/broken").status_code == 404
        wait_for(lambda: runs(client, "from-file") or None, timeout_s=30, what="the file's schedule to tick")


def test_a_file_schedule_whose_file_is_gone_is_removed_at_the_next_load(embedded_settings, definitions_dir, caplog):
    import logging

    import falcon.testing

    from api.app import create_app
    from flow.process.embedded import EmbeddedFlow

    folder = definitions_dir / "schedules"
    folder.mkdir()
    (definitions_dir / "Tick.json").write_text(json.dumps(TICK))
    yearly = {**EVERY_SECOND, "cron": "0 0 1 1 *"}
    (folder / "kept.json").write_text(json.dumps(yearly))
    (folder / "gone.json").write_text(json.dumps(yearly))
    (folder / "renamed.json").write_text(json.dumps({**yearly, "name": "by-body"}))
    with EmbeddedFlow(embedded_settings) as running:
        client = falcon.testing.TestClient(create_app(runtime=running.runtime))
        assert client.simulate_put("/schedules/from-api", json=yearly).status_code == 201
        assert {s["name"] for s in client.simulate_get("/schedules").json["items"]} == {
            "kept",
            "gone",
            "by-body",
            "from-api",
        }
    (folder / "gone.json").unlink()
    with caplog.at_level(logging.INFO, logger="flow.service.schedules"):
        with EmbeddedFlow(embedded_settings) as running:
            client = falcon.testing.TestClient(create_app(runtime=running.runtime))
            names = {s["name"] for s in client.simulate_get("/schedules").json["items"]}
            assert names == {"kept", "by-body", "from-api"}
            assert client.simulate_get("/schedules/gone").status_code == 404
    assert any("gone" in r.getMessage() and "removed" in r.getMessage() for r in caplog.records)


def test_the_schedule_list_is_paged_like_the_workflow_list(client):
    yearly = {**EVERY_SECOND, "cron": "0 0 1 1 *", "paused": True}
    names = [f"paged-{n:02}" for n in range(7)]
    for name in reversed(names):
        assert client.simulate_put(f"/schedules/{name}", json=yearly).status_code == 201
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = client.simulate_get("/schedules", params=params)
        assert response.status_code == 200, response.text
        assert set(response.json) == {"items", "next"}
        assert len(response.json["items"]) <= 3
        seen += [s["name"] for s in response.json["items"]]
        pages += 1
        cursor = response.json["next"]
        if cursor is None:
            break
    assert seen == names and pages == 3  # by name; the last page says there is no next
    assert len(client.simulate_get("/schedules").json["items"]) == 7  # default page: 50
    for bad in ({"limit": 0}, {"limit": 501}, {"limit": "x"}, {"cursor": "!!"}, {"cursor": "bm8gc3BhY2U"}):
        refused = client.simulate_get("/schedules", params=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json["errors"][0]["path"] in ("limit", "cursor")


def test_a_schedule_file_with_a_bad_stem_is_left_out_with_a_log_line(embedded_settings, definitions_dir, caplog):
    folder = definitions_dir / "schedules"
    folder.mkdir()
    (definitions_dir / "Tick.json").write_text(json.dumps(TICK))
    (folder / "good.json").write_text(json.dumps(YEARLY))
    (folder / "bad name.json").write_text(json.dumps(YEARLY))
    (folder / ".hidden.json").write_text(json.dumps(YEARLY))
    with caplog.at_level(logging.ERROR, logger="flow.service.schedules"):
        with EmbeddedFlow(embedded_settings) as running:
            running.runtime.schedules.sync_files()
            assert [s.name for s in running.runtime.schedules.table.list()] == ["good"]
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert any("bad name.json" in m and SCHEDULE_NAME_RULE in m for m in left_out), left_out
    assert any(".hidden.json" in m for m in left_out), left_out
