"""One attempt in a worker: every way an activity can end becomes an outcome."""

from __future__ import annotations

import pytest

from activities.base import BaseActivity
from flow.execution import execute


class Raises(BaseActivity):
    non_retryable_exceptions = (KeyError,)

    def do_activity(self) -> str:
        raise self.config["exception"]("boom")


class Returns(BaseActivity):
    def do_activity(self) -> str:
        self.output = self.config.get("output")
        return self.config["outcome"]


def attempt(cls: type[BaseActivity], **config):
    return execute(
        {cls.__name__: cls},
        workflow_id="wf",
        position=0,
        attempt=1,
        activity=cls.__name__,
        config=config,
        input_data={},
        outputs={},
        max_output_bytes=100,
    )


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
    result = execute(
        {},
        workflow_id="wf",
        position=0,
        attempt=1,
        activity="os.system",
        config={},
        input_data={},
        outputs={},
    )
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
