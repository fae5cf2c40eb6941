"""Per-namespace quotas (issue 27) on the embedded flow: starts per second and running
workflows answer 429 with Retry-After past the quota; other namespaces are not
affected (the flood's latency: python -m bench.namespace_flood)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from api.app import create_app
from flow.core.namespaces import entry_line
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

QUOTAS = {
    "slow": {"starts_per_s": 2},
    "small": {"max_running": 2},
}
ADMINS = ("slow", "small", "calm")


def bearer(namespace: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-of-{namespace}-admin"}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[falcon.testing.TestClient]:
    base: Path = tmp_path_factory.mktemp("quotas")
    tokens = base / "tokens.toml"
    lines = []
    for namespace, quota in QUOTAS.items():
        lines.append(f"[namespaces.{namespace}]")
        lines += [f"{key} = {value}" for key, value in quota.items()]
    for namespace in ADMINS:
        entry = entry_line(f"token-of-{namespace}-admin", namespace, "admin")
        lines.append("[[tokens]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    tokens.write_text("\n".join(lines) + "\n")
    with flow_of(base, {}, FLOW_TOKENS_FILE=str(tokens)) as flow:
        client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
        for namespace in ADMINS:
            body = {"name": f"Wait{namespace}", "activities": [{"id": "w", "wait_for": "go"}]}
            assert (
                client.simulate_put(f"/definitions/Wait{namespace}", json=body, headers=bearer(namespace)).status_code
                == 201
            )
        yield client


def start(client, namespace: str):
    return client.simulate_post("/workflows", json={"name": f"Wait{namespace}"}, headers=bearer(namespace))


def test_starts_past_the_rate_answer_429_with_retry_after(client):
    answers = [start(client, "slow") for _ in range(6)]
    statuses = [a.status_code for a in answers]
    assert statuses[:2] == [201, 201]  # a burst of one second's worth
    assert 429 in statuses[2:]
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "quota" in refused.json["description"]
    assert start(client, "calm").status_code == 201  # another namespace is not held back


def test_starts_past_the_running_quota_answer_429_until_one_ends(client):
    first = [start(client, "small") for _ in range(2)]
    assert [a.status_code for a in first] == [201, 201]
    over = start(client, "small")
    assert over.status_code == 429 and over.headers["retry-after"] == "1"
    assert "2 workflows in progress" in over.json["description"]
    cancelled = client.simulate_post(f"/workflows/{first[0].json['id']}/cancel", headers=bearer("small"))
    assert cancelled.status_code == 202
    # Admitted once the engine has ended the cancelled one (each refused try changes nothing).
    wait_for(lambda: start(client, "small").status_code == 201, what="a start admitted after the cancel")
