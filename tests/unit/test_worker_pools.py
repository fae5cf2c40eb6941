"""The worker side of worker pools: ``flow worker``'s command line, the pool queues a
worker declares, and the cancel listener of a pool-only worker."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker

from flow.cli import main
from flow.cli.worker import worker_argv
from flow.errors import ConfigurationError
from flow.process.runtime import EngineLifecycle
from flow.settings import Settings
from flow.worker.cancellations import CancellationListener
from flow.worker.pools import WorkerPools, served_queues

DRAMATIQ = [sys.executable, "-m", "dramatiq", "flow.actors"]


@pytest.mark.parametrize(
    ("args", "env", "argv"),
    [
        ([], {}, [*DRAMATIQ, "--threads", "8", "--queues", "flow.activities"]),
        (["--pool", "gpu"], {}, [*DRAMATIQ, "--threads", "8", "--queues", "flow.activities.gpu"]),
        (
            ["--pool", "gpu", "--pool", "default", "--threads", "2"],
            {"FLOW_QUEUE_PREFIX": "team"},
            [*DRAMATIQ, "--threads", "2", "--queues", "team.activities.gpu", "team.activities"],
        ),
        (
            ["--pool", "gpu", "--pool", "gpu", "--processes", "1"],
            {},
            [*DRAMATIQ, "--threads", "8", "--processes", "1", "--queues", "flow.activities.gpu"],
        ),
    ],
)
def test_flow_worker_runs_dramatiq_on_the_queues_of_its_pools(monkeypatch, args, env, argv):
    ran: list[list[str]] = []
    monkeypatch.setattr("flow.cli.worker.os.execv", lambda path, argv: ran.append(argv))
    for name in ("FLOW_QUEUE_PREFIX", "FLOW_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["worker", *args], env=env)
    assert result.exit_code == 0, result.output
    assert ran == [argv]


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--pool", "GPU"], {}, "--pool 'GPU' is not a worker pool"),
        (["--pool", "gpu.big"], {}, "is not a worker pool"),
        (["--threads", "0"], {}, "Invalid value for '--threads'"),
        (["--pool", "gpu"], {"FLOW_BROKER_URL": "stub://"}, "flow worker needs RabbitMQ"),
    ],
)
def test_flow_worker_refuses_what_it_cannot_serve_with_exit_2(monkeypatch, args, env, words):
    ran: list[list[str]] = []
    monkeypatch.setattr("flow.cli.worker.os.execv", lambda path, argv: ran.append(argv))
    result = CliRunner().invoke(main, ["worker", *args], env=env)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert ran == []


def test_worker_argv_without_pools_serves_the_default_one():
    assert worker_argv("p.activities", (), threads=3, processes=None)[-2:] == ["--queues", "p.activities"]


def test_a_worker_declares_the_pool_queues_of_its_whitelist_before_it_boots():
    """Dramatiq consumes only declared queues: without this, a gpu-only worker consumes nothing."""
    broker = StubBroker()
    broker.declare_queue("flow.activities")
    worker = SimpleNamespace(consumer_whitelist={"flow.activities.gpu", "flow.engine", "other.activities.x"})
    WorkerPools("flow.activities").before_worker_boot(broker, worker)
    assert {q for q in broker.get_declared_queues() if not q.endswith(".DQ")} == {
        "flow.activities",
        "flow.activities.gpu",
    }


def test_a_worker_without_a_whitelist_declares_no_pool():
    broker = StubBroker()
    WorkerPools("flow.activities").before_worker_boot(broker, SimpleNamespace(consumer_whitelist=None))
    assert broker.get_declared_queues() == set()


@pytest.mark.parametrize(
    ("whitelist", "listens"),
    [
        ({"flow.activities.gpu"}, True),
        ({"flow.activities"}, True),
        ({"flow.engine", "flow.activities.gpu"}, True),
        ({"flow.engine"}, False),
        (None, True),
    ],
)
def test_the_cancel_listener_runs_on_every_worker_that_runs_attempts(monkeypatch, whitelist, listens):
    listener = CancellationListener(url="amqp://unused", exchange="x", activity_queue="flow.activities")
    started: list[bool] = []
    monkeypatch.setattr(listener, "start", lambda: started.append(True))
    listener.after_worker_boot(StubBroker(), SimpleNamespace(consumer_whitelist=whitelist))
    assert started == ([True] if listens else [])


def test_flow_worker_pools_names_the_queues_of_a_worker_started_without_queues():
    settings = Settings.from_env({"FLOW_WORKER_POOLS": "gpu,default"})
    assert served_queues(settings) == ("flow.activities.gpu", "flow.activities")
    assert served_queues(Settings.from_env({})) == ("flow.activities",)
    with pytest.raises(ConfigurationError, match="FLOW_WORKER_POOLS: 'GPU' is not a worker pool"):
        served_queues(Settings.from_env({"FLOW_WORKER_POOLS": "GPU"}))


def test_a_process_started_without_queues_serves_the_engine_and_flow_worker_pools():
    settings = Settings.from_env({"FLOW_WORKER_POOLS": "gpu"})
    broker = StubBroker()
    worker = SimpleNamespace(consumer_whitelist=None)
    EngineLifecycle(SimpleNamespace(settings=settings)).before_worker_boot(broker, worker)
    WorkerPools(settings.activity_queue).before_worker_boot(broker, worker)
    assert worker.consumer_whitelist == {"flow.engine", "flow.activities.gpu"}
    assert "flow.activities.gpu" in broker.get_declared_queues()
