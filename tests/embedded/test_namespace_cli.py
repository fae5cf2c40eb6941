"""Namespaces from the outside (issue 27): ``flow tokens add`` makes a token and its
hashed entry, ``flow up`` reads the file, the Python client and the CLI act in a
namespace (argument, ``--namespace`` or ``FLOW_NAMESPACE``) and see only its workflows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flow.client import Client, NotFound
from flow.core.namespaces import hash_token
from flow.testing import flow_up
from flow.testing.definitions import embedded_env, write_definitions
from tests.embedded.conftest import run_cli

WAITS = {"name": "Waits", "activities": [{"id": "w", "wait_for": "go"}]}


def _add(tokens: Path, namespace: str, role: str) -> str:
    made = run_cli("tokens", "add", "--namespace", namespace, "--role", role, "--file", str(tokens), env={})
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_tokens_add_stores_the_digest_and_prints_the_token_once(tmp_path):
    tokens = tmp_path / "tokens.toml"
    token = _add(tokens, "team-a", "operate")
    stored = tokens.read_text()
    assert token not in stored and hash_token(token) in stored and 'role = "operate"' in stored
    hashed = run_cli("tokens", "hash", "-", env={}, stdin=token + "\n")
    assert hashed.stdout.strip() == hash_token(token)
    refused = run_cli("tokens", "add", "--namespace", "Bad Name", "--role", "read", env={})
    assert refused.returncode == 2 and "namespace must match" in refused.stderr


def test_the_client_and_the_cli_act_in_their_namespace(tmp_path):
    tokens = tmp_path / "tokens.json"
    admin_a, admin_b = _add(tokens, "a", "admin"), _add(tokens, "b", "admin")
    env = embedded_env(
        tmp_path,
        write_definitions(tmp_path / "workflows", {}),
        FLOW_TOKENS_FILE=str(tokens),
        FLOW_API_TOKEN="root-" * 8,
    )
    with flow_up(tmp_path, env) as url:
        a, b = Client(url, token=admin_a), Client(url, token=admin_b)
        a.request("PUT", "/definitions/Waits", body=WAITS)
        started = a.start("Waits")
        with pytest.raises(NotFound):
            b.get(started.id)
        assert [w.id for w in a.list()] == [started.id]
        assert list(b.list()) == []
        # The operator's token, in a namespace by argument and by FLOW_NAMESPACE.
        root = Client(url, token="root-" * 8, namespace="a")
        assert root.get(started.id).id == started.id
        assert [w.id for w in Client(url, token="root-" * 8, namespace="b").list()] == []
        cli_env = {"FLOW_API_URL": url, "FLOW_API_TOKEN": "root-" * 8}
        listed = run_cli("--namespace", "a", "list", env=cli_env)
        assert listed.returncode == 0 and started.id in listed.stdout, listed.stderr
        listed = run_cli("list", env={**cli_env, "FLOW_NAMESPACE": "b"})
        assert listed.returncode == 0 and started.id not in listed.stdout, listed.stderr
        status = run_cli("status", started.id, env={"FLOW_API_URL": url, "FLOW_API_TOKEN": admin_b})
        assert status.returncode != 0 and "not found" in (status.stderr + status.stdout).lower()
    assert os.environ.get("FLOW_NAMESPACE") is None
    assert admin_a not in (tmp_path / "up.log").read_text()
    assert json.loads(tokens.read_text())["tokens"][0]["namespace"] == "a"
