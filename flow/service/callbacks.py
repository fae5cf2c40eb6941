"""The callback door: a third party ends a wait with the wait's callback token
(docs/design.md, "Callback tokens"), by ``POST /signals/{token}`` or by a
``flow.signal_workflow`` message that carries the token."""

from __future__ import annotations

import functools
import json
from typing import Any

from flow.core.callback_tokens import CallbackTarget, CallbackTokens
from flow.core.kinds import wait
from flow.core.vocabulary import ActivityStatus
from flow.errors import CallbackTokenSpent, InboxFull, StoreUnavailable, UnknownCallbackToken, WorkflowNotFound
from flow.persistence.store import Store
from flow.service.checks import check_payload
from flow.service.senders import Senders
from flow.settings import Settings
from flow.wire import messages


class CallbackDoor:
    """Reads callback tokens and sends the signal of the wait one names."""

    def __init__(self, settings: Settings, store: Store, senders: Senders) -> None:
        self.settings = settings
        self.store = store
        self.senders = senders

    def __repr__(self) -> str:
        return f"<CallbackDoor {self.store!r}>"

    @functools.cached_property
    def tokens(self) -> CallbackTokens:
        """This deployment's callback tokens: signed with ``FLOW_SECRET_KEY``, else with the
        secret ``flow migrate`` stored (read once, when first needed)."""
        secret = self.settings.secret_key or self.store.secret()
        if not secret:
            raise StoreUnavailable("the database has no callback token secret yet: run `flow migrate`")
        return CallbackTokens(secret.encode())

    def target(self, token: str) -> CallbackTarget:
        """The wait ``token`` names; :class:`UnknownCallbackToken` if it is not a token of ours."""
        target = self.tokens.read(token)
        if target is None:
            raise UnknownCallbackToken()
        return target

    def send(self, target: CallbackTarget, payload: Any) -> str:
        """Send the signal of a callback token to the wait it names, for that wait in that
        run only; the signal's name. Every send of one token is the same signal (its id is
        the step's), so the engine takes it once, however many are sent, concurrently or
        not. :class:`CallbackTokenSpent` once the wait or its workflow has ended."""
        check_payload("$.payload", payload, max_bytes=self.settings.max_payload_bytes)
        try:
            state = self.store.get(target.workflow_id).state
        except WorkflowNotFound:
            raise CallbackTokenSpent("the workflow of this callback token no longer exists") from None
        step = state.activity(target.position)
        signal = wait.waits_for(step) if step is not None else None
        if step is None or signal is None:
            raise UnknownCallbackToken()
        if state.status.ended:
            raise CallbackTokenSpent(f"workflow {state.id} is {state.status}: its callback tokens are spent")
        if target.run != state.run:
            raise CallbackTokenSpent(f"this token is of run {target.run}; workflow {state.id} is on run {state.run}")
        if step.status.ended:
            raise CallbackTokenSpent(f"wait {step.id} has ended ({step.status}): its callback token is spent")
        if step.status is not ActivityStatus.WAITING:  # kept for its wait, so bounded like any kept signal
            kept, count, seen, _ = self.store.inbox_of(state.id, target.signal_id)
            size = len(json.dumps(payload))
            full = None if seen else wait.inbox_full(self.settings.max_inbox_bytes, kept, size, count)
            if full is not None:
                raise InboxFull(f"workflow {state.id}: {full}")
        self.senders.send(
            messages.SignalWorkflow(
                workflow_id=state.id,
                name=signal,
                signal_id=target.signal_id,
                payload=payload,
                position=target.position,
                run=target.run,
            )
        )
        return signal
