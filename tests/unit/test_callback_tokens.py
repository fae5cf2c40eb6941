"""Callback tokens: their format (flow.core.callback_tokens), the rules of a signal sent with
one (decided by the pure ``decide()``), what activities see, and a wait's ``choices``."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest

from flow.core.callback_tokens import MAX_TOKEN_CHARS, CallbackTarget, CallbackTokens
from flow.core.events import CancelRequested, RetryRequested, SignalReceived, TimerFired
from flow.core.kinds.wait import waits_for
from flow.core.vocabulary import ActivityStatus, HistoryType, Outcome, TimerKind, WorkflowStatus
from flow.persistence import mapping
from flow.persistence.mapping import SIGNAL_COLUMNS, signal_from_row, signal_row
from flow.wire.attempts import AttemptRequest, Outputs
from flow.wire.messages import SignalWorkflow
from tests.unit.test_graph import Run, problems, state_of

S = ActivityStatus
TOKENS = CallbackTokens(b"k" * 32)
WID = "0b0e1f6a-4a6c-4a39-9d8b-1d3c8a2b7f10"
APPROVAL = {"id": "approval", "wait_for": "approved", "timeout_s": 60}


def run_of(*activities: dict[str, Any]) -> Run:
    return Run(state_of(*activities))


def callback(run: Run, position: int, payload: Any = None, *, run_number: int | None = None) -> None:
    """What the engine gets for a POST of the token of the wait at ``position``."""
    target = CallbackTarget(run.state.id, position, run_number or run.state.run)
    event = SignalReceived(
        run._now(), waits_for(run.state.activities[position]) or "x", target.signal_id, payload, position, target.run
    )
    run.decision = run._decide(event)


def types(run: Run) -> list[HistoryType]:
    return [h.type for h in run.decision.history]


# -- the token ------------------------------------------------------------------------


def test_a_token_names_its_step_and_run_and_reads_back():
    token = TOKENS.token(WID, 3, 2)
    assert token.startswith("cb1.") and len(token) < MAX_TOKEN_CHARS
    assert TOKENS.read(token) == CallbackTarget(WID, 3, 2)
    assert TOKENS.token(WID, 3, 3) != token and TOKENS.token(WID, 4, 2) != token


def test_another_secret_reads_no_token_of_ours():
    assert CallbackTokens(b"j" * 32).read(TOKENS.token(WID, 0, 1)) is None


def _swap_last(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(lambda t: _swap_last(t), id="mac changed"),
        pytest.param(lambda t: t.replace(t.split(".")[1], base64.urlsafe_b64encode(b"other:0:1").decode()), id="clear"),
        pytest.param(lambda t: t + "=", id="padding"),
        pytest.param(lambda t: t.upper(), id="case"),
        pytest.param(lambda t: "cb2" + t[3:], id="version"),
        pytest.param(lambda t: t.split(".", 1)[1], id="no prefix"),
        pytest.param(lambda t: t + "A" * MAX_TOKEN_CHARS, id="too long"),
        pytest.param(lambda t: "cb1.abcde." + "A" * 43, id="not base64"),
        pytest.param(lambda t: "cb1.\u00e9\u00e9\u00e9\u00e9." + "A" * 43, id="not ascii"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: None, id="not a string"),
    ],
)
def test_a_forged_or_malformed_token_reads_as_none(forged):
    assert TOKENS.read(forged(TOKENS.token(WID, 1, 1))) is None


def test_a_token_has_one_spelling():
    token = TOKENS.token(WID, 1, 1)
    mac = token.rsplit(".", 1)[1]
    # The last base64 character of 32 bytes carries 2 unused bits: another letter may
    # decode to the same bytes, and must still be refused.
    same_bytes = [
        c for c in "ABCD" if base64.urlsafe_b64decode(mac[:-1] + c + "=") == base64.urlsafe_b64decode(mac + "=")
    ]
    for c in same_bytes:
        if c != mac[-1]:
            assert TOKENS.read(token[:-1] + c) is None


def test_every_post_of_a_token_is_one_signal_id():
    target = TOKENS.read(TOKENS.token(WID, 1, 1))
    assert target is not None and target.signal_id == CallbackTarget(WID, 1, 1).signal_id
    assert CallbackTarget(WID, 1, 2).signal_id != target.signal_id


def test_the_secret_is_never_shown():
    assert "k" * 8 not in repr(TOKENS) and "k" * 8 not in str(vars(TOKENS))
    from flow.settings import Settings

    assert "s3cret" not in repr(Settings(secret_key="s3cret" * 8))


def test_a_short_secret_key_is_refused_naming_the_variable():
    from flow.errors import ConfigurationError
    from flow.settings import Settings

    with pytest.raises(ConfigurationError, match="FLOW_SECRET_KEY"):
        Settings.from_env({"FLOW_SECRET_KEY": "short"})
    assert Settings.from_env({"FLOW_SECRET_KEY": "x" * 32}).secret_key == "x" * 32


# -- what activities and the API see -------------------------------------------------------


def test_activities_before_a_wait_see_its_token_until_it_ends():
    run = run_of({"name": "A"}, APPROVAL, {"name": "B"})
    outputs = Outputs(run.state, TOKENS.pending(run.state))
    token = outputs.for_activity(0)["approval"]["callback_token"]
    assert TOKENS.read(token) == CallbackTarget("wf", 1, 1)
    request = AttemptRequest.of(run.state, 0, 1, reply_to="q", outputs=outputs)
    assert request.outputs == {"approval": {"callback_token": token}}
    run.end("A")
    assert TOKENS.of(run.state, run.activity("approval")) == token  # waiting: the same token
    callback(run, 1, {"ok": True})
    assert TOKENS.pending(run.state) == [] and TOKENS.of(run.state, run.activity("approval")) is None
    assert Outputs(run.state, TOKENS.pending(run.state)).for_activity(2)["approval"] == {"ok": True}


def test_no_token_for_a_step_that_is_not_a_wait_or_an_ended_workflow():
    run = run_of({"name": "A"}, APPROVAL)
    assert TOKENS.of(run.state, run.activity("A")) is None
    run.decision = run._decide(CancelRequested(occurred_at=run._now()))
    assert TOKENS.pending(run.state) == [] and TOKENS.of(run.state, run.activity("approval")) is None


# -- the engine's rules ---------------------------------------------------------------


def test_a_callback_ends_its_wait_with_its_payload():
    run = run_of({"name": "A"}, APPROVAL, {"name": "B"})
    run.end("A")
    callback(run, 1, {"by": "ana"})
    assert run.status("approval") is S.SUCCEEDED and run.activity("approval").output == {"by": "ana"}
    assert run.scheduled() == ["B"]


def test_a_second_callback_of_the_same_token_changes_nothing():
    run = run_of(APPROVAL, {"name": "B"})
    callback(run, 0, "first")
    callback(run, 0, "second")
    assert types(run) == [HistoryType.SIGNAL_RECEIVED, HistoryType.DO_NOTHING]
    assert "already received" in run.decision.history[1].data["reason"]
    assert run.activity("approval").output == "first"


def test_a_callback_goes_to_its_own_step_not_the_first_wait_of_its_name():
    run = run_of(
        {"id": "one", "wait_for": "go", "independent": True}, {"id": "two", "wait_for": "go", "independent": True}
    )
    callback(run, 1, "for two")
    assert (run.status("one"), run.status("two")) == (S.WAITING, S.SUCCEEDED)


def test_a_callback_before_its_wait_is_kept_for_that_wait_only():
    run = run_of({"name": "A"}, {"id": "first", "wait_for": "go"}, {"id": "second", "wait_for": "go"})
    callback(run, 2, "early, for second")
    assert types(run) == [HistoryType.SIGNAL_RECEIVED, HistoryType.KEEP_SIGNAL]
    run.end("A")
    assert run.status("first") is S.WAITING  # the kept signal is not first's
    callback(run, 1, "for first")
    assert run.status("first") is S.SUCCEEDED and run.status("second") is S.SUCCEEDED
    assert run.activity("second").output == "early, for second"
    assert run.state.status is WorkflowStatus.FINISHED


def test_a_callback_after_its_wait_timed_out_is_dropped_not_kept():
    run = run_of(APPROVAL | {"required": False}, {"id": "later", "wait_for": "approved"})
    run.decision = run._decide(TimerFired(TimerKind.WAIT, 0, 1, occurred_at=run._now()))
    assert run.status("approval") is S.FAILED
    callback(run, 0, "too late")
    assert types(run) == [HistoryType.SIGNAL_RECEIVED, HistoryType.DO_NOTHING]
    assert "has ended" in run.decision.history[1].data["reason"]
    assert run.state.inbox == () and run.status("later") is S.WAITING  # not taken by another wait


def test_a_token_of_an_earlier_run_is_dropped_and_the_rerun_takes_its_own():
    run = run_of(APPROVAL)
    run.decision = run._decide(TimerFired(TimerKind.WAIT, 0, 1, occurred_at=run._now()))
    assert run.state.status is WorkflowStatus.FAILED
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    assert run.state.run == 2 and run.status("approval") is S.WAITING
    callback(run, 0, "old", run_number=1)
    assert "run 1" in run.decision.history[-1].data["reason"] and run.status("approval") is S.WAITING
    callback(run, 0, "new")
    assert run.activity("approval").output == "new"


def test_a_callback_kept_in_a_run_that_failed_is_not_taken_by_the_next():
    run = run_of({"name": "A"}, APPROVAL)
    callback(run, 1, "kept in run 1")
    run.end("A", Outcome.PERMANENT_FAILURE)
    assert run.state.status is WorkflowStatus.FAILED
    run.decision = run._decide(RetryRequested(occurred_at=run._now()))
    run.end("A")
    assert run.status("approval") is S.WAITING


def test_a_callback_naming_no_wait_is_dropped():
    run = run_of({"name": "A"}, APPROVAL)
    event = SignalReceived(run._now(), "approved", "sid", None, 0, 1)  # position 0 is an activity
    run.decision = run._decide(event)
    assert "no wait" in run.decision.history[-1].data["reason"]


def test_a_kept_callback_survives_its_signal_row():
    run = run_of({"name": "A"}, APPROVAL)
    callback(run, 1, {"x": 1})
    kept = signal_row(run.state.id, 0, run.state.inbox[0])
    assert (kept["position"], kept["run"], kept["payload"]) == (1, 1, '{"x":1}')
    read = tuple(kept[c.strip()] for c in SIGNAL_COLUMNS.split(","))
    assert signal_from_row(read) == run.state.inbox[0]


def test_the_signal_message_carries_the_step_only_when_it_has_one():
    plain = SignalWorkflow(workflow_id="wf", name="go", signal_id="s")
    assert "position" not in plain.to_kwargs() and "run" not in plain.to_kwargs()
    targeted = replace(plain, position=2, run=1)
    event = SignalWorkflow.from_kwargs(targeted.to_kwargs()).to_event(run_of(APPROVAL).state.created_at)
    assert (event.position, event.run) == (2, 1)


# -- choices ------------------------------------------------------------------------------


def test_a_wait_offers_its_choices_in_its_state():
    run = run_of(APPROVAL | {"choices": ["approve", "reject"]})
    assert run.activity("approval").spec.choices == ("approve", "reject")


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"name": "A", "choices": ["approve", "reject"]}, "$.activities[0].choices"),
        (APPROVAL | {"choices": ["approve"]}, "$.activities[0].choices"),
        (APPROVAL | {"choices": ["approve", "approve"]}, "$.activities[0].choices"),
        (APPROVAL | {"choices": ["approve", ""]}, "$.activities[0].choices[1]"),
        (APPROVAL | {"choices": ["approve", "<script>"]}, "$.activities[0].choices[1]"),
        (APPROVAL | {"choices": ["approve", 1]}, "$.activities[0].choices[1]"),
        (APPROVAL | {"choices": "approve"}, "$.activities[0].choices"),
        (APPROVAL | {"choices": [str(n) for n in range(11)]}, "$.activities[0].choices"),
    ],
)
def test_choices_are_checked_naming_the_json_path(entry, path):
    assert path in [p for p, _ in problems(entry)]


def test_choices_on_a_step_that_is_not_a_wait_say_whose_they_are():
    [(path, message)] = problems({"name": "A", "choices": ["approve", "reject"]})
    assert message == "choices is a wait's (wait_for) answers, offered as buttons"


def test_choices_survive_the_activity_row():
    import json

    step = run_of(APPROVAL | {"choices": ["approve", "reject"]}).activity("approval")
    stored = json.loads(mapping.graph_column(step) or "{}")
    assert mapping._graph_fields(stored)["spec"].choices == ("approve", "reject")
