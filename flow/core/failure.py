"""What an attempt's error says, on one line: the cause a workflow's error and the CLI show.

An attempt's error is whatever the worker recorded: a traceback when ``do_activity()``
raised (:mod:`flow.worker.execution`), the activity's own ``self.error``, or a timeout's
text. Pure: it reads the text of the event, nothing else.
"""

from __future__ import annotations

from flow.core.state import ActivityState
from flow.core.vocabulary import Outcome

#: Longest cause kept; a longer one is cut with an ellipsis (the whole text stays on the attempt).
MAX_CAUSE_CHARS = 500

_TRACEBACK = "Traceback (most recent call last):"


def cause(error: str | None) -> str:
    """``error`` on one line: for a traceback, the exception it ends with (``ValueError:
    boom``); otherwise the text with its lines joined. Empty for no error."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    if _TRACEBACK in lines:
        last = len(lines) - 1 - lines[::-1].index(_TRACEBACK)
        frames = [i for i in range(last + 1, len(lines)) if lines[i][:1].isspace()]
        # The exception follows the last frame (indented lines are frames and their code);
        # without one, the last line is the best guess.
        lines = lines[frames[-1] + 1 :] if frames and frames[-1] + 1 < len(lines) else lines[-1:]
    text = " ".join(line.strip() for line in lines)
    return text if len(text) <= MAX_CAUSE_CHARS else text[: MAX_CAUSE_CHARS - 1] + "…"


def required_failure(activity: ActivityState, outcome: Outcome, attempts: int) -> str:
    """The workflow's error when required ``activity`` failed: which one, and its own cause."""
    how = "permanently" if outcome == Outcome.PERMANENT_FAILURE else f"after {attempts} attempt{'s' * (attempts != 1)}"
    why = cause(activity.error) or f"{outcome.value}, with no error given"
    return f"required activity {activity.id} (position {activity.position}) failed {how}: {why}"
