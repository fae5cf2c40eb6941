"""Callback tokens: a waiting step's single-use address for a third party (Step
Functions' ``waitForTaskToken``), ``POST /signals/{token}``.

A token names one wait step of one run of one workflow, in the clear, and carries an
HMAC-SHA256 of that name under the deployment's secret, so that no table maps tokens
to steps and only a holder of the secret can make one::

    cb1.<base64url of "<workflow id>:<position>:<run>">.<base64url of the 32-byte HMAC>

- *Unguessable*: forging one means forging an HMAC-SHA256 (256-bit key).
- *Fresh per run*: the run is signed in, so a retry from failure gives a wait that runs
  again a new token, and the old one answers 410.
- *Single-use*: its signal's id is derived from the step it names, so every POST of it
  (concurrent ones too) is one signal to the engine, which records a signal id once,
  and takes a token's signal only for its step, in its run, while it has not ended
  (:mod:`flow.core.kinds.wait`).
- *One spelling*: a token is read only if it is exactly what :meth:`CallbackTokens.token`
  writes (base64 has other spellings of the same bytes).

The secret is ``FLOW_SECRET_KEY``, else the one ``flow migrate`` generated into the
database (``flow_meta``, migration 0012); API and engines read the same one. Changing
it makes every token given out so far unknown (404). The core never sees it: the
engine adds the tokens to what an attempt is handed (:meth:`CallbackTokens.pending`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from typing import Any

from flow.core.kinds.wait import waits_for
from flow.core.state import ActivityState, WorkflowState

#: Version prefix of the format above.
PREFIX = "cb1."
#: Longest token read: a workflow id has at most 36 characters, so a real token is
#: about 130; anything much longer is not one and is refused before any work.
MAX_TOKEN_CHARS = 256
#: Shortest ``FLOW_SECRET_KEY``, in characters.
MIN_SECRET_CHARS = 32
#: Signal ids of callback signals are name-based UUIDs in this namespace.
NAMESPACE = uuid.UUID("6f1c2b8e-93d4-4c53-9a3e-5a0d7c2f41b9")
#: What the outputs handed to activities hold for a wait that has not ended.
OUTPUT_KEY = "callback_token"

_SHAPE = re.compile(r"cb1\.([A-Za-z0-9_-]{4,160})\.([A-Za-z0-9_-]{43})\Z")
#: Anything shaped like a token in a text, whole or cut short after its name: what
#: :func:`redact` hides. Loose on purpose (a log line may cut a token at any length).
_IN_TEXT = re.compile(r"(cb1\.[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+")
#: What stands for a token's signature in a redacted text.
REDACTED = "[redacted]"


@dataclass(frozen=True)
class CallbackTarget:
    """The step a token names: the wait at ``position`` of ``workflow_id``, in ``run``."""

    workflow_id: str
    position: int
    run: int

    @property
    def signal_id(self) -> str:
        """The id of this step's callback signal: the same for every POST of its token."""
        return str(uuid.uuid5(NAMESPACE, f"{self.workflow_id}:{self.position}:{self.run}"))


class CallbackTokens:
    """Makes and reads the tokens of one deployment's secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a callback token secret needs at least 16 bytes")
        # A key of its own, so that the secret may sign other things one day.
        self._key = hmac.new(secret, b"libero-flow callback token v1", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "<CallbackTokens>"  # never the key

    def token(self, workflow_id: str, position: int, run: int) -> str:
        """The token of the wait at ``position`` of ``workflow_id`` in ``run``."""
        clear = f"{workflow_id}:{position}:{run}".encode()
        return PREFIX + _b64(clear) + "." + _b64(self._mac(clear))

    def read(self, token: Any) -> CallbackTarget | None:
        """The step ``token`` names; None for anything this deployment did not write
        (malformed, forged, another secret's): one answer for all of them."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            return None
        match = _SHAPE.match(token)
        if match is None:
            return None
        try:
            clear = base64.urlsafe_b64decode(match[1] + "=" * (-len(match[1]) % 4))
        except ValueError:  # binascii.Error: a length no base64 has
            return None
        # Constant time: how long the comparison takes says nothing of how much matched.
        if not hmac.compare_digest(_b64(self._mac(clear)), match[2]) or _b64(clear) != match[1]:
            return None
        try:
            workflow_id, position, run = clear.decode().rsplit(":", 2)
        except (UnicodeDecodeError, ValueError):  # pragma: no cover - signed, so written here
            return None
        if not (position.isdigit() and run.isdigit()):  # pragma: no cover - likewise
            return None
        return CallbackTarget(workflow_id, int(position), int(run))

    def of(self, state: WorkflowState, step: ActivityState) -> str | None:
        """The token of ``step`` of ``state``, while it is a wait that has not ended in a
        running workflow; None otherwise."""
        if waits_for(step) is None or step.status.ended or state.status.ended:
            return None
        return self.token(state.id, step.position, state.run)

    def pending(self, state: WorkflowState) -> list[tuple[int, str, Any]]:
        """``{"callback_token": ...}`` for each wait that has not ended, by position and
        id: what the activities of ``state`` see as its output (:class:`flow.wire.attempts.Outputs`)."""
        if state.status.ended:
            return []
        return [
            (a.position, a.id, {OUTPUT_KEY: token})
            for a in state.definition_activities
            if waits_for(a) is not None and (token := self.of(state, a)) is not None
        ]

    def _mac(self, clear: bytes) -> bytes:
        return hmac.new(self._key, clear, hashlib.sha256).digest()


def redact(text: str) -> str:
    """``text`` with the signature of every callback token in it replaced by
    :data:`REDACTED`: what every log line goes through (:mod:`flow.process.logs`). The
    name part stays (it says which workflow, step and run, as the token itself does in
    the clear), so a line still tells which wait it was about; without its signature a
    token delivers nothing."""
    if PREFIX not in text:
        return text
    return _IN_TEXT.sub(rf"\1.{REDACTED}", text)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


__all__ = ["MAX_TOKEN_CHARS", "OUTPUT_KEY", "PREFIX", "REDACTED", "CallbackTarget", "CallbackTokens", "redact"]
