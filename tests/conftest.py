"""Fixtures shared by every test folder."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pykka
import pytest

from flow.polling import poll_until
from flow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def services() -> None:
    """PostgreSQL and RabbitMQ are reachable: skipped loudly outside CI, failed in CI."""
    from tests.services import require_services

    require_services()


@pytest.fixture(autouse=True)
def stop_all_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 10.0, every_s: float = 0.05, what: str = "") -> Any:
    """:func:`flow.polling.poll_until` with the suite's defaults."""
    return poll_until(condition, timeout_s=timeout_s, every_s=every_s, what=what)


class _StatusHandler(BaseHTTPRequestHandler):
    """``GET /status/<code>`` answers with that status code, ``GET /redirect?to=<url>``
    redirects there (302); counts requests per path."""

    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).hits[self.path] = type(self).hits.get(self.path, 0) + 1
        if self.path.startswith("/redirect?to="):
            from urllib.parse import unquote

            self.send_response(302)
            self.send_header("Location", unquote(self.path.split("=", 1)[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            code = int(self.path.rsplit("/", 1)[-1])
        except ValueError:
            code = 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    """A local HTTP server for DoAnotherThingActivity: nothing in the tests reaches the internet."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def sample_definitions(base_url: str) -> dict[str, dict[str, Any]]:
    """The definitions the end-to-end tests run, by name."""
    dummy = json.loads((ROOT / "workflows" / "dummy_workflow.json").read_text())
    # The test server is on 127.0.0.1: DoAnotherThingActivity fetches it only when allowed.
    dummy["activities"][1]["config"].update(url=f"{base_url}/status/200", allow_private=True)
    fast_retry = {"retry": {"max_attempts": 3, "initial_delay_ms": 20, "jitter": 0}}
    return {
        "DummyWorkflow": dummy,
        "HttpErrorWorkflow": {
            "name": "HttpErrorWorkflow",
            "config": fast_retry,
            "activities": [
                {
                    "name": "DoAnotherThingActivity",
                    "required": False,
                    "config": {"url": f"{base_url}/status/503", "allow_private": True},
                },
                {"name": "DoAnotherThingActivity", "config": {"url": f"{base_url}/status/200", "allow_private": True}},
            ],
        },
        "RetryWorkflow": {
            "name": "RetryWorkflow",
            "config": fast_retry,
            "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 3}}],
        },
        "FailingWorkflow": {
            "name": "FailingWorkflow",
            "config": fast_retry,
            "activities": [
                {"name": "DoSomethingActivity"},
                {"name": "RefusingActivity"},
                {"name": "DoSomethingActivity"},
            ],
        },
        "BrokenOptionalWorkflow": {
            "name": "BrokenOptionalWorkflow",
            "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 10, "jitter": 0}},
            "activities": [
                {"name": "BrokenActivity", "required": False},
                {"name": "EchoActivity"},
            ],
        },
        "ParallelWorkflow": {
            "name": "ParallelWorkflow",
            "config": {"greeting": "hello"},
            "activities": [
                {"name": "SleepActivity", "independent": True, "config": {"sleep_s": 0.3}},
                {"name": "SleepActivity", "independent": True, "config": {"sleep_s": 0.3}},
                {"name": "FlakyActivity", "independent": True, "config": {"succeed_on_attempt": 1}},
                {"name": "EchoActivity", "config": {"greeting": "hi"}},
            ],
        },
    }


#: How each test definition ends.
EXPECTED_STATUS = {
    "DummyWorkflow": "Finished",
    "HttpErrorWorkflow": "Finished",
    "RetryWorkflow": "Finished",
    "FailingWorkflow": "Failed",
    "BrokenOptionalWorkflow": "Finished",
    "ParallelWorkflow": "Finished",
}


@pytest.fixture
def definitions_dir(tmp_path: Path, http_server: str) -> Path:
    return write_definitions(tmp_path / "workflows", sample_definitions(http_server))


def embedded_env(tmp_path: Path, definitions_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "FLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'flow.db'}",
        "FLOW_DEFINITIONS_DIR": str(definitions_dir),
        "FLOW_ACTIVITY_PACKAGES": "tests.activities",
        **extra,
    }


@pytest.fixture
def embedded_settings(tmp_path: Path, definitions_dir: Path) -> Settings:
    return Settings.from_env(embedded_env(tmp_path, definitions_dir), embedded=True)


@contextlib.contextmanager
def flow_up(base: Path, definitions_dir: Path, **env: str) -> Iterator[str]:
    """``flow up`` on ``definitions_dir`` with the test activities; yields its URL."""
    from flow.testing import flow_up as run_flow_up

    with run_flow_up(base, embedded_env(base, definitions_dir, **env)) as url:
        yield url


def write_definitions(directory: Path, bodies: dict[str, dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in bodies.items():
        (directory / f"{name}.json").write_text(json.dumps(body))
    return directory
