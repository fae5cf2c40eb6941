"""``GET /health`` during a RabbitMQ alarm (api/resources/health.py): once its own probe
found publishers blocked, the process knows it too (the real alarm:
tests/faults/test_broker_alarm.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api.resources import health
from flow.errors import BrokerBlocked
from flow.process.broker import BlockedPublishes


def test_a_health_check_that_finds_publishers_blocked_tells_its_process(monkeypatch: pytest.MonkeyPatch):
    # Hostile review: each /health during an alarm opened a connection and held its thread
    # CHECK_TIMEOUT_S (2 s) on a blocked publish, and the process's next start still waited
    # FLOW_BROKER_BLOCKED_TIMEOUT_S on one of its own before it refused: a poller of /health
    # could hold every thread of the API while RabbitMQ blocked.
    probes: list[object] = []

    def blocked_probe(parameters: object) -> bool:
        probes.append(parameters)
        return False

    monkeypatch.setattr(health, "takes_publishes", blocked_probe)
    blocked = BlockedPublishes(3.0, probe=lambda: False)
    settings = SimpleNamespace(broker_url="amqp://guest:guest@127.0.0.1:5672/", uses_in_process_broker=False)
    resource = health.HealthResource(SimpleNamespace(settings=settings, broker=SimpleNamespace(blocked=blocked)))
    try:
        assert resource._broker() == health.BLOCKED
        assert resource._broker() == health.BLOCKED
        assert len(probes) == 1  # the second answered from what the process knows
        with pytest.raises(BrokerBlocked):
            blocked.check()  # a start is refused at once, not after a blocked publish of its own
    finally:
        blocked.stop()
