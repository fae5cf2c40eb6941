"""Prometheus metrics.

Two exporters, because the numbers live in two places:

- the API's ``GET /metrics`` reads the database at each scrape: workflows and
  activities by status, messages waiting in the outbox, and each concurrency limit's
  slots held and steps waiting (:class:`StoreCollector`);
- engine and worker processes export what they measure — activity attempts by
  outcome, activity durations, decision latency — through Dramatiq's Prometheus
  middleware when ``FLOW_METRICS_PORT`` is set (:class:`EngineMetrics`), together
  with Dramatiq's own message metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dramatiq

from flow.persistence.limits import LimitTable
from flow.persistence.store import Store

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# prometheus_client is imported inside the functions, never at import time: it picks
# its multiprocess mode once, when first imported, from PROMETHEUS_MULTIPROC_DIR,
# which Dramatiq's middleware sets only after a worker process boots.

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector:
    """Gauges read from the database at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        counts = self.store.status_counts()
        workflows = GaugeMetricFamily("flow_workflows", "Workflows by status.", labels=["status"])
        for status, count in counts["workflows"].items():
            workflows.add_metric([status], count)
        yield workflows
        activities = GaugeMetricFamily("flow_activities", "Activities by status.", labels=["status"])
        for status, count in counts["activities"].items():
            activities.add_metric([status], count)
        yield activities
        yield GaugeMetricFamily(
            "flow_outbox_messages", "Messages committed but not yet confirmed sent.", counts["outbox"]
        )
        yield GaugeMetricFamily("flow_timers", "Timers waiting (retries, timeouts).", counts["timers"])
        partitions = GaugeMetricFamily(
            "flow_engine_partitions", "Partitions each live engine holds.", labels=["engine"]
        )
        refused = GaugeMetricFamily(
            "flow_engine_commits_refused",
            "Commits of each engine refused by fencing or the version check (0 in normal operation).",
            labels=["engine"],
        )
        for engine in counts["engines"]:
            partitions.add_metric([engine["id"]], engine["partitions"])
            refused.add_metric([engine["id"]], engine["refused_commits"])
        yield partitions
        yield refused
        yield GaugeMetricFamily(
            "flow_partitions_unowned",
            "Partitions no engine holds (waiting for a takeover).",
            counts["unowned_partitions"],
        )
        held = GaugeMetricFamily(
            "flow_limit_slots_held",
            "Slots of each concurrency limit held, all keys (a rate limit's: steps let in, not ended).",
            labels=["limit", "kind"],
        )
        waiting = GaugeMetricFamily(
            "flow_limit_waiting",
            "Steps queued for each limit: for a slot (kind concurrency), or delayed by the rate (kind rate).",
            labels=["limit", "kind"],
        )
        for usage in LimitTable(self.store.database).usage():
            held.add_metric([usage.name, usage.kind], usage.held)
            waiting.add_metric([usage.name, usage.kind], usage.waiting)
        yield held
        yield waiting


def render(store: Store) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    return generate_latest(registry)


class EngineMetrics(dramatiq.Middleware):
    """Activity and decision metrics of engine and worker processes (multiprocess mode)."""

    def __init__(self) -> None:
        self.attempts: Any = None
        self.durations: Any = None
        self.decisions: Any = None
        self.refused: Any = None

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Dramatiq's Prometheus middleware set PROMETHEUS_MULTIPROC_DIR just before this;
        # prometheus_client reads it when a metric is created.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return
        import prometheus_client as prom

        registry = prom.CollectorRegistry()
        self.attempts = prom.Counter(
            "flow_activity_attempts_total", "Activity attempts by outcome.", ["activity", "outcome"], registry=registry
        )
        self.durations = prom.Histogram(
            "flow_activity_duration_seconds",
            "Duration of activity attempts.",
            ["activity"],
            registry=registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800),
        )
        self.decisions = prom.Histogram(
            "flow_decision_seconds",
            "Time to decide and commit one event, in the engine.",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
        )
        self.refused = prom.Counter(
            "flow_commits_refused_total",
            "Transitions whose commit was refused by fencing (the partition changed hands) or by the "
            "version check; 0 in normal operation.",
            registry=registry,
        )

    def observe_attempt(self, activity: str, outcome: str, duration_s: float | None) -> None:
        if self.attempts is not None:
            self.attempts.labels(activity, outcome).inc()
            if duration_s is not None:
                self.durations.labels(activity).observe(duration_s)

    def observe_decision(self, seconds: float) -> None:
        if self.decisions is not None:
            self.decisions.observe(seconds)

    def observe_refused(self, count: int) -> None:
        if self.refused is not None:
            self.refused.inc(count)


def run_exposition_server() -> int:
    """The exporter process (a Dramatiq "fork" of each ``dramatiq flow.actors`` master).

    Dramatiq's own exporter reads its port from ``dramatiq_prom_port`` when its module
    is imported in the fork, which never sees our settings; this reads
    ``FLOW_METRICS_PORT`` (inherited from the master's environment) first.
    """
    from dramatiq.middleware import prometheus

    from flow.settings import Settings

    port = Settings.from_env().metrics_port
    if port:
        prometheus.HTTP_PORT = port
    return prometheus._run_exposition_server()


def prometheus_middleware() -> dramatiq.Middleware:
    """Dramatiq's Prometheus middleware, with its exporter on ``FLOW_METRICS_PORT``."""
    from dramatiq.middleware.prometheus import Prometheus

    class FlowPrometheus(Prometheus):
        @property
        def forks(self) -> list[Any]:
            return [run_exposition_server]

    return FlowPrometheus()
