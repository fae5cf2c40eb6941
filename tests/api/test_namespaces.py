"""Namespaces (issue 27): every route of the application, walked from the router so that a
new one cannot be forgotten, tried with another namespace's token (nothing of the other
namespace leaks, nothing of it changes) and with a ``read`` token on every write (403);
an ``operate`` token on an admin's write (403); tokens never in the logs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import pytest

from api.app import create_app
from api.auth import READ_ONLY_POSTS, is_public, required_role
from flow.core.namespaces import Role, entry_line
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
FIELD = re.compile(r"{(\w+)(?::[^}]*)?}")
TOKENS = {
    "root": None,  # FLOW_API_TOKEN: every namespace
    "a-admin": ("a", "admin"),
    "a-operate": ("a", "operate"),
    "a-read": ("a", "read"),
    "b-admin": ("b", "admin"),
}
SECRET = "root-s3cret-token"


def token(label: str) -> str:
    """The token of ``label`` (what a client holds; the file holds its SHA-256)."""
    return SECRET if label == "root" else f"tok-{label}-0123456789"


def auth(label: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(label)}"}


def waiting(name: str, event: str) -> dict[str, Any]:
    """A definition whose workflows wait for the signal ``go``, started also by ``event``."""
    return {"name": name, "triggers": [{"event": event}], "activities": [{"id": "w", "wait_for": "go"}]}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    base = tmp_path_factory.mktemp("namespaces")
    tokens_file = base / "tokens.json"
    entries = [entry_line(token(label), *spec, name=label) for label, spec in TOKENS.items() if spec]
    tokens_file.write_text(json.dumps({"tokens": entries}))
    with flow_of(base, {}, FLOW_API_TOKEN=SECRET, FLOW_TOKENS_FILE=str(tokens_file)) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def _make(client: falcon.testing.TestClient, namespace: str) -> dict[str, str]:
    """A definition, running workflow, schedule, limit, event and batch of ``namespace``."""
    who = auth(f"{namespace}-admin")
    names = {
        "definition": f"Def{namespace.upper()}",
        "schedule": f"sched-{namespace}",
        "limit": f"limit-{namespace}",
        "event_type": f"{namespace}.ping",
        "event": f"evt-{namespace}-1",
    }
    put = client.simulate_put(
        f"/definitions/{names['definition']}", json=waiting(names["definition"], names["event_type"]), headers=who
    )
    assert put.status_code == 201, put.text
    started = client.simulate_post("/workflows", json={"name": names["definition"]}, headers=who)
    assert started.status_code == 201, started.text
    names["workflow"] = started.json["id"]
    names["callback"] = started.json["activities"][0]["callback_token"]
    schedule = {"workflow": names["definition"], "cron": "0 0 1 1 *", "paused": True}
    assert client.simulate_put(f"/schedules/{names['schedule']}", json=schedule, headers=who).status_code == 201
    assert client.simulate_put(f"/limits/{names['limit']}", json={"limit": 7}, headers=who).status_code == 200
    event = {"type": "nothing.listens", "id": names["event"], "data": {}}
    assert client.simulate_post("/events", json=event, headers=who).status_code == 202
    batch = {"operation": "retry", "filter": {"status": "Failed", "name": names["definition"]}}
    made = client.simulate_post("/batches", json=batch, headers=who)
    assert made.status_code == 202, made.text
    names["batch"] = made.json["id"]
    wait_for(  # settled, so that a later look sees what others did, not the engine
        lambda: client.simulate_get(f"/batches/{names['batch']}", headers=who).json["status"] == "finished",
        what=f"{namespace}'s batch finished",
    )
    return names


@pytest.fixture(scope="module")
def made(client) -> dict[str, dict[str, str]]:
    return {namespace: _make(client, namespace) for namespace in ("a", "b")}


def routes(app: falcon.App) -> list[tuple[str, str]]:
    """Every (method, URI template) of the application that needs a token."""
    found = []
    for route in falcon.inspect.inspect_routes(app):
        for method in route.methods:
            if method.method in HTTP_METHODS and not method.internal and not is_public(route.path):
                found.append((method.method, route.path))
    return sorted(found)


def url(template: str, names: dict[str, str]) -> str:
    """``template`` filled with the things of one namespace that its fields name."""
    kind = {"/definitions/": "definition", "/schedules/": "schedule", "/limits/": "limit"}

    def value(match: re.Match[str]) -> str:
        field = match.group(1)
        if field == "name":
            if template.startswith("/workflows/"):
                return "go"  # a signal's name
            return names[next(k for prefix, k in kind.items() if template.startswith(prefix))]
        return {"workflow_id": names["workflow"], "batch_id": names["batch"], "event_id": names["event"]}.get(
            field, "1"
        )

    return FIELD.sub(value, template)


def body(method: str, template: str, names: dict[str, str]) -> Any:
    """A body that would do something, were the token allowed to (None: none)."""
    definition = names["definition"]
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/workflows"): {"name": definition},
        ("PUT", "/definitions/{name}"): waiting(definition, names["event_type"]) | {"config": {"changed": 1}},
        ("POST", "/definitions/{name}/replay"): waiting(definition, names["event_type"]),
        ("POST", "/definitions/validate"): {"name": "Child", "activities": [{"id": "c", "workflow": definition}]},
        ("PUT", "/schedules/{name}"): {"workflow": definition, "cron": "* * * * *"},
        ("PUT", "/limits/{name}"): {"limit": 1},
        ("POST", "/events"): {"type": names["event_type"], "id": "evt-from-elsewhere", "data": {}},
        ("POST", "/batches"): {"operation": "cancel", "filter": {"name": definition}},
        ("POST", "/workflows/{workflow_id}/signals/{name}"): {"payload": 1},
        ("POST", "/workflows/{workflow_id}/rerun"): {},
    }
    return bodies.get((method, FIELD.sub(lambda m: "{" + m.group(1) + "}", template)))


def call(client, method: str, template: str, names: dict[str, str], label: str):
    given = body(method, template, names)
    return client.simulate_request(
        method, url(template, names), headers=auth(label), json=given if given is not None else None
    )


def b_state(client) -> dict[str, Any]:
    """Everything of namespace b that a foreign request could change, read with b's token."""
    who = auth("b-admin")
    workflows = client.simulate_get("/workflows", headers=who).json["items"]
    definition = client.simulate_get("/definitions/DefB", headers=who).json
    schedule = client.simulate_get("/schedules/sched-b", headers=who).json
    limit = client.simulate_get("/limits/limit-b", headers=who).json
    batch = client.simulate_get("/batches", headers=who).json["items"]
    return {
        "workflows": sorted((w["id"], w["status"], w.get("paused")) for w in workflows),
        "definition": (definition["version"], definition["definition"]),
        "schedule": (schedule["cron"], schedule["paused"]),
        "limit": limit.get("limit"),
        "batches": sorted((b["id"], b["operation"], b["status"]) for b in batch),
        "events": [e["id"] for e in client.simulate_get("/events", headers=who).json["items"]],
    }


def test_every_route_is_walked(client):
    """The walk below covers the router: a route this test does not fill in fails here."""
    found = routes(client.app)
    assert len(found) > 30
    for _, template in found:
        for field in FIELD.findall(template):
            assert field in ("name", "workflow_id", "batch_id", "event_id", "version"), template


def test_another_namespaces_token_reads_and_changes_nothing(client, made):
    """a's admin token on every route, naming b's things: 404 where the URL names one
    (as for a missing one), lists without b's, and b's state unchanged."""
    before = b_state(client)
    b = made["b"]
    secrets = [b["workflow"], b["definition"], b["schedule"], b["limit"], b["event"], b["batch"], b["callback"]]
    for method, template in routes(client.app):
        result = call(client, method, template, b, "a-admin")
        sent = url(template, b) + json.dumps(body(method, template, b))
        for secret in secrets:  # what the request did not say itself, the answer must not say
            assert secret not in result.text or secret in sent, (method, template, secret, result.text[:300])
        if FIELD.search(template):
            allowed = {404, 409} if method == "PUT" else {404}  # a name b holds cannot be taken (409)
            if template.startswith("/limits/") and method == "GET":
                allowed = {200}  # read as a limit nobody set: nothing held
                assert result.json["limit"] is None and result.json["held"] == 0
            assert result.status_code in allowed, (method, template, result.status_code, result.text[:300])
        elif template in ("/metrics", "/pools"):
            assert result.status_code == 403, (method, template)  # deployment-wide: the operator's only
    assert b_state(client) == before
    # The event of type b.ping sent from a started nothing in b (the triggers are b's).
    assert client.simulate_get("/workflows", headers=auth("a-admin")).json["items"][0]["name"] != "DefB"


def test_a_namespace_header_naming_another_namespace_finds_nothing(client, made):
    header = {**auth("a-admin"), "X-Flow-Namespace": "b"}
    assert client.simulate_get("/workflows", headers=header).status_code == 404
    assert client.simulate_get(f"/workflows/{made['b']['workflow']}", headers=header).status_code == 404
    own = {**auth("a-admin"), "X-Flow-Namespace": "a"}
    assert [w["id"] for w in client.simulate_get("/workflows", headers=own).json["items"]] == [made["a"]["workflow"]]


def test_the_operator_token_reaches_every_namespace_by_header(client, made):
    for namespace in ("a", "b"):
        header = {**auth("root"), "X-Flow-Namespace": namespace}
        items = client.simulate_get("/workflows", headers=header).json["items"]
        assert made[namespace]["workflow"] in [w["id"] for w in items]
        assert client.simulate_get(f"/workflows/{made[namespace]['workflow']}", headers=header).status_code == 200
    # Without the header: default, which holds none of them.
    assert client.simulate_get("/workflows", headers=auth("root")).json["items"] == []


def test_a_read_token_may_not_write_anywhere(client, made):
    a = made["a"]
    writes = [(m, t) for m, t in routes(client.app) if m != "GET" and t not in READ_ONLY_POSTS]
    assert len(writes) > 15
    for method, template in writes:
        result = call(client, method, template, a, "a-read")
        assert result.status_code == 403, (method, template, result.status_code, result.text[:200])
    for method, template in routes(client.app):
        if method == "GET" and template not in ("/metrics", "/pools"):
            result = call(client, method, template, a, "a-read")
            assert result.status_code in (200, 404), (template, result.status_code)  # 404: e.g. version 1 of a batch
    assert client.simulate_get(f"/workflows/{a['workflow']}", headers=auth("a-read")).json["status"] == "In Progress"


def test_an_operate_token_operates_but_does_not_administer(client, made):
    a = made["a"]
    for method, template in routes(client.app):
        role = required_role(method, template)
        if role is Role.ADMIN:
            result = call(client, method, template, a, "a-operate")
            assert result.status_code == 403, (method, template, result.status_code)
    signal = client.simulate_post(
        f"/workflows/{a['workflow']}/signals/go", json={"payload": 1}, headers=auth("a-operate")
    )
    assert signal.status_code == 202, signal.text
    wait_for(
        lambda: client.simulate_get(f"/workflows/{a['workflow']}", headers=auth("a-read")).json["status"] == "Finished",
        what="a's workflow finished by its operate token's signal",
    )


def test_the_callback_token_needs_no_api_token(client, made):
    a = _make_waiting(client)
    assert client.simulate_post(f"/signals/{a}", json={"payload": 2}).status_code == 202


def _make_waiting(client) -> str:
    started = client.simulate_post("/workflows", json={"name": "DefA"}, headers=auth("a-operate"))
    assert started.status_code == 201, started.text
    return started.json["activities"][0]["callback_token"]


def test_a_workflow_may_not_run_another_namespaces_definition(client, made):
    refused = client.simulate_post("/workflows", json={"name": "DefB"}, headers=auth("a-operate"))
    assert refused.status_code == 422
    assert "DefB" in refused.text and "DefA" in refused.text  # names the one asked for, lists a's only
    child = {"name": "Parent", "activities": [{"id": "c", "workflow": "DefB"}]}
    assert client.simulate_put("/definitions/Parent", json=child, headers=auth("a-admin")).status_code == 422
    taken = client.simulate_put("/definitions/DefB", json=waiting("DefB", "x"), headers=auth("a-admin"))
    # Taken, without saying whose: neither b nor anything of DefB but its name (README, Names).
    assert taken.status_code == 409, taken.text
    assert re.search(r"\bb\b", taken.json["description"].replace("DefB", "")) is None, taken.json
    assert "DefB" in taken.json["description"] and "wait_for" not in taken.text


def test_no_token_is_ever_logged(client, made, caplog):
    caplog.set_level(logging.DEBUG)
    for label in TOKENS:
        client.simulate_get("/workflows", headers=auth(label))
        client.simulate_post("/workflows", json={"name": "Nope"}, headers=auth(label))
    client.simulate_get("/workflows", headers={"Authorization": "Bearer wrong-token-xyz"})
    text = caplog.text + repr(client.app)
    for label in TOKENS:
        assert token(label) not in text
    assert "wrong-token-xyz" not in caplog.text


def test_the_tokens_file_holds_only_digests(flow):
    stored = Path(flow.runtime.settings.tokens_file).read_text()
    assert all(token(label) not in stored for label in TOKENS)
    assert SECRET not in repr(flow.runtime.settings)
