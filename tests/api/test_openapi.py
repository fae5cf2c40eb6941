"""The OpenAPI document matches the routes, and a bounded schemathesis run against a
live server finds no 5xx and no response that breaks the document."""

from __future__ import annotations

from collections.abc import Iterator

import falcon.inspect
import falcon.testing
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from api.app import create_app
from flow.embedded import EmbeddedFlow
from flow.testing import flow_up
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def app(embedded_settings) -> Iterator[falcon.App]:
    with EmbeddedFlow(embedded_settings) as flow:
        yield create_app(runtime=flow.runtime)


def falcon_routes(app: falcon.App) -> set[tuple[str, str]]:
    routes = set()
    for route in falcon.inspect.inspect_routes(app):
        path = route.path.replace("{version:int(min=1, max=2147483647)}", "{version}")
        for method in route.methods:
            if method.method in HTTP_METHODS and "on_" + method.method.lower() in method.function_name:
                routes.add((method.method, path))
    return routes


def test_every_route_is_documented_and_every_documented_route_exists(app):
    document = falcon.testing.TestClient(app).simulate_get("/openapi.json").json
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert falcon_routes(app) == documented


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
    assert "Traceback" not in text, "the server logged an unhandled error"
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
    for operation in operations:

        @given(case=operation.as_strategy())
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
