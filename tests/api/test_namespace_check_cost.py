"""What the namespace check costs a read (issue 27, ns27 item 1): ``GET /workflows/{id}``
runs the same statements with no token configured, with ``FLOW_API_TOKEN`` and with a
namespace's token, and asks no owner query: a request that may name every namespace has
nothing to hide, and a namespace's token is checked on the row the read loads anyway. A
``PUT`` of a name another namespace holds stays 409 for every request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

import falcon.testing
import peewee
import pytest

import api.auth
from api.app import create_app
from flow.core.namespaces import entry_line
from flow.process.embedded import EmbeddedFlow
from flow.testing.statements import counted
from tests.embedded.conftest import flow_of

ROOT_TOKEN = "root-token-0123456789"
TOKENS = {"a": "tok-a-read-0123456789", "b": "tok-b-read-0123456789"}
WAITING = {"activities": [{"id": "w", "wait_for": "go"}]}


@dataclass
class Api:
    client: falcon.testing.TestClient
    database: peewee.Database

    def read(self, path: str, headers: dict[str, str]) -> tuple[int, list[str]]:
        """``GET path``: its status and the statements it ran."""
        with counted(self.database) as seen:
            status = self.client.simulate_get(path, headers=headers).status_code
        return status, seen

    def start(self, namespace: str, headers: dict[str, str]) -> str:
        """A waiting workflow of a definition of ``namespace``; its id."""
        name = f"Wait{namespace.upper()}"
        header = {**headers, "X-Flow-Namespace": namespace}
        put = self.client.simulate_put(f"/definitions/{name}", json={"name": name, **WAITING}, headers=header)
        assert put.status_code in (200, 201), put.text
        started = self.client.simulate_post("/workflows", json={"name": name}, headers=header)
        assert started.status_code == 201, started.text
        return str(started.json["id"])


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    """A flow with FLOW_API_TOKEN and a read token of namespaces a and b (one embedded flow
    a process)."""
    base = tmp_path_factory.mktemp("check")
    tokens_file = base / "tokens.json"
    entries = [entry_line(given, namespace, "read") for namespace, given in TOKENS.items()]
    tokens_file.write_text(json.dumps({"tokens": entries}))
    with flow_of(base, {}, FLOW_API_TOKEN=ROOT_TOKEN, FLOW_TOKENS_FILE=str(tokens_file)) as running:
        yield running


@pytest.fixture(scope="module")
def guarded(flow) -> Api:
    """The flow's API, with its tokens."""
    return Api(falcon.testing.TestClient(create_app(runtime=flow.runtime)), flow.runtime.store.database)


@pytest.fixture(scope="module")
def open_api(flow) -> Iterator[Api]:
    """An API over the same flow built with no token configured (the app reads the tokens
    from the settings once, when it is built)."""
    settings = flow.runtime.settings
    flow.runtime.settings = replace(settings, api_token=None, tokens_file=None)
    try:
        app = create_app(runtime=flow.runtime)
    finally:
        flow.runtime.settings = settings
    return Api(falcon.testing.TestClient(app), flow.runtime.store.database)


@pytest.fixture
def owner_calls(monkeypatch) -> list[tuple[str, str]]:
    """Every owner query the namespace check makes."""
    calls: list[tuple[str, str]] = []
    real = api.auth.owner

    def owner(database, kind, key):
        calls.append((kind, key))
        return real(database, kind, key)

    monkeypatch.setattr(api.auth, "owner", owner)
    return calls


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_read_of_a_workflow_asks_no_owner_query_with_or_without_tokens(guarded, open_api, owner_calls):
    open_id = open_api.start("a", {})
    root = bearer(ROOT_TOKEN)
    a_id = guarded.start("a", root)
    owner_calls.clear()  # the PUT of the definition asked (a name another holds is taken)
    open_status, open_statements = open_api.read(f"/workflows/{open_id}", {"X-Flow-Namespace": "a"})
    root_status, root_statements = guarded.read(f"/workflows/{a_id}", {**root, "X-Flow-Namespace": "a"})
    own_status, own_statements = guarded.read(f"/workflows/{a_id}", bearer(TOKENS["a"]))
    assert (open_status, root_status, own_status) == (200, 200, 200)
    assert owner_calls == []
    # The same statements in every mode: the check adds none.
    assert len(open_statements) == len(root_statements) == len(own_statements) > 0
    for path in (f"/workflows/{a_id}", f"/workflows/{a_id}/activities"):
        status, statements = guarded.read(path, bearer(TOKENS["b"]))
        assert status == 404, path  # another namespace's: as missing, read on the row
        assert len(statements) <= len(own_statements)
    assert owner_calls == []


def test_another_namespaces_workflow_answers_exactly_as_a_missing_one(guarded):
    a_id = guarded.start("a", bearer(ROOT_TOKEN))
    foreign = guarded.client.simulate_get(f"/workflows/{a_id}", headers=bearer(TOKENS["b"]))
    missing_id = a_id[:-4] + ("0000" if not a_id.endswith("0000") else "1111")
    missing = guarded.client.simulate_get(f"/workflows/{missing_id}", headers=bearer(TOKENS["b"]))
    assert (foreign.status_code, missing.status_code) == (404, 404)
    assert foreign.json["title"] == missing.json["title"]
    assert foreign.text.replace(a_id, "<id>") == missing.text.replace(missing_id, "<id>")


def test_without_tokens_a_url_reaches_its_thing_whatever_the_header(open_api, owner_calls):
    """Nothing to hide where anyone may send any namespace's name in the header; lists
    still show the header's namespace only."""
    a_id = open_api.start("a", {})
    owner_calls.clear()  # the PUT of the definition asked (a name another holds is taken)
    assert open_api.read(f"/workflows/{a_id}", {"X-Flow-Namespace": "b"})[0] == 200
    listed = open_api.client.simulate_get("/workflows", headers={"X-Flow-Namespace": "b"}).json["items"]
    assert a_id not in [w["id"] for w in listed]
    assert owner_calls == []


def test_a_name_another_namespace_holds_is_taken_for_every_request(open_api, guarded):
    """The owner query a PUT still makes: a name names one thing in the deployment."""
    open_api.start("a", {})
    schedule = {"workflow": "WaitA", "cron": "0 0 1 1 *", "paused": True}
    made = open_api.client.simulate_put("/schedules/s-a", json=schedule, headers={"X-Flow-Namespace": "a"})
    assert made.status_code == 201, made.text
    taken = open_api.client.simulate_put("/schedules/s-a", json=schedule, headers={"X-Flow-Namespace": "b"})
    assert taken.status_code == 409, taken.text
    limit = open_api.client.simulate_put("/limits/l-a", json={"limit": 2}, headers={"X-Flow-Namespace": "a"})
    assert limit.status_code == 200, limit.text
    taken = open_api.client.simulate_put("/limits/l-a", json={"limit": 3}, headers={"X-Flow-Namespace": "b"})
    assert taken.status_code == 409, taken.text
    root = bearer(ROOT_TOKEN)
    guarded.start("a", root)
    made = guarded.client.simulate_put("/schedules/s-a2", json=schedule, headers={**root, "X-Flow-Namespace": "a"})
    assert made.status_code == 201, made.text
    taken = guarded.client.simulate_put("/schedules/s-a2", json=schedule, headers={**root, "X-Flow-Namespace": "b"})
    assert taken.status_code == 409, taken.text
