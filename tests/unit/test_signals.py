"""Signals and waits (``wait_for``), decided by the pure ``decide()``, rule by rule."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flow.core.commands import CancelTimer, StartTimer
from flow.core.events import CancelRequested, RetryRequested, SignalReceived, TimerFired
from flow.core.kinds import wait as signals
from flow.core.recovery import owed
from flow.core.state import StoredJSON
from flow.core.vocabulary import ActivityStatus, HistoryType, TimerKind, WorkflowStatus
from tests.unit.test_graph import Run, problems, state_of

S = ActivityStatus
APPROVAL = {"id": "approval", "wait_for": "approved", "timeout_s": 60}


def run_of(*activities: dict[str, Any]) -> Run:
    return Run(state_of(*activities))


def signal(run: Run, name: str, payload: Any = None, signal_id: str | None = None) -> None:
    event = SignalReceived(run._now(), name, signal_id or f"s{run.clock}", payload)
    run.decision = run._decide(event)


def types(run: Run) -> list[HistoryType]:
    return [h.type for h in run.decision.history]


def test_a_signal_ends_the_wait_with_its_payload_and_the_next_activity_runs():
    run = run_of({"name": "A"}, APPROVAL, {"name": "B"})
    run.end("A")
    assert run.status("approval") is S.WAITING and run.activity("approval").name == "wait"
    assert StartTimer(TimerKind.WAIT, 60_000, 1, 1) in run.decision.commands
    signal(run, "approved", {"by": "ana"})
    assert run.status("approval") is S.SUCCEEDED and run.activity("approval").output == {"by": "ana"}
    assert CancelTimer(TimerKind.WAIT, 1, 1) in run.decision.commands and run.scheduled() == ["B"]
    assert types(run)[:2] == [HistoryType.SIGNAL_RECEIVED, HistoryType.END_WAIT]


def test_a_signal_before_the_wait_is_kept_and_taken_when_the_wait_comes():
    run = run_of({"name": "A"}, APPROVAL, {"name": "B"})
    signal(run, "approved", {"by": "early"}, signal_id="k1")
    assert types(run) == [HistoryType.SIGNAL_RECEIVED, HistoryType.KEEP_SIGNAL]
    assert [(s.name, s.consumed_by) for s in run.state.inbox] == [("approved", None)]
    run.end("A")
    assert run.status("approval") is S.SUCCEEDED and run.activity("approval").output == {"by": "early"}
    assert run.scheduled() == ["B"] and not any(isinstance(c, StartTimer) for c in run.decision.commands)
    assert [(s.id, s.consumed_by, s.payload) for s in run.state.inbox] == [("k1", 1, None)]


def test_a_kept_signal_loaded_as_its_stored_text_is_decoded_when_the_wait_takes_it():
    # The engine's load keeps a kept payload as its JSON text (issue 25): decoded only when taken.
    run = run_of({"name": "A"}, APPROVAL, {"name": "B"})
    signal(run, "approved", {"by": "early", "n": [1, 2]}, signal_id="k1")
    stored = replace(run.state.inbox[0], payload=StoredJSON('{"by":"early","n":[1,2]}'))
    assert stored == run.state.inbox[0]  # equal to the payload it stands for
    run.state = replace(run.state, inbox=(stored,))
    run.end("A")
    output = run.activity("approval").output
    assert type(output) is dict and output == {"by": "early", "n": [1, 2]}  # the payload, not its text
    assert run.scheduled() == ["B"] and [(s.id, s.consumed_by, s.payload) for s in run.state.inbox] == [("k1", 1, None)]


def test_a_repeated_signal_is_recorded_once():
    run = run_of(APPROVAL, APPROVAL | {"id": "second"})
    signal(run, "approved", 1, signal_id="same")
    signal(run, "approved", 1, signal_id="same")
    assert types(run) == [HistoryType.SIGNAL_RECEIVED, HistoryType.DO_NOTHING]
    assert "already received" in run.decision.history[1].data["reason"]
    assert run.status("second") is S.WAITING  # the repeat did not end the second wait


def test_a_signal_for_an_ended_workflow_is_dropped():
    run = run_of({"name": "A"})
    run.end("A")
    signal(run, "approved")
    assert run.decision.history[-1].data["reason"] == "workflow Finished: signal dropped"
    assert run.state.inbox == ()


def test_the_wait_times_out_like_an_activity_and_a_late_signal_is_kept():
    run = run_of(APPROVAL | {"required": False}, {"name": "B"})
    run.decision = run._decide(TimerFired(TimerKind.WAIT, 0, 1, occurred_at=run._now()))
    approval = run.activity("approval")
    assert approval.status is S.FAILED and approval.error == "wait timeout: no signal 'approved' within 60 s"
    assert run.scheduled() == ["B"]
    signal(run, "approved")
    assert types(run)[-1] is HistoryType.KEEP_SIGNAL


def test_a_signal_that_won_the_race_makes_the_timeout_stale():
    run = run_of(APPROVAL, {"name": "B"})
    signal(run, "approved")
    run.decision = run._decide(TimerFired(TimerKind.WAIT, 0, 1, occurred_at=run._now()))
    assert run.decision.history[0].data["stale"] is True and run.status("approval") is S.SUCCEEDED


def test_a_required_wait_timing_out_fails_the_workflow():
    run = run_of(APPROVAL, {"name": "B"})
    run.decision = run._decide(TimerFired(TimerKind.WAIT, 0, 1, occurred_at=run._now()))
    assert run.state.status is WorkflowStatus.FAILED
    assert (
        run.state.error
        == "required activity approval (position 0) failed: wait timeout: no signal 'approved' within 60 s"
    )


def test_cancel_during_a_wait_cancels_it_and_its_timer_then_retry_waits_again():
    run = run_of(APPROVAL)
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    assert run.status("approval") is S.CANCELLED and CancelTimer(TimerKind.WAIT, 0, 1) in run.decision.commands
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.status("approval") is S.WAITING and StartTimer(TimerKind.WAIT, 60_000, 0, 2) in run.decision.commands


def test_the_earliest_waiting_step_takes_a_signal_and_a_wait_without_timeout_sets_no_timer():
    run = run_of(
        {"id": "one", "wait_for": "go", "independent": True}, {"id": "two", "wait_for": "go", "independent": True}
    )
    assert not any(isinstance(c, StartTimer) for c in run.decision.commands)
    signal(run, "go", 1)
    assert (run.status("one"), run.status("two")) == (S.SUCCEEDED, S.WAITING)
    signal(run, "go", 2)
    assert run.activity("two").output == 2 and run.state.status is WorkflowStatus.FINISHED


def test_the_inbox_is_bounded():
    run = run_of({"name": "A"})
    for n in range(signals.MAX_SIGNALS):
        signal(run, "noise", signal_id=f"n{n}")
    signal(run, "noise", signal_id="one too many")
    assert "signal dropped" in run.decision.history[-1].data["reason"]
    assert len(run.state.inbox) == signals.MAX_SIGNALS


def test_recovery_finds_the_waits_timeout():
    run = run_of(APPROVAL)
    [due] = owed(run.state).timers
    assert (due.kind, due.position, due.attempt) == (TimerKind.WAIT, 0, 1)


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"wait_for": "has space"}, "$.activities[0].wait_for"),
        ({"name": "A", "timeout_s": 3}, "$.activities[0].timeout_s"),
        ({"wait_for": "x", "sleep_s": 1}, "$.activities[0]"),
        ({"wait_for": "x", "timeout_s": 0}, "$.activities[0].timeout_s"),
    ],
)
def test_wait_shapes_are_checked(entry, path):
    assert path in [p for p, _ in problems(entry)]


def test_kept_signals_are_bounded_by_their_bytes_and_the_drop_names_the_limit():
    run = run_of({"name": "A"}, APPROVAL)
    run.state = replace(run.state, inbox_limit=100)
    signal(run, "noise", "x" * 60, signal_id="n1")
    assert types(run)[-1] is HistoryType.KEEP_SIGNAL
    signal(run, "noise", "y" * 60, signal_id="n2")  # 62 + 62 bytes of JSON > 100
    assert types(run) == [HistoryType.SIGNAL_RECEIVED, HistoryType.DO_NOTHING]
    assert "FLOW_MAX_INBOX_BYTES" in run.decision.history[-1].data["reason"]
    assert [s.id for s in run.state.inbox] == ["n1"] and run.state.inbox[0].size == 62


def test_a_signal_a_step_waits_for_is_taken_whatever_the_inbox_keeps():
    run = run_of(APPROVAL)
    run.state = replace(run.state, inbox_limit=100)
    signal(run, "noise", "x" * 90, signal_id="n1")
    signal(run, "approved", {"note": "z" * 200}, signal_id="a1")
    assert run.status("approval") is S.SUCCEEDED and run.activity("approval").output == {"note": "z" * 200}


def test_a_taken_signal_frees_its_bytes_for_the_next_kept_one():
    run = run_of({"name": "A"}, APPROVAL, {"name": "B"})
    run.state = replace(run.state, inbox_limit=100)
    signal(run, "approved", "x" * 80, signal_id="k1")  # kept: the wait's turn has not come
    run.end("A")  # the wait takes it
    signal(run, "noise", "y" * 80, signal_id="n1")
    assert types(run)[-1] is HistoryType.KEEP_SIGNAL and signals.kept_bytes(run.state.inbox) == 82


def test_a_repeated_signal_id_with_another_payload_is_dropped_and_said_so():
    run = run_of({"name": "A"}, APPROVAL)
    signal(run, "approved", {"by": "ana"}, signal_id="same")
    signal(run, "approved", {"by": "bob"}, signal_id="same")
    assert types(run) == [HistoryType.SIGNAL_RECEIVED, HistoryType.DO_NOTHING]
    assert "another payload" in run.decision.history[-1].data["reason"]
    assert [s.payload for s in run.state.inbox] == [{"by": "ana"}]
    signal(run, "approved", {"by": "ana"}, signal_id="same")  # the same payload: a plain repeat
    assert "another payload" not in run.decision.history[-1].data["reason"]


def test_a_payload_s_digest_ignores_the_order_of_its_keys():
    assert signals.payload_digest({"a": 1, "b": [1, 2]})[1] == signals.payload_digest({"b": [1, 2], "a": 1})[1]
    assert signals.payload_digest({"a": 1})[1] != signals.payload_digest({"a": 2})[1]


# -- signals no wait may lose, names no CLI may change -------------------------------------


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
    from flow.client import Client

    paths: list[str] = []

    class Recorder:  # the transport under the client: what path it would send
        def request(self, method, path, **_):
            paths.append(path)
            return {"workflow_id": "wf-1", "name": typed, "signal_id": "s1"}

    monkeypatch.setattr(remote, "api_client", lambda: Client(transport=Recorder()))
    CliRunner().invoke(main, ["signal", "wf-1", typed])
    assert paths, "the command sent nothing"
    for path in paths:
        # What the server is asked for: the path urllib sends (no fragment, no query).
        selector = urllib.request.Request("http://api.example" + path).selector.split("?", 1)[0]
        assert selector.rstrip("/") != "/workflows/wf-1/signals/approved", f"{typed!r} was sent as 'approved'"
