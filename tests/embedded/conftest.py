"""Fixtures of the embedded tests: a running in-process flow, its API, the ``flow`` command."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env, write_definitions
from tests.conftest import ROOT


@pytest.fixture
def flow(embedded_settings) -> Iterator[EmbeddedFlow]:
    with EmbeddedFlow(embedded_settings) as running:
        yield running


@pytest.fixture
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


@contextlib.contextmanager
def flow_of(base: Path, definitions: dict[str, dict[str, Any]], **env: str) -> Iterator[EmbeddedFlow]:
    """An embedded flow on ``base`` that knows only ``definitions``, with ``env``'s
    ``FLOW_`` settings on top of the embedded defaults (a module-scoped ``flow`` fixture)."""
    directory = write_definitions(base / "workflows", definitions)
    with EmbeddedFlow(Settings.from_env(embedded_env(base, directory, **env), embedded=True)) as running:
        yield running


def strict_json(text: str) -> object:
    """``text`` parsed as strict JSON: ``NaN`` and ``Infinity``, which browsers refuse, raise."""

    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


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
