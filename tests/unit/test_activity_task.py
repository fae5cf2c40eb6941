"""``flow.run_activity`` without a broker: :class:`~flow.process.tasks.ActivityTask` runs an
attempt's message and reports through whatever it is given (here a list)."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest

from activities.base import BaseActivity
from flow.core.vocabulary import Outcome
from flow.errors import InvalidInput
from flow.observability.metrics import EngineMetrics
from flow.process.tasks import ActivityTask, Reporter
from flow.wire import messages
from flow.wire.attempts import AttemptIdentity, AttemptRequest
from flow.worker.deliveries import DeliveryCounter
from flow.worker.reporting import DelayedCalls
from tests.conftest import wait_for


class Doubles(BaseActivity):
    def do_activity(self) -> str:
        self.output = {"twice": self.input_data["n"] * 2}
        return self.SUCCEEDED


class Beats(BaseActivity):
    def do_activity(self) -> str:
        self.heartbeat({"done": 1})
        self.output = {"marked": self.config["marked"]()}
        return self.SUCCEEDED


class Waits(BaseActivity):
    def do_activity(self) -> str:
        wait_for(lambda: self.config["seen"](), timeout_s=10, what="the started report")
        return self.SUCCEEDED


CLASSES = {cls.__name__: cls for cls in (Doubles, Beats, Waits)}


def request(activity: str, *, config: dict | None = None, heartbeat_s: float | None = None) -> AttemptRequest:
    return AttemptRequest(
        workflow_id="wf-1",
        position=0,
        attempt=1,
        activity=activity,
        config=config or {},
        input_data={"n": 21},
        outputs={},
        reply_to="flow.engine.3",
        heartbeat_s=heartbeat_s,
    )


class Reports(list):
    """A reporter that keeps what it is told, with the queue it would go to."""

    def __call__(self, message: messages.EngineMessage, reply_to: str | None) -> None:
        self.append((message, reply_to))

    def of(self, kind: type) -> list[Any]:
        return [m for m, _ in list(self) if isinstance(m, kind)]


@pytest.fixture
def reports() -> Reports:
    return Reports()


def task(reports: Reports, tmp_path, *, delay_s: float = 60.0, message_id: str | None = "m-1") -> ActivityTask:
    message = dramatiq.Message(
        queue_name="flow.activities", actor_name=messages.RUN_ACTIVITY, args=(), kwargs={}, options={}
    )
    if message_id is not None:
        message = message.copy(message_id=message_id)
    return ActivityTask(
        CLASSES,
        reports,
        metrics=EngineMetrics(),
        max_payload_bytes=10_000,
        started_report_delay_s=delay_s,
        delayed=DelayedCalls(),
        counter=DeliveryCounter(tmp_path),
        current_message=lambda: message if message_id is not None else None,
    )


def test_a_message_runs_its_activity_and_reports_the_result_to_its_partition_queue(reports, tmp_path):
    task(reports, tmp_path).on_message(**request("Doubles").to_kwargs())
    [(result, queue)] = reports
    assert isinstance(result, messages.AttemptResult)
    assert (result.workflow_id, result.position, result.attempt) == ("wf-1", 0, 1)
    assert (result.outcome, result.output, queue) == (Outcome.SUCCEEDED, {"twice": 42}, "flow.engine.3")


def test_an_unknown_activity_is_reported_as_a_permanent_failure(reports, tmp_path):
    result = task(reports, tmp_path).run(request("Nope"))
    assert result.outcome == Outcome.PERMANENT_FAILURE and "Nope" in result.error
    assert reports.of(messages.AttemptResult) == [result]


def test_a_quick_attempt_sends_no_started_report(reports, tmp_path):
    task(reports, tmp_path, delay_s=60).run(request("Doubles"))
    assert reports.of(messages.AttemptStarted) == []


def test_a_long_attempt_reports_that_it_started_before_its_result(reports, tmp_path):
    seen = lambda: bool(reports.of(messages.AttemptStarted))  # noqa: E731
    task(reports, tmp_path, delay_s=0).run(request("Waits", config={"seen": seen}))
    assert [type(m) for m, _ in reports] == [messages.AttemptStarted, messages.AttemptResult]


def test_heartbeats_are_reported_and_mark_the_message_while_the_attempt_runs(reports, tmp_path):
    beating = task(reports, tmp_path)
    marked = (tmp_path / "m-1").with_suffix(".beating").exists
    result = beating.run(request("Beats", config={"marked": marked}, heartbeat_s=30), message_id="m-1")
    [beat] = reports.of(messages.AttemptHeartbeat)
    assert beat.details == {"done": 1}
    # Marked while the attempt runs (a redelivered copy is not run again), then forgotten.
    assert (result.outcome, result.output) == (Outcome.SUCCEEDED, {"marked": True})
    assert beating.counter.take_beating("m-1") is False


def test_an_attempt_without_a_heartbeat_timeout_leaves_no_mark(reports, tmp_path):
    marked = (tmp_path / "m-1").with_suffix(".beating").exists
    result = task(reports, tmp_path).run(request("Beats", config={"marked": marked}), message_id="m-1")
    assert result.output == {"marked": False}
    assert len(reports.of(messages.AttemptHeartbeat)) == 1


def test_an_attempt_whose_deliveries_ran_out_is_reported_as_a_temporary_failure(reports, tmp_path):
    attempt = AttemptIdentity.read(request("Doubles").to_kwargs())
    task(reports, tmp_path).report_undeliverable(attempt, "delivered 3 times")
    [(result, queue)] = reports
    assert (result.outcome, result.error, queue) == (Outcome.TEMPORARY_FAILURE, "delivered 3 times", "flow.engine.3")


def test_the_reporter_sends_to_the_reply_queue_or_the_shared_engine_queue():
    class Broker:
        def __init__(self) -> None:
            self.sent: list[dramatiq.Message] = []

        def enqueue(self, message: dramatiq.Message) -> None:
            self.sent.append(message)

    broker = Broker()
    report = Reporter(broker, "flow.engine")  # type: ignore[arg-type]
    result = request("Doubles").result(Outcome.SUCCEEDED)
    report(result, "flow.engine.3")
    report(result, None)
    assert [(m.queue_name, m.actor_name) for m in broker.sent] == [
        ("flow.engine.3", messages.RECORD_RESULT),
        ("flow.engine", messages.RECORD_RESULT),
    ]


def test_an_attempt_from_a_newer_engine_is_reported_at_once_as_a_temporary_failure_and_not_run(
    reports, tmp_path, caplog
):
    fields = {**request("Doubles").to_kwargs(), "priority_hint": 3}
    task(reports, tmp_path).on_message(**fields)  # returns: the message is acknowledged, not retried
    [(result, queue)] = reports
    assert isinstance(result, messages.AttemptResult)
    assert (result.workflow_id, result.position, result.attempt, queue) == ("wf-1", 0, 1, "flow.engine.3")
    assert (result.outcome, result.output, result.started_at) == (Outcome.TEMPORARY_FAILURE, None, None)
    assert result.error == (
        "this worker cannot read the attempt: $.priority_hint: unknown field; "
        "a newer engine probably sent it: upgrade the workers to the engines' release"
    )
    assert "workflow wf-1: attempt 1 of step 0 (message m-1) cannot be read" in caplog.text
    # What the worker sends, the engine reads.
    assert messages.AttemptResult.from_kwargs(result.to_kwargs()) == result


def test_an_attempt_with_a_value_out_of_range_is_reported_with_what_could_not_be_read(reports, tmp_path):
    fields = {**request("Doubles").to_kwargs(), "start_to_close_s": -1}
    task(reports, tmp_path).on_message(**fields)
    [(result, _)] = reports
    assert result.outcome == Outcome.TEMPORARY_FAILURE
    assert result.error.startswith("this worker cannot read the attempt: $.start_to_close_s: must be a number")


def test_a_message_naming_no_readable_attempt_is_refused_for_the_dead_letter_queue(reports, tmp_path, caplog):
    fields = {**request("Doubles").to_kwargs(), "position": -1, "surprise": True}
    with pytest.raises(InvalidInput) as refused:
        task(reports, tmp_path).on_message(**fields)
    assert refused.value.path == "$.surprise"  # what the attempt could not be read for
    assert reports == []
    assert "nor which attempt it is ($.position: must be an integer" in caplog.text
    assert "names workflow 'wf-1'" in caplog.text
