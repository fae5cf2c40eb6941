"""The workflow definitions that the tests and the benchmarks run, and the settings of an
embedded Libero Flow that runs them.

:func:`sample_definitions` covers each way a workflow ends (finished, failed, an
optional activity failing, retries, parallel activities, an HTTP activity), with the
activities that ship and those of :mod:`flow.testing.activities`;
:data:`EXPECTED_STATUS` says how each ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flow.testing.processes import ROOT

#: The activity package these definitions need besides the built-in one.
ACTIVITY_PACKAGE = "flow.testing.activities"


def sample_definitions(base_url: str) -> dict[str, dict[str, Any]]:
    """The definitions by name; ``base_url`` is where DoAnotherThingActivity's requests go
    (``GET <base_url>/status/<code>`` should answer with that code)."""
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


#: How each of :func:`sample_definitions` ends.
EXPECTED_STATUS = {
    "DummyWorkflow": "Finished",
    "HttpErrorWorkflow": "Finished",
    "RetryWorkflow": "Finished",
    "FailingWorkflow": "Failed",
    "BrokenOptionalWorkflow": "Finished",
    "ParallelWorkflow": "Finished",
}


def write_definitions(directory: Path, bodies: dict[str, dict[str, Any]]) -> Path:
    """Write each body to ``directory/<name>.json`` (a ``FLOW_DEFINITIONS_DIR``); return ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in bodies.items():
        (directory / f"{name}.json").write_text(json.dumps(body))
    return directory


def embedded_env(base: Path, definitions_dir: Path, **extra: str) -> dict[str, str]:
    """``FLOW_`` settings of an embedded Libero Flow on ``base/flow.db`` that runs the
    definitions in ``definitions_dir`` with the test activities; ``extra`` adds more."""
    return {
        "FLOW_DATABASE_URL": f"sqlite:///{base / 'flow.db'}",
        "FLOW_DEFINITIONS_DIR": str(definitions_dir),
        "FLOW_ACTIVITY_PACKAGES": ACTIVITY_PACKAGE,
        **extra,
    }
