"""The workflow definitions that the tests and the benchmarks run, and the settings of an
embedded Libero Flow that runs them.

:func:`sample_definitions` covers each way a workflow ends (finished, failed, an
optional activity failing, retries, parallel activities, an HTTP activity), with the
activities that ship and those of :mod:`flow.testing.activities`;
:data:`EXPECTED_STATUS` says how each ends. :data:`FAULT_DEFINITIONS` is the mixed load
that the fault suite and the soak run under faults (maps, children, sleeps, signals,
limits), :data:`FAULT_EXPECTED` how each of those ends.
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


#: Retries 50 ms apart, five attempts: a fault costs a workflow little time.
FAST_RETRY = {"retry": {"max_attempts": 5, "initial_delay_ms": 50, "jitter": 0}}

#: The load of the fault suite (tests/faults) and of the soak (``python -m bench.soak``):
#: sequential, independent, retrying and failing activities, a map whose items retry, a
#: sleep, a child workflow (which retries), a wait for a signal. Concurrency limits are on
#: (a named one shared by the fan-outs, an inline one on the map's items and on the child
#: step), so every fault also hits steps that queue, hold and give back slots.
FAULT_DEFINITIONS: dict[str, dict[str, Any]] = {
    "SlowSequence": {
        "name": "SlowSequence",
        "config": FAST_RETRY,
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.3}} for _ in range(3)],
    },
    "FanOut": {
        "name": "FanOut",
        "config": FAST_RETRY,
        "activities": [
            *(
                {
                    "name": "SleepActivity",
                    "independent": True,
                    "config": {"sleep_s": 0.2},
                    "concurrency": {"name": "fanout", "limit": 6},
                }
                for _ in range(4)
            ),
            {"name": "EchoActivity"},
        ],
    },
    "Retrying": {
        "name": "Retrying",
        "config": FAST_RETRY,
        "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 3}}, {"name": "NoopActivity"}],
    },
    "Failing": {
        "name": "Failing",
        "config": FAST_RETRY,
        "activities": [{"name": "NoopActivity"}, {"name": "RefusingActivity"}, {"name": "NoopActivity"}],
    },
    "OptionalBroken": {
        "name": "OptionalBroken",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [
            {"name": "BrokenActivity", "required": False},
            {"name": "SleepActivity", "config": {"sleep_s": 0.1}},
        ],
    },
    "Map": {
        "name": "Map",
        "config": FAST_RETRY,
        "activities": [
            {
                "id": "each",
                "name": "FlakyActivity",
                "map": {"over": "`[1, 2, 3, 4, 5, 6, 7, 8]`", "max_concurrency": 3},
                "config": {"succeed_on_attempt": 2},
                "concurrency": {"key": "to_string(item)", "limit": 4},
            },
            {"name": "SleepActivity", "config": {"sleep_s": 0.1}},
        ],
    },
    "Nap": {
        "name": "Nap",
        "config": FAST_RETRY,
        "activities": [{"name": "NoopActivity"}, {"id": "nap", "sleep_s": 0.3}, {"name": "NoopActivity"}],
    },
    "Parent": {
        "name": "Parent",
        "config": FAST_RETRY,
        "activities": [
            {"name": "NoopActivity"},
            {"id": "child", "workflow": "Retrying", "concurrency": {"limit": 3}},
            {"name": "NoopActivity"},
        ],
    },
    "AwaitApproval": {
        "name": "AwaitApproval",
        "activities": [{"id": "approval", "wait_for": "approved", "timeout_s": 600}, {"name": "NoopActivity"}],
    },
    "LongNap": {
        "name": "LongNap",
        "activities": [{"id": "nap", "sleep_s": 4}, {"name": "NoopActivity"}],
    },
    "LongWait": {
        "name": "LongWait",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 6000, "jitter": 0}},
        "activities": [{"name": "FlakyActivity", "config": {"succeed_on_attempt": 2}}],
    },
    # A long job that heartbeats every step (the worker sends one per second). Long
    # enough (12 s) that none can finish between the test's seeing all six heartbeat
    # and its killing their workers, even on a busy machine.
    "Heartbeating": {
        "name": "Heartbeating",
        "config": FAST_RETRY,
        "activities": [
            {"name": "BeatActivity", "config": {"steps": 120, "step_s": 0.1, "timeouts": {"heartbeat_s": 2}}},
        ],
    },
    # The same long heartbeating job behind an inline limit of 1 (``SlotBeating.beat``):
    # one workflow at a time holds the slot, so the test can kill the worker of the one
    # that holds it and see when the slot comes back. 10 s a run, so the holder cannot
    # finish between the test's seeing it beat and the kill.
    "SlotBeating": {
        "name": "SlotBeating",
        "config": FAST_RETRY,
        "activities": [
            {
                "id": "beat",
                "name": "BeatActivity",
                "config": {"steps": 100, "step_s": 0.1, "timeouts": {"heartbeat_s": 2}},
                "concurrency": {"limit": 1},
            },
        ],
    },
    "Poison": {
        "name": "Poison",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 50, "jitter": 0}},
        "activities": [{"name": "KillerActivity"}],
    },
}

#: How each of :data:`FAULT_DEFINITIONS` ends.
FAULT_EXPECTED = {
    "SlowSequence": "Finished",
    "FanOut": "Finished",
    "Retrying": "Finished",
    "Failing": "Failed",
    "OptionalBroken": "Finished",
    "Map": "Finished",
    "Nap": "Finished",
    "Parent": "Finished",
    "AwaitApproval": "Finished",
    "LongNap": "Finished",
    "Poison": "Failed",
    "LongWait": "Finished",
    "Heartbeating": "Finished",
    "SlotBeating": "Finished",
}

#: The fault suite's usual batch (what each scenario starts, some copies of each).
FAULT_BATCH = ["SlowSequence", "FanOut", "Retrying", "Failing", "OptionalBroken", "Map", "Nap", "Parent"]


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
