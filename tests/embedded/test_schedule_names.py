"""Schedule names (issue 28 item 4): every schedule route checks the name in its path
(422 naming the rule), a schedule file with a bad stem is left out with a log line,
and any name a route accepts can be read, paused, resumed and deleted by that name."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from flow.core.schedules import SCHEDULE_NAME_RULE
from flow.process.embedded import EmbeddedFlow
from flow.testing.definitions import sample_definitions
from tests.embedded.conftest import flow_of

TICK = {"name": "Tick", "activities": [{"name": "EchoActivity"}]}
YEARLY = {"workflow": "Tick", "cron": "0 0 1 1 *", "paused": True}

BAD_NAMES = [
    "nul\x00name",
    "new\nline",
    "tab\tname",
    "with space",
    "..",
    ".hidden",
    "-leading-dash",
    "c1\x84control",
    "line\u2028separator",
    "x" * 129,
    "x" * 5000,
    "é",
]


def path(name: str, suffix: str = "") -> str:
    return "/schedules/" + urllib.parse.quote(name, safe="") + suffix


@pytest.fixture(scope="module")
def api(tmp_path_factory, http_server) -> Iterator[tuple[EmbeddedFlow, falcon.testing.TestClient]]:
    with flow_of(tmp_path_factory.mktemp("names"), {**sample_definitions(http_server), "Tick": TICK}) as flow:
        yield flow, falcon.testing.TestClient(create_app(runtime=flow.runtime))


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_every_schedule_route_refuses_a_bad_name_with_422_naming_the_rule(api, name):
    flow, client = api
    for method, suffix in [
        ("PUT", ""),
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/trigger"),
    ]:
        body = YEARLY if method == "PUT" else None
        response = client.simulate_request(method, path(name, suffix), json=body)
        assert response.status_code == 422, (method, suffix, response.text)
        [error] = response.json["errors"]
        assert error["path"] == "name" and error["message"] == SCHEDULE_NAME_RULE
    assert all(s.name != name for s in flow.runtime.schedules.table.list())


_NAME_CHARACTERS = st.characters(codec="utf-8") | st.sampled_from("aZ09._-")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(name=st.text(_NAME_CHARACTERS, min_size=0, max_size=140) | st.from_regex(r"\A[A-Za-z][A-Za-z0-9_.-]{0,140}\Z"))
def test_any_name_a_route_accepts_can_be_read_paused_and_deleted_by_that_name(api, name):
    flow, client = api
    created = client.simulate_put(path(name), json=YEARLY)
    if created.status_code != 201:
        # Refused, and nothing stored (a name with "/" or an empty one is another route).
        assert created.status_code in (404, 405, 422), created.text
        assert all(s.name != name for s in flow.runtime.schedules.table.list())
        return
    assert created.headers["Location"] == path(name)
    assert client.simulate_get(created.headers["Location"]).json["name"] == name
    assert client.simulate_post(path(name, "/resume")).json["paused"] is False
    assert client.simulate_post(path(name, "/pause")).json["paused"] is True
    assert client.simulate_delete(path(name)).status_code == 204
    assert client.simulate_get(path(name)).status_code == 404
