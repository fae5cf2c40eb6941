"""``POST /workflows`` sheds what it cannot take (flow/service/intake.py): 429 when its
process works on ``FLOW_MAX_STARTS_IN_FLIGHT`` starts, 503 when ``FLOW_MAX_START_BACKLOG``
workflows wait for an engine; both with ``Retry-After``, and neither stores anything.
The API runs here without an engine, so nothing it stores is ever started."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from api.app import create_app
from flow.process.runtime import Runtime
from flow.settings import Settings
from flow.testing.definitions import embedded_env

START = {"name": "DummyWorkflow"}


def api(tmp_path: Path, definitions_dir: Path, **env: str) -> tuple[Runtime, falcon.testing.TestClient]:
    runtime = Runtime.build(Settings.from_env(embedded_env(tmp_path, definitions_dir, **env), embedded=True))
    runtime.store.migrate()
    return runtime, falcon.testing.TestClient(create_app(runtime=runtime))


def test_a_start_past_the_backlog_is_answered_503_with_retry_after_and_stores_nothing(tmp_path, definitions_dir):
    runtime, client = api(tmp_path, definitions_dir, FLOW_MAX_START_BACKLOG="2")
    assert [client.simulate_post("/workflows", json=START).status_code for _ in range(2)] == [201, 201]
    shed = client.simulate_post("/workflows", json=START)
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "5"
    assert shed.json["title"] == "Start backlog full"
    assert "FLOW_MAX_START_BACKLOG" in shed.json["description"]
    assert runtime.store.unstarted_count(100) == 2
    # A bad start is told what is wrong, not to come back later: it is read before the bounds.
    assert client.simulate_post("/workflows", json={"name": "NoSuchWorkflow"}).status_code == 422


def test_a_start_beyond_the_slots_is_answered_429_at_once_and_the_one_in_flight_is_stored(
    tmp_path, definitions_dir, monkeypatch: pytest.MonkeyPatch
):
    runtime, client = api(tmp_path, definitions_dir, FLOW_MAX_STARTS_IN_FLIGHT="1")
    store = runtime.service.starter.store
    storing, release = threading.Event(), threading.Event()
    real_create = store.create_workflow

    def held_create(*args: Any, **kwargs: Any) -> Any:
        storing.set()
        assert release.wait(30)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(store, "create_workflow", held_create)
    first: list[falcon.testing.Result] = []
    thread = threading.Thread(target=lambda: first.append(client.simulate_post("/workflows", json=START)))
    thread.start()
    assert storing.wait(30)
    busy = client.simulate_post("/workflows", json=START)
    release.set()
    thread.join(30)
    assert busy.status_code == 429
    assert busy.headers["retry-after"] == "1"
    assert busy.json["title"] == "Too many starts at once"
    assert [r.status_code for r in first] == [201]
    assert runtime.store.unstarted_count(100) == 1
    monkeypatch.setattr(store, "create_workflow", real_create)
    assert client.simulate_post("/workflows", json=START).status_code == 201  # the slot was given back
