"""The token check (RFC 7235: the scheme is case-insensitive) and the security headers
on every response, through Falcon's test client."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from api.security import SECURITY_HEADERS
from flow.process.embedded import EmbeddedFlow


@pytest.fixture
def flow(embedded_settings) -> Iterator[EmbeddedFlow]:
    with EmbeddedFlow(dataclasses.replace(embedded_settings, api_token="s3cret")) as running:
        yield running


@pytest.fixture
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(client, scheme):
    assert client.simulate_get("/workflows", headers={"Authorization": f"{scheme} s3cret"}).status_code == 200


def test_a_callback_by_token_needs_no_api_token_and_opens_nothing_else(client):
    """The callback token is the credential of ``/signals/{token}`` (a third party must
    not hold the API's token); everything beside it still asks for the API token."""
    auth = {"Authorization": "Bearer s3cret"}
    client.simulate_put(
        "/definitions/WaitOnly", json={"name": "WaitOnly", "activities": [{"wait_for": "go"}]}, headers=auth
    )
    started = client.simulate_post("/workflows", json={"name": "WaitOnly"}, headers=auth).json
    token = started["activities"][0]["callback_token"]
    assert client.simulate_post(f"/signals/{token}", json={"payload": 1}).status_code == 202
    assert client.simulate_post("/signals/not-a-token").status_code == 404
    assert client.simulate_post("/signals").status_code == 401
    assert client.simulate_post(f"/workflows/{started['id']}/signals/go").status_code == 401
    assert client.simulate_get(f"/workflows/{started['id']}").status_code == 401


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Bearer wrong", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearers3cr"],
)
def test_anything_but_the_token_under_the_bearer_scheme_is_refused(client, authorization):
    result = client.simulate_get("/workflows", headers={"Authorization": authorization} if authorization else {})
    assert result.status_code == 401
    assert result.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/ui/", {}, 200),
        ("GET", "/ui/app.js", {}, 200),
        ("GET", "/ui/app.css", {}, 200),
        ("GET", "/favicon.ico", {}, 200),
        ("GET", "/", {}, 302),
        ("GET", "/health", {}, 200),
        ("GET", "/workflows", {"Authorization": "Bearer s3cret"}, 200),
        ("GET", "/workflows", {}, 401),
        ("GET", "/workflows/nope", {"Authorization": "Bearer s3cret"}, 404),
        ("POST", "/workflows", {"Authorization": "Bearer s3cret", "Content-Type": "text/plain"}, 415),
    ],
)
def test_every_response_carries_the_security_headers(client, method, path, headers, status):
    result = client.simulate_request(method, path, headers=headers)
    assert result.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert result.headers[name] == value, name


def test_the_policy_forbids_inline_code_framing_and_other_origins():
    policy = dict(part.strip().split(" ", 1) for part in SECURITY_HEADERS["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"  # so scripts and styles too: no 'unsafe-inline'
    assert "script-src" not in policy and "style-src" not in policy
    assert policy["frame-ancestors"] == "'none'"
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"


def test_the_web_page_has_no_inline_script_or_style(client):
    page = client.simulate_get("/ui/").text
    assert "<style" not in page and " style=" not in page
    assert "<script src=" in page and "<script>" not in page
    assert 'setAttribute("style"' not in client.simulate_get("/ui/app.js").text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer s3cret"}, {"Authorization": "Bearer wrong"}])
def test_the_icon_is_served_without_a_token(client, headers):
    result = client.simulate_get("/favicon.ico", headers=headers)
    assert result.status_code == 200
    assert result.headers["content-type"] == "image/x-icon"
    assert result.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert "max-age" in result.headers["cache-control"]
    assert client.simulate_head("/favicon.ico").status_code == 200
    assert client.simulate_post("/favicon.ico").status_code == 405
    assert client.simulate_get("/favicon.ico.bak").status_code == 401  # nothing else is opened up


def test_the_web_page_names_its_icon(client):
    assert '<link rel="icon" href="/favicon.ico">' in client.simulate_get("/ui/").text
