"""One attempt in a worker: every way an activity can end becomes an outcome."""

from __future__ import annotations

import random
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime

import pytest

from activities.base import BaseActivity
from flow.core.vocabulary import Outcome
from flow.wire.attempts import AttemptRequest
from flow.worker.execution import ActivityTimeout, execute
from flow.worker.running import RUNNING, RunningAttempts


class Raises(BaseActivity):
    non_retryable_exceptions = (KeyError,)

    def do_activity(self) -> str:
        raise self.config["exception"]("boom")


class Returns(BaseActivity):
    def do_activity(self) -> str:
        self.output = self.config.get("output")
        return self.config["outcome"]


def request(activity: str, config: dict, start_to_close_s: float | None = None) -> AttemptRequest:
    return AttemptRequest(
        workflow_id="wf",
        position=0,
        attempt=1,
        activity=activity,
        config=config,
        input_data={},
        outputs={},
        start_to_close_s=start_to_close_s,
        reply_to="flow.engine.0",
    )


def attempt(cls: type[BaseActivity], **config):
    return execute({cls.__name__: cls}, request(cls.__name__, config), max_output_bytes=100)


class Echoes(BaseActivity):
    def do_activity(self) -> str:
        self.output = {
            "ids": [self.workflow_id, self.position, self.attempt],
            "config": dict(self.config),
            "input_data": dict(self.input_data),
            "outputs": dict(self.outputs),
        }
        return self.SUCCEEDED


def test_the_activity_sees_its_request_and_the_result_names_its_attempt():
    asked = AttemptRequest(
        workflow_id="wf-9",
        position=2,
        attempt=3,
        activity="Echoes",
        config={"c": 1},
        input_data={"i": 2},
        outputs={"A": 3},
        reply_to="flow.engine.5",
    )
    started_at = datetime(2026, 1, 1, 12)
    result = execute({"Echoes": Echoes}, asked, started_at=started_at)
    assert (result.workflow_id, result.position, result.attempt) == ("wf-9", 2, 3)
    assert result.outcome is Outcome.SUCCEEDED and result.error is None
    assert result.output == {"ids": ["wf-9", 2, 3], "config": {"c": 1}, "input_data": {"i": 2}, "outputs": {"A": 3}}
    assert result.started_at == started_at < result.finished_at


def test_an_activity_can_be_built_with_keyword_arguments_in_its_own_tests():
    activity = Echoes(workflow_id="wf", config={"c": 1})
    assert activity.do_activity() is Outcome.SUCCEEDED
    assert activity.output == {"ids": ["wf", 0, 1], "config": {"c": 1}, "input_data": {}, "outputs": {}}


def test_an_exception_is_a_temporary_failure_with_its_traceback():
    result = attempt(Raises, exception=RuntimeError)
    assert result.outcome == "TEMPORARY_FAILURE"
    assert "RuntimeError: boom" in result.error


def test_a_non_retryable_exception_is_a_permanent_failure():
    result = attempt(Raises, exception=KeyError)
    assert result.outcome == "PERMANENT_FAILURE"
    assert "KeyError" in result.error


@pytest.mark.parametrize(
    ("config", "outcome", "error"),
    [
        ({"outcome": "SUCCEEDED", "output": {"a": 1}}, "SUCCEEDED", None),
        ({"outcome": "DONE"}, "PERMANENT_FAILURE", "returned 'DONE'"),
        ({"outcome": "SUCCEEDED", "output": {1, 2}}, "PERMANENT_FAILURE", "not JSON-serialisable"),
        ({"outcome": "SUCCEEDED", "output": "x" * 200}, "PERMANENT_FAILURE", "FLOW_MAX_PAYLOAD_BYTES"),
    ],
)
def test_outcomes_and_outputs_are_checked(config, outcome, error):
    result = attempt(Returns, **config)
    assert result.outcome == outcome
    assert (result.error is None) if error is None else (error in result.error)


def test_an_unknown_activity_fails_permanently_without_importing_anything():
    result = execute({}, request("os.system", {}))
    assert result.outcome == "PERMANENT_FAILURE"
    assert "no activity class named 'os.system'" in result.error


@pytest.mark.parametrize(
    ("output", "where"),
    [
        ({"ratio": float("nan")}, "output.ratio"),
        ([float("inf")], "output[0]"),
        ({"text": "a\x00b"}, "output.text"),
        ({"k\ud800": 1}, 'output["k\\ud800"]'),
        ({"n": 2**64}, "output.n"),
    ],
)
def test_an_output_that_is_not_strict_json_fails_the_attempt_instead_of_being_stored(output, where):
    result = attempt(Returns, outcome="SUCCEEDED", output=output)
    assert result.outcome == "PERMANENT_FAILURE"
    assert result.output is None
    assert where in result.error


@pytest.mark.parametrize("error", ["refused\x00on purpose", "lone \ud800 surrogate", RuntimeError("x\x00")])
def test_an_attempt_error_is_stored_as_text_the_database_takes(error):
    class Refuses(BaseActivity):
        def do_activity(self) -> str:
            self.error = error
            return self.PERMANENT_FAILURE

    result = attempt(Refuses)
    assert "\x00" not in result.error
    result.error.encode("utf-8")


class Busy(BaseActivity):
    """Runs Python bytecode for ``config.busy_s`` seconds (interruptible anywhere)."""

    def do_activity(self) -> str:
        end = time.monotonic() + self.config["busy_s"]
        while time.monotonic() < end:
            pass
        return self.SUCCEEDED


class Swallows(BaseActivity):
    """Catches the interrupt and returns as if nothing happened."""

    def do_activity(self) -> str:
        try:
            time.sleep(0.05)
            for _ in range(10_000_000):
                pass
        except BaseException:  # noqa: BLE001 - what a careless activity does
            pass
        return self.SUCCEEDED


def timed(cls: type[BaseActivity], time_limit_s: float, **config):
    return execute({cls.__name__: cls}, request(cls.__name__, config, start_to_close_s=time_limit_s))


def test_an_attempt_past_its_start_to_close_deadline_is_stopped():
    started = time.monotonic()
    result = timed(Busy, 0.05, busy_s=10)
    assert time.monotonic() - started < 5  # not the 10 s it would have taken; margin for a busy machine
    assert result.outcome == "TEMPORARY_FAILURE"
    assert "start-to-close timeout: stopped after 0.05 s" in result.error


def test_an_attempt_within_its_deadline_succeeds_and_nothing_fires_later():
    result = timed(Busy, 0.2, busy_s=0.01)
    assert result.outcome == "SUCCEEDED"
    end = time.monotonic() + 0.4  # past the deadline the attempt had: nothing arrives
    while time.monotonic() < end:
        pass


def test_an_activity_that_swallows_the_interrupt_still_times_out():
    result = timed(Swallows, 0.01)
    assert result.outcome == "TEMPORARY_FAILURE"
    assert "start-to-close timeout" in result.error


@pytest.fixture
def frequent_thread_switches():
    """Let the watchdog interleave with the attempt often (the default is every 5 ms)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.00005)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.slow
def test_a_deadline_never_fires_after_do_activity_returned(frequent_thread_switches):
    """Attempts that end right around their deadline: the timeout is either their
    outcome or nothing, never an exception in the code that runs after them."""
    rng = random.Random(7)
    outcomes = {"SUCCEEDED": 0, "TEMPORARY_FAILURE": 0}
    leaked = 0
    for _ in range(3000):
        limit_s = 0.001
        try:
            result = timed(Busy, limit_s, busy_s=rng.uniform(0.0, 2 * limit_s))
            outcomes[result.outcome] += 1
            # What the worker runs next (the result report, the next message).
            end = time.monotonic() + 0.0005
            while time.monotonic() < end:
                pass
        except ActivityTimeout:
            leaked += 1
    assert leaked == 0
    # The race window was really exercised: both sides won many times.
    assert outcomes["SUCCEEDED"] > 100 and outcomes["TEMPORARY_FAILURE"] > 100, outcomes


def test_attempts_in_many_threads_each_get_their_own_deadline():
    results: dict[int, str] = {}

    def run(i: int) -> None:
        # A deadline far beyond the quick ones' work: eight threads share one GIL, and on a
        # loaded machine a thread may wait long for its turn; the slow ones are stopped at it.
        results[i] = timed(Busy, 2.0, busy_s=0.01 if i % 2 else 60).outcome

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: "SUCCEEDED" if i % 2 else "TEMPORARY_FAILURE" for i in range(8)}


def test_an_attempt_told_to_stop_before_it_started_is_never_run():
    """Its cancel came while it waited in the queue: the run that ended gave its limit's slot
    back, so it must not start (docs/design.md, "Concurrency limits")."""
    ran = []

    class Counts(BaseActivity):
        def do_activity(self) -> str:
            ran.append(self.attempt)
            return self.SUCCEEDED

    asked = replace(request("Counts", {}), workflow_id="wf-told-to-stop")  # RUNNING is the process's
    RUNNING.cancel((asked.workflow_id, asked.position, asked.attempt))
    result = execute({"Counts": Counts}, asked)
    assert result.outcome is Outcome.CANCELLED and result.error == "cancelled before it started"
    assert ran == []
    other = replace(asked, attempt=2)  # the next attempt was not told anything: it runs
    assert execute({"Counts": Counts}, other).outcome is Outcome.SUCCEEDED and ran == [2]


def test_an_attempt_sent_before_a_cancel_notice_its_worker_forgot_is_reported_cancelled_unrun(monkeypatch):
    """A batch cancel of more queued attempts than a worker remembers: an attempt sent
    before the newest forgotten notice is not run, and reported Cancelled, which a run
    that goes on answers by sending it again (tests/unit/test_limits.py)."""
    running = RunningAttempts(remember=1)
    monkeypatch.setattr("flow.worker.execution.RUNNING", running)
    ran = []

    class Counts(BaseActivity):
        def do_activity(self) -> str:
            ran.append(self.attempt)
            return self.SUCCEEDED

    asked = replace(request("Counts", {}), workflow_id="wf-forgotten")
    running.cancel((asked.workflow_id, asked.position, asked.attempt), sent_ms=2_000.0)
    running.cancel(("wf-other", 0, 1), sent_ms=2_001.0)  # the first notice is forgotten
    result = execute({"Counts": Counts}, asked, sent_ms=1_000.0)
    assert result.outcome is Outcome.CANCELLED and "no longer remembers" in (result.error or "")
    assert execute({"Counts": Counts}, replace(asked, attempt=2), sent_ms=3_000.0).outcome is Outcome.SUCCEEDED
    assert ran == [2]
