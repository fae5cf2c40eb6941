"""Tracing across real processes: an engine and a worker (``dramatiq flow.actors``)
configured by the standard ``OTEL_`` variables alone, through the SDK's
autoconfiguration, exporting to their stdout (the console exporter); the trace
context crosses RabbitMQ in the attempt messages."""

from __future__ import annotations

import contextlib
import json

import psycopg2
import pytest
import requests

from flow.testing import Processes, free_port, migrate, wait_http
from tests.conftest import wait_for, write_definitions
from tests.integration.conftest import cluster_env, wait_ended

pytestmark = pytest.mark.services

TRACED = {
    "name": "TracedWorkflow",
    "config": {"retry": {"max_attempts": 3, "initial_delay_ms": 20, "jitter": 0}},
    "activities": [
        {"name": "FlakyActivity", "config": {"succeed_on_attempt": 2}},
        {"name": "TracedActivity"},
    ],
}


def exported_spans(log: str) -> list[dict]:
    """The spans the console exporter printed (one JSON object each) among the log lines."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (at := log.find('{\n    "name"', at)) != -1:
        span, at = decoder.raw_decode(log, at)
        spans.append(span)
    return spans


def test_spans_of_the_engine_and_the_worker_make_one_trace(pg_url, queue_prefix, tmp_path):
    otel = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    definitions = write_definitions(tmp_path / "workflows", {"TracedWorkflow": TRACED})
    procs = Processes(tmp_path, cluster_env(pg_url, queue_prefix, definitions, partitions=4))
    migrate(procs.env)
    port = free_port()
    procs.gunicorn("api", port, workers=1)
    procs.dramatiq("engine", f"{queue_prefix}.engine", env={**otel, "OTEL_SERVICE_NAME": "flow-engine"})
    procs.dramatiq("worker", f"{queue_prefix}.activities", env={**otel, "OTEL_SERVICE_NAME": "flow-worker"})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health")
        workflow_id = requests.post(f"{url}/workflows", json={"name": "TracedWorkflow"}, timeout=10).json()["id"]
        assert wait_ended(url, workflow_id)["status"] == "Finished"
        engine = wait_for(lambda: exported_spans(procs.log("engine")), timeout_s=20, what="the workflow span")
        worker = wait_for(
            lambda: (spans := exported_spans(procs.log("worker"))) and len(spans) >= 4 and spans,
            timeout_s=20,
            what="the attempt spans",
        )
    finally:
        procs.stop_all()

    (workflow,) = engine
    assert workflow["name"] == "workflow TracedWorkflow"
    assert workflow["attributes"]["flow.workflow.id"] == workflow_id
    assert workflow["attributes"]["flow.workflow.outcome"] == "Finished"
    assert workflow["resource"]["attributes"]["service.name"] == "flow-engine"
    trace_id, workflow_span = workflow["context"]["trace_id"], workflow["context"]["span_id"]
    with contextlib.closing(psycopg2.connect(pg_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT traceparent FROM workflows WHERE id = %s", (workflow_id,))
        (stored,) = cursor.fetchone()
    assert stored.split("-")[1:3] == [trace_id.removeprefix("0x"), workflow_span.removeprefix("0x")]

    attempts = [s for s in worker if s["name"].startswith("activity ")]
    assert sorted((s["name"], s["attributes"]["flow.attempt.number"]) for s in attempts) == [
        ("activity FlakyActivity", 1),
        ("activity FlakyActivity", 2),
        ("activity TracedActivity", 1),
    ]
    assert {(s["context"]["trace_id"], s["parent_id"]) for s in attempts} == {(trace_id, workflow_span)}
    assert {s["resource"]["attributes"]["service.name"] for s in worker} == {"flow-worker"}
    (own,) = [s for s in worker if s["name"] == "inside do_activity"]
    traced_attempt = next(s for s in attempts if s["name"] == "activity TracedActivity")
    assert own["parent_id"] == traced_attempt["context"]["span_id"]
