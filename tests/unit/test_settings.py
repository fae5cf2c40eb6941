"""Settings: every FLOW_ variable parsed into its field's type, and every value that
would break a process refused at start with a message that names the variable."""

from __future__ import annotations

import pytest

from flow.errors import ConfigurationError
from flow.settings import IN_PROCESS_BROKER, Settings


def test_unset_and_empty_variables_keep_the_defaults():
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"FLOW_QUEUE_PREFIX": "", "FLOW_PARTITIONS": ""}) == Settings()


def test_the_embedded_default_broker_is_in_process_unless_set():
    assert Settings.from_env({}, embedded=True).broker_url == IN_PROCESS_BROKER
    amqp = "amqp://guest:guest@rabbit:5672/"
    assert Settings.from_env({"FLOW_BROKER_URL": amqp}, embedded=True).broker_url == amqp


def test_values_are_parsed_into_the_fields_types():
    settings = Settings.from_env(
        {
            "FLOW_ACTIVITY_PACKAGES": " mine.activities , theirs ,,",
            "FLOW_PARTITIONS": "32",
            "FLOW_PARTITION_LEASE_S": "2.5",
            "FLOW_METRICS_PORT": "9191",
            "FLOW_API_TOKEN": "s3cret",
        }
    )
    assert settings.activity_packages == ("mine.activities", "theirs")
    assert settings.partitions == 32
    assert settings.partition_lease_s == 2.5
    assert settings.metrics_port == 9191
    assert settings.api_token == "s3cret"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FLOW_PARTITIONS", "many", "FLOW_PARTITIONS='many' is not a valid"),
        ("FLOW_PARTITIONS", "0", "between 1 and 1024"),
        ("FLOW_PARTITIONS", "1025", "between 1 and 1024"),
        ("FLOW_MAX_LIVE_ACTORS", "0", "FLOW_MAX_LIVE_ACTORS must be a positive"),
        ("FLOW_DB_POOL_SIZE", "-1", "FLOW_DB_POOL_SIZE must be a positive"),
        ("FLOW_PARTITION_LEASE_S", "nan", "FLOW_PARTITION_LEASE_S must be a positive finite"),
        ("FLOW_PARTITION_LEASE_S", "inf", "FLOW_PARTITION_LEASE_S must be a positive finite"),
        ("FLOW_OUTBOX_POLL_S", "0", "FLOW_OUTBOX_POLL_S must be a positive"),
        ("FLOW_ACTOR_IDLE_S", "-3", "FLOW_ACTOR_IDLE_S must be a positive"),
        ("FLOW_STARTED_REPORT_DELAY_MS", "-1", "FLOW_STARTED_REPORT_DELAY_MS must be 0 or more"),
        ("FLOW_METRICS_PORT", "70000", "FLOW_METRICS_PORT must be a TCP port"),
        ("FLOW_LOG_FORMAT", "xml", "FLOW_LOG_FORMAT must be 'text' or 'json'"),
        ("FLOW_QUEUE_PREFIX", "flow prod", "FLOW_QUEUE_PREFIX may hold"),
        ("FLOW_QUEUE_PREFIX", "flow/*", "FLOW_QUEUE_PREFIX may hold"),
        ("FLOW_BROKER_URL", "redis://localhost", "FLOW_BROKER_URL must start with amqp://"),
        ("FLOW_RETENTION_DAYS", "-1", "FLOW_RETENTION_DAYS must be a finite number of days, 0 or more"),
        ("FLOW_RETENTION_DAYS", "nan", "FLOW_RETENTION_DAYS must be a finite number"),
        ("FLOW_RETENTION_DAYS", "inf", "FLOW_RETENTION_DAYS must be a finite number"),
        ("FLOW_RETENTION_DAYS", "a week", "FLOW_RETENTION_DAYS='a week' is not a valid"),
        ("FLOW_RETENTION_INTERVAL_S", "0", "FLOW_RETENTION_INTERVAL_S must be a positive"),
        ("FLOW_QUERY_TIMEOUT_S", "0", "FLOW_QUERY_TIMEOUT_S must be a positive"),
        ("FLOW_QUERY_TIMEOUT_S", "inf", "FLOW_QUERY_TIMEOUT_S must be a positive finite"),
        ("FLOW_DATABASE_TIMEOUT_S", "0", "FLOW_DATABASE_TIMEOUT_S must be a positive"),
        ("FLOW_DATABASE_TIMEOUT_S", "5", "must be longer than FLOW_QUERY_TIMEOUT_S"),
        ("FLOW_TEST_FAULTS", "kill:everywhere:1", "FLOW_TEST_FAULTS"),
        ("FLOW_TEST_FAULTS", "error:db:2", "FLOW_TEST_FAULTS"),
        # 1e300 passed, and every event then answered 500 (OverflowError: now - 1e300 s).
        ("FLOW_EVENT_DEDUP_S", "1e300", "FLOW_EVENT_DEDUP_S must be at most 31536000"),
        # 1e10 passed, and a process that had seen a block raised OverflowError as it closed
        # its broker (the prober's join of timeout + 1 s), and answered Retry-After: 10000000000.
        # 10**19 passed, and every start was answered 500 (the backlog walk's LIMIT overflowed).
        ("FLOW_MAX_START_BACKLOG", str(10**19), "FLOW_MAX_START_BACKLOG must be at most 1000000000"),
        ("FLOW_BROKER_BLOCKED_TIMEOUT_S", "1e10", "FLOW_BROKER_BLOCKED_TIMEOUT_S must be at most 60"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable, value, says):
    with pytest.raises(ConfigurationError, match=says.replace("(", r"\(").replace("*", r"\*")):
        Settings.from_env({variable: value})


def test_retention_is_off_by_default_and_takes_fractions_of_a_day():
    assert Settings.from_env({}).retention_days == 0
    assert Settings.from_env({"FLOW_RETENTION_DAYS": "0.5"}).retention_days == 0.5


def test_zero_started_report_delay_is_allowed():
    assert Settings.from_env({"FLOW_STARTED_REPORT_DELAY_MS": "0"}).started_report_delay_ms == 0


def test_fault_injection_is_off_unless_configured():
    from flow.faults import FaultInjector

    assert FaultInjector.parse(Settings.from_env({}).test_faults) is None
    injector = FaultInjector.parse(Settings.from_env({"FLOW_TEST_FAULTS": "error:db:1"}).test_faults)
    assert injector is not None and injector.faults == {"db": ("error", 1.0)}


def test_the_query_time_budget_reaches_the_store(tmp_path):
    from flow.process.runtime import Runtime

    settings = Settings.from_env(
        {"FLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'flow.db'}", "FLOW_QUERY_TIMEOUT_S": "2.5"}, embedded=True
    )
    assert Runtime.build(settings, engine=False).store.query_timeout_s == 2.5
