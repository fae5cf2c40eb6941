"""Fixtures of the embedded tests: a running in-process flow, its API, the ``flow`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from tests.conftest import ROOT


@pytest.fixture
def flow(embedded_settings) -> Iterator[EmbeddedFlow]:
    with EmbeddedFlow(embedded_settings) as running:
        yield running


@pytest.fixture
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def run_cli(
    *args: str, env: dict[str, str], timeout_s: float = 60, extra_path: str | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """``flow ARGS...`` as a subprocess, as a user runs it (``extra_path``: more to import
    from; ``stdin``: what it reads there)."""
    return subprocess.run(
        [sys.executable, "-m", "flow.cli", *args],
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), extra_path]))},
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
