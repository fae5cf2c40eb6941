"""Fault injection for the fault-tolerance tests; nothing at all unless configured.

``FLOW_TEST_FAULTS="kill:after-commit:0.2,error:db:0.005"`` makes 20% of the engine's
group commits that owe messages SIGKILL the process right after the commit, and
0.5% of the engine's store operations fail as if the database had dropped the
connection. Points:

- ``after-commit``: the engine committed transitions and has not published yet;
- ``db``: an engine store operation is about to run.

The setting is read by :class:`flow.settings.Settings` like every other; an engine
built without it holds ``None`` and calls nothing in its hot path.
"""

from __future__ import annotations

import logging
import os
import random
import signal

from flow.errors import ConfigurationError, StoreUnavailable

logger = logging.getLogger(__name__)

POINTS = ("after-commit", "db")


class InjectedFault(StoreUnavailable):
    """Raised at an ``error:`` fault point (a database that dropped the connection)."""


class FaultInjector:
    """Fails or kills the process at named points with configured probabilities."""

    def __init__(self, faults: dict[str, tuple[str, float]], *, rng: random.Random | None = None) -> None:
        self.faults = faults
        self.rng = rng or random.Random()

    @classmethod
    def parse(cls, spec: str | None) -> FaultInjector | None:
        """``kind:point:probability,...`` -> an injector, or None when ``spec`` is empty."""
        faults = {}
        for item in filter(None, (part.strip() for part in (spec or "").split(","))):
            try:
                kind, point, probability = item.split(":")
                chance = float(probability)
            except ValueError:
                raise ConfigurationError(f"FLOW_TEST_FAULTS: {item!r} is not kind:point:probability") from None
            if kind not in ("kill", "error") or point not in POINTS or not 0 <= chance <= 1:
                raise ConfigurationError(
                    f"FLOW_TEST_FAULTS: {item!r}: kind is kill or error, point one of {', '.join(POINTS)}, "
                    "probability between 0 and 1"
                )
            faults[point] = (kind, chance)
        return cls(faults) if faults else None

    def maybe(self, point: str) -> None:
        """Maybe fail here."""
        fault = self.faults.get(point)
        if fault is None or self.rng.random() >= fault[1]:
            return
        if fault[0] == "kill":
            logger.critical("fault injected: SIGKILL at %s", point)
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"fault injected at {point}")
