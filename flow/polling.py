"""The one poll-until loop: call a check until it answers, or give up after a while.

Everything that waits on state someone else changes uses it: the CLI watching a
workflow, :meth:`flow.process.embedded.EmbeddedFlow.wait`, the test suite's ``wait_for``, the
benchmark's drivers and :func:`flow.testing.wait_http`. Waiting on a condition (and
never on a fixed sleep) is what keeps those correct on a busy machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from flow.errors import PollTimeout

T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout_s: float | None,
    every_s: float = 0.05,
    what: str = "",
) -> T:
    """Call ``check`` every ``every_s`` seconds until it returns something truthy; return that.

    ``check`` is always called at least once, and once more after the deadline, so a
    slow machine that overslept still sees a condition that has come true. After
    ``timeout_s`` (``None``: never) raise :class:`PollTimeout`, which carries the
    last value ``check`` returned.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if deadline is not None and time.monotonic() >= deadline:
            raise PollTimeout(what or getattr(check, "__name__", repr(check)), timeout_s or 0.0, value)
        time.sleep(every_s)
