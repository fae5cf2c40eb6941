"""Fault injection for the fault-tolerance tests, off unless ``FLOW_TEST_FAULTS`` is set.

``FLOW_TEST_FAULTS="kill:after-commit:0.2,error:db:0.005"`` makes 20% of the engine's
commits followed by sends SIGKILL the process right after the commit, and 0.5% of
store operations fail as if the database had dropped the connection. Points:

- ``after-commit``: the engine committed a transition and has not published yet;
- ``db``: a store operation is about to run.
"""

from __future__ import annotations

import logging
import os
import random
import signal

logger = logging.getLogger(__name__)


class InjectedFault(Exception):
    """Raised at an ``error:`` fault point."""


def _parse(spec: str) -> dict[str, tuple[str, float]]:
    faults = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, point, probability = item.split(":")
        if kind not in ("kill", "error"):
            raise ValueError(f"FLOW_TEST_FAULTS: unknown fault kind {kind!r} in {item!r}")
        faults[point] = (kind, float(probability))
    return faults


_FAULTS = _parse(os.environ.get("FLOW_TEST_FAULTS", ""))


def inject(point: str) -> None:
    """Maybe fail here, as ``FLOW_TEST_FAULTS`` says; a no-op in normal runs."""
    if not _FAULTS or point not in _FAULTS:
        return
    kind, probability = _FAULTS[point]
    if random.random() >= probability:
        return
    if kind == "kill":
        logger.critical("fault injected: SIGKILL at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fault injected at {point}")
