"""``python -m bench.namespace_check``: what the namespace check costs ``GET /workflows/{id}``.

One embedded flow (SQLite, then the local PostgreSQL unless ``--sqlite-only``) and
Falcon's testing client in this process (no HTTP server, so the figure is the handler's
own cost): one workflow waiting on a signal, read again and again for ``--seconds`` by
one client, in three setups: no token configured (the API open), ``FLOW_API_TOKEN`` only,
and a tokens file's token of the workflow's namespace. Prints requests per second, the
request thread's CPU per request and the SQL statements each request ran, as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import falcon.testing

from api.app import create_app
from flow.core.namespaces import entry_line
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env, write_definitions
from flow.testing.services import new_database
from flow.testing.statements import counted

TOKEN = "bench-token-0123456789"
WAITING = {"name": "Waiting", "activities": [{"id": "w", "wait_for": "go"}]}


def measure(env: dict[str, str], headers: dict[str, str], seconds: float) -> dict[str, Any]:
    with EmbeddedFlow(Settings.from_env(env, embedded=True)) as flow:
        client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
        started = client.simulate_post("/workflows", json={"name": "Waiting"}, headers=headers)
        assert started.status_code == 201, started.text
        path = f"/workflows/{started.json['id']}"
        for _ in range(20):  # warm-up: connection, caches
            assert client.simulate_get(path, headers=headers).status_code == 200
        with counted(flow.runtime.store.database) as statements:
            assert client.simulate_get(path, headers=headers).status_code == 200
        done, deadline = 0, time.perf_counter() + seconds
        begun, cpu = time.perf_counter(), time.thread_time()
        while time.perf_counter() < deadline:
            client.simulate_get(path, headers=headers)
            done += 1
        return {
            "requests_per_s": round(done / (time.perf_counter() - begun), 1),
            # This thread's CPU (the handler's and the driver's): what a busy machine's
            # other processes do not inflate, unlike the rate.
            "cpu_ms_per_request": round((time.thread_time() - cpu) * 1000 / done, 2),
            "statements": len(statements),
        }


def run(database_url: str, base: Path, seconds: float) -> dict[str, Any]:
    directory = write_definitions(base / "workflows", {"Waiting": WAITING})
    tokens_file = base / "tokens.json"
    tokens_file.write_text(json.dumps({"tokens": [entry_line(TOKEN, "default", "operate", name="bench")]}))
    env = embedded_env(base, directory, FLOW_DATABASE_URL=database_url)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    return {
        "open": measure(env, {}, seconds),
        "api_token": measure(env | {"FLOW_API_TOKEN": TOKEN}, bearer, seconds),
        "namespace_token": measure(env | {"FLOW_TOKENS_FILE": str(tokens_file)}, bearer, seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "sqlite").mkdir()
        results["sqlite"] = run(f"sqlite:///{base / 'sqlite' / 'flow.db'}", base / "sqlite", args.seconds)
        if not args.sqlite_only:
            with ExitStack() as stack:
                url = stack.enter_context(new_database())
                (base / "pg").mkdir()
                results["postgresql"] = run(url, base / "pg", args.seconds)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
