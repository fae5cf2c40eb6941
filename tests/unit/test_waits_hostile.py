"""Sleeps, waits, signals and pause against a hostile review, decided by the pure
``decide()``. Each test failed on the code it was written against, and passes since its fix."""

from __future__ import annotations

import pytest

from flow.core.decide import decide
from flow.core.events import WorkflowStarted
from flow.core.vocabulary import ActivityStatus, WorkflowStatus
from tests.unit.test_graph import T0, state_of

S = ActivityStatus


@pytest.mark.parametrize(
    "at",
    [
        # Valid ISO 8601 times with an offset, whose UTC equivalent is outside years 1-9999:
        # ``astimezone(UTC)`` raises OverflowError, which ``_parse`` does not catch (it
        # catches ValueError only). The exception escapes ``decide()``; the engine's safety
        # net dead-letters the event and marks the workflow Failed with "the engine cannot
        # handle this workflow: OverflowError" and its activities left Pending (not Skipped),
        # and a retry from failure crashes the same way. The README promises "anything but
        # a time ... fails the step" (with a reason naming sleep_until); a past time "wakes
        # it at once".
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_sleep_until_a_time_at_the_edge_of_the_calendar_fails_or_wakes_instead_of_crashing_decide(at):
    state = state_of({"id": "nap", "sleep_until": "input.at"}, {"name": "B"}, input_data={"at": at})
    decision = decide(state, WorkflowStarted(T0))  # raised OverflowError: date value out of range
    nap = decision.state.activities[0]
    assert decision.state.status is WorkflowStatus.FAILED or nap.status in (S.WAITING, S.SUCCEEDED)
    if nap.status is S.FAILED:
        assert "sleep_until" in nap.error


def test_a_full_inbox_of_noise_does_not_drop_the_signal_a_waiting_step_waits_for():
    """The inbox cap (1,000) counts every signal ever received, and ``received`` checks
    it before it looks for a waiting step. So once 1,000 signals nobody waits for have
    come (a chatty or hostile sender, no Idempotency-Key), the signal a step *is waiting
    for* is dropped too: the API has answered 202, the wait (no timeout) never ends, and
    the workflow stays In Progress with nothing owed (recovery finds no timer, no run).
    The README's cap is on what a workflow *keeps*; a signal taken at once is not kept
    for later, and "a signal ends the earliest step waiting for its name"."""
    from flow.core.events import SignalReceived
    from flow.core.kinds import wait as signals
    from flow.core.recovery import owed
    from tests.unit.test_graph import Run

    run = Run(state_of({"id": "approval", "wait_for": "approved"}))
    for n in range(signals.MAX_SIGNALS):
        run.decision = run._decide(SignalReceived(run._now(), "noise", f"n{n}", None))
    run.decision = run._decide(SignalReceived(run._now(), "approved", "the-one", {"by": "ana"}))
    stuck = run.state.status is WorkflowStatus.IN_PROGRESS and owed(run.state).timers == () and not owed(run.state).runs
    assert not stuck, "the awaited signal was dropped: In Progress with nothing owed"
    assert run.activity("approval").status is S.SUCCEEDED


@pytest.mark.parametrize("typed", ["approved#2", "approved?by=ana", "approved/"])
def test_flow_signal_does_not_send_another_name_than_the_one_typed(monkeypatch, typed):
    """``flow signal ID NAME`` puts NAME into the URL path unquoted
    (``f"/workflows/{workflow_id}/signals/{name}"``): a name that is not a signal's
    (the API would answer 422, exit 2) loses its tail at ``#`` or ``?`` on the way, and
    the server receives signal ``approved``. The step waiting for ``approved`` is ended
    by a signal the user never named, and the CLI prints "sent signal approved#2"."""
    import urllib.request

    from click.testing import CliRunner

    import flow.cli.remote as remote
    from flow.cli.app import main

    paths: list[str] = []

    class Recorder:
        def request(self, method, path, **_):
            paths.append(path)
            return {"signal_id": "s1"}

    monkeypatch.setattr(remote, "api_client", lambda: Recorder())
    CliRunner().invoke(main, ["signal", "wf-1", typed])
    for path in paths:
        # What the server is asked for: the path urllib sends (no fragment, no query).
        selector = urllib.request.Request("http://api.example" + path).selector.split("?", 1)[0]
        assert selector.rstrip("/") != "/workflows/wf-1/signals/approved", f"{typed!r} was sent as 'approved'"
