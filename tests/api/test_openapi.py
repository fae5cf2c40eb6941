"""The OpenAPI document matches the routes, and a bounded schemathesis run against a
live server finds no 5xx and no response that breaks the document.

The document is derived from the routes and the responders' ``@operation``s; these
tests check it against what the application does, by other means than the ones that
built it: Falcon's route inspection, the query parameters and headers a responder
really reads, and the bodies a responder really accepts and refuses."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.inspect
import falcon.routing
import falcon.testing
import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import checks

from api.app import create_app
from api.openapi import BODY_ERRORS, document
from api.operation import Reply, operation
from flow.core.vocabulary import ActivityStatus, HistoryType, WorkflowStatus
from flow.process.embedded import EmbeddedFlow
from flow.testing import flow_up, unhandled_errors
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions
from tests.conftest import wait_for

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
#: ``{name}`` or ``{name:converter(...)}`` in a URI template.
FIELD = re.compile(r"{(\w+)(?::[^}]*)?}")


@pytest.fixture
def app(embedded_settings) -> Iterator[falcon.App]:
    with EmbeddedFlow(embedded_settings) as flow:
        yield create_app(runtime=flow.runtime)


@pytest.fixture
def client(app) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(app)


@pytest.fixture
def doc(client) -> dict[str, Any]:
    return client.simulate_get("/openapi.json").json


def falcon_routes(app: falcon.App) -> set[tuple[str, str]]:
    routes = set()
    for route in falcon.inspect.inspect_routes(app):
        for method in route.methods:
            if method.method in HTTP_METHODS and not method.internal:
                routes.add((method.method, FIELD.sub(r"{\1}", route.path)))
    return routes


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method.upper(), op) for path, item in doc["paths"].items() for method, op in item.items()]


def parameters(op: dict[str, Any], where: str) -> set[str]:
    return {p["name"] for p in op.get("parameters", []) if p["in"] == where}


def test_every_route_is_documented_and_every_documented_route_exists(app, doc):
    documented = {(method, path) for path, method, _ in operations(doc)}
    assert falcon_routes(app) == documented


def test_the_path_parameters_are_the_fields_of_the_uri_template(app, doc):
    for route in falcon.inspect.inspect_routes(app):
        fields = set(FIELD.findall(route.path))
        for method in (m for m in route.methods if not m.internal):
            op = doc["paths"][FIELD.sub(r"{\1}", route.path)][method.method.lower()]
            assert parameters(op, "path") == fields, route.path


def test_the_document_is_valid_openapi(doc):
    validate(doc)


def test_the_document_with_the_token_is_valid_openapi_and_leaves_the_public_routes_open(embedded_settings):
    with EmbeddedFlow(dataclasses.replace(embedded_settings, api_token="s3cret")) as flow:
        client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
        doc = client.simulate_get("/openapi.json", headers={"Authorization": "Bearer s3cret"}).json
    validate(doc)
    assert doc["security"] == [{"bearer": []}]
    for path, method, op in operations(doc):
        refused = client.simulate_request(method, path.replace("{", "").replace("}", "")).status_code == 401
        assert (op.get("security") != []) == refused, (method, path)
        assert ("401" in op["responses"]) == refused, (method, path)


def test_a_responder_that_does_not_describe_itself_is_refused():
    class Described:
        @operation("Described", responses={200: Reply("OK")})
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None: ...

        def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None: ...

    router = falcon.routing.CompiledRouter()
    falcon.App(router=router).add_route("/things/{id}", Described())
    with pytest.raises(LookupError, match=r"Described.on_delete \(/things/{id}\) has no @operation"):
        document(router, auth=False)


def test_a_path_parameter_that_is_not_in_the_uri_template_is_refused():
    class Misplaced:
        @operation("Misplaced", responses={200: Reply("OK")}, path={"name": {"pattern": "^a$"}})
        def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None: ...

    router = falcon.routing.CompiledRouter()
    falcon.App(router=router).add_route("/things/{id}", Misplaced())
    with pytest.raises(LookupError, match=r"Misplaced.on_get: \['name'\] are not fields of its URI template"):
        document(router, auth=False)


def test_the_statuses_and_history_types_are_the_vocabulary(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["WorkflowSummary"]["properties"]["status"]["enum"] == [s.value for s in WorkflowStatus]
    assert schemas["Activity"]["properties"]["status"]["enum"] == [s.value for s in ActivityStatus]
    assert schemas["Event"]["properties"]["type"]["enum"] == [t.value for t in HistoryType]
    status = next(p for p in doc["paths"]["/workflows"]["get"]["parameters"] if p["name"] == "status")
    assert status["schema"]["enum"] == [s.value for s in WorkflowStatus]


def test_the_priority_is_documented_at_the_start_the_views_the_list_and_the_schedule(doc):
    start = body_schema(doc["paths"]["/workflows"]["post"])["properties"]["priority"]
    assert (start["minimum"], start["maximum"], start["default"]) == (1, 5, 3)
    assert "integer" in start["type"]
    summary = doc["components"]["schemas"]["WorkflowSummary"]
    assert "priority" in summary["required"]
    assert (summary["properties"]["priority"]["minimum"], summary["properties"]["priority"]["maximum"]) == (1, 5)
    listed = next(p for p in doc["paths"]["/workflows"]["get"]["parameters"] if p["name"] == "priority")
    assert listed["in"] == "query" and not listed.get("required")
    assert (listed["schema"]["minimum"], listed["schema"]["maximum"]) == (1, 5)
    schedule = body_schema(doc["paths"]["/schedules/{name}"]["put"])["properties"]["priority"]
    assert (schedule["minimum"], schedule["maximum"]) == (1, 5)
    assert "priority" in doc["components"]["schemas"]["Schedule"]["required"]


# -- what each responder really reads and accepts -----------------------------------------


@pytest.fixture
def reads(monkeypatch) -> dict[str, set[str]]:
    """The query parameters and headers that requests read, by name."""
    seen: dict[str, set[str]] = {"query": set(), "header": set()}
    get_param, get_header = falcon.Request.get_param, falcon.Request.get_header

    def recording_get_param(self, name, *args, **kwargs):
        seen["query"].add(name)
        return get_param(self, name, *args, **kwargs)

    def recording_get_header(self, name, *args, **kwargs):
        seen["header"].add(name)
        return get_header(self, name, *args, **kwargs)

    monkeypatch.setattr(falcon.Request, "get_param", recording_get_param)
    monkeypatch.setattr(falcon.Request, "get_header", recording_get_header)
    return seen


@pytest.fixture
def call(client, doc):
    """``call(method, path, body=...)``: the operation with real path parameters (a
    running workflow, a registered definition); returns the status code."""
    workflow_id = client.simulate_post("/workflows", json={"name": "DummyWorkflow"}).json["id"]
    # Its own finished workflow for the rerun, which runs it again: the others' answers
    # would then depend on how far that run got between two calls.
    rerun_id = client.simulate_post("/workflows", json={"name": "DummyWorkflow"}).json["id"]
    for started in (workflow_id, rerun_id):  # ended: each call's answer no longer depends on timing
        wait_for(
            lambda started=started: client.simulate_get(f"/workflows/{started}").json["status"] == "Finished",
            timeout_s=60,
        )
    # A wait's callback token: shown as soon as its workflow runs, the wait not yet ended.
    client.simulate_put("/definitions/WaitOnly", json={"name": "WaitOnly", "activities": [{"wait_for": "go"}]})
    waiting = client.simulate_post("/workflows", json={"name": "WaitOnly"}).json
    token = waiting["activities"][0]["callback_token"]
    batch = client.simulate_post("/batches", json={"operation": "cancel", "filter": {"name": "Nothing"}}).json
    values = {
        "workflow_id": workflow_id,
        "name": "DummyWorkflow",
        "version": "1",
        "token": token,
        "batch_id": batch["id"],
        "event_id": "evt-123",
    }

    def call_operation(method: str, path: str, body: Any = None) -> int:
        fields = {**values, "workflow_id": rerun_id} if path.endswith("/rerun") else values
        url = FIELD.sub(lambda field: fields[field[1]], path)
        return client.simulate_request(method, url, json=body).status_code

    return call_operation


def body_schema(op: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody")
    return body["content"]["application/json"]["schema"] if body else None


def test_each_operation_reads_exactly_the_query_parameters_and_headers_it_documents(doc, reads, call):
    for path, method, op in operations(doc):
        reads["query"].clear()
        reads["header"].clear()
        schema = body_schema(op)
        call(method, path, schema["examples"][0] if schema else None)
        # A templated name (``attr.{name}``) stands for a family of parameters, read by prefix.
        assert reads["query"] == {p for p in parameters(op, "query") if "{" not in p}, (method, path)
        # Authorization is the token check's, documented as the security scheme.
        assert reads["header"] - {"Authorization"} == parameters(op, "header"), (method, path)


def test_each_documented_body_is_the_one_its_responder_enforces(doc, call):
    for path, method, op in operations(doc):
        schema = body_schema(op)
        if schema is None:
            if method == "DELETE":
                continue  # a first call changes what the second finds: nothing to compare
            # No body documented: a body changes nothing (the responder does not read it).
            assert call(method, path, {"unexpected": 1}) == call(method, path), (method, path)
            continue
        example = schema["examples"][0]
        # The example is valid by the document (its references resolved in it) ...
        jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(example)
        # ... and the responder accepts it, refuses a field the schema does not allow,
        # and refuses a missing body exactly when the document requires one.
        accepted = call(method, path, example)
        # A finished workflow can be neither cancelled nor signalled, and a running one not
        # rerun: 409 after the body was read.
        ended = accepted == 409 and (path.endswith(("/cancel", "/rerun")) or "/signals/" in path)
        assert accepted < 300 or ended, (method, path, accepted)
        assert call(method, path, {**example, "unexpected": 1}) == 422, (method, path)
        missing = call(method, path)
        assert (missing in BODY_ERRORS) == op["requestBody"]["required"], (method, path, missing)


def test_the_metrics_endpoint_is_prometheus_text(app):
    client = falcon.testing.TestClient(app)
    client.simulate_post("/workflows", json={"name": "DummyWorkflow"})
    body = client.simulate_get("/metrics").text
    assert 'flow_workflows{status="In Progress"}' in body or 'flow_workflows{status="Finished"}' in body
    assert "flow_outbox_messages" in body
    assert "# TYPE flow_activities gauge" in body


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, http_server) -> Iterator[str]:
    """``flow up`` in its own process: the API as users run it on a laptop."""
    base = tmp_path_factory.mktemp("live")
    definitions = write_definitions(base / "workflows", sample_definitions(http_server))
    with flow_up(base, embedded_env(base, definitions)) as url:
        # Something to find: a workflow of each outcome.
        for name in ("DummyWorkflow", "FailingWorkflow"):
            requests.post(f"{url}/workflows", json={"name": name}, timeout=5)
        yield url
    text = (base / "up.log").read_text()
    assert unhandled_errors(text) == 0, "the server logged an unhandled error"
    requests_served = text.count("flow.http")
    assert requests_served > 100, f"schemathesis sent only {requests_served} requests"


@pytest.fixture(scope="module")
def api_schema(live_api):
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json")


def test_the_live_api_conforms_to_its_document(api_schema):
    # Driven by hand rather than with schemathesis' pytest plugin, whose lazy loader
    # does not work with this pytest; the checks are the same.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /workflows",
        "PUT /definitions/{name}",
        "GET /workflows/{workflow_id}",
    }
    for api_operation in operations:

        @given(case=api_operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def conforms(case) -> None:
            case.call_and_validate(
                checks=[
                    checks.not_a_server_error,
                    checks.status_code_conformance,
                    checks.content_type_conformance,
                    checks.response_schema_conformance,
                ]
            )

        conforms()
