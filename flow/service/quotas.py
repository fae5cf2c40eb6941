"""Per-namespace quotas on starts (issue 27): workflows in progress at once, and starts
per second; a start past either is refused with :class:`~flow.errors.QuotaExceeded`
(retryable: the API answers 429 with ``Retry-After``, the broker doors deliver the
message again later, a schedule's tick is tried again by the engine's next pass and an
event's owed start after the refusal's ``Retry-After``).

Enforced by :class:`flow.service.starts.Starter`, the one door every start by name passes
(``POST /workflows``, the Dramatiq and AMQP start messages, schedules, event triggers),
on the namespace of the definition started (where the workflow is stored), once the
start is found valid and before anything is stored. A child workflow is not counted
against ``starts_per_s`` nor refused for ``max_running`` (its parent, admitted, is
waiting on it: see README, "Namespaces"); it is counted among the running.

- starts per second: a GCRA (:class:`flow.core.limits.Gcra`) per namespace, with a burst
  of one second's worth, held twice. First in this process's memory: a start it refuses
  is refused without a database round trip, so a flooding namespace costs the database
  at most its rate of statements per process, which is what keeps the others' starts
  fast. Then, for a start it admits, in the namespace's row of ``namespace_rates``,
  shared by every process of the deployment (the API's, the engines', the workers'):
  one atomic statement (:func:`flow.persistence.namespaces.take_start`), so that N
  processes together admit the rate, not N times it. Its clock is each process's wall
  clock: hosts whose clocks are ``d`` seconds apart may admit ``d`` seconds' worth more.
  A start the shared row refuses has spent this process's token too (so a flood's
  refusals stay local); a start admitted and then not stored (the engines' backlog full, RabbitMQ blocked)
  has spent its token;
- running workflows: a count over the index ``workflows_namespace_status`` at each start
  (only for a namespace that has this quota). An admission check, not a slot: starts
  that race each other may pass the bound by as many as they are.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import peewee

from flow.core import namespaces
from flow.core.limits import Gcra
from flow.core.namespaces import TokensFile
from flow.errors import ConfigurationError, QuotaExceeded
from flow.persistence.namespaces import running, take_start


class NamespaceQuotas:
    """Admits or refuses a namespace's starts (see the module's docstring)."""

    def __init__(
        self, tokens: TokensFile, database: peewee.Database, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.tokens = tokens
        self.database = database
        #: The wall clock (seconds since the Unix epoch): the shared row is moved by every
        #: process's, so each must read the same kind of time.
        self.clock = clock
        self._lock = threading.Lock()
        #: namespace -> the local GCRA's theoretical arrival time.
        self._tat: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<NamespaceQuotas {sorted(self.tokens.quotas)}>"

    def admit(self, namespace: str) -> None:
        """Take one start of ``namespace``'s quota, or raise :class:`QuotaExceeded`."""
        quota = self.tokens.quota(namespace)
        if quota.max_running is not None:
            count = running(self.database, namespace)
            if count >= quota.max_running:
                raise QuotaExceeded(
                    f"namespace {namespace!r} has {count} workflows in progress, its quota is {quota.max_running}",
                    retry_after_s=1,
                )
        if quota.starts_per_s is not None:
            self._take(namespace, quota.starts_per_s)

    def _take(self, namespace: str, per_s: float) -> None:
        rate = Gcra(per_s, burst=max(1.0, per_s))  # one second's worth
        now = self.clock()
        with self._lock:
            tat = self._tat.get(namespace)
            taken = rate.take(tat, now)
            if taken is None:
                raise _over(namespace, per_s, rate.wait_s(tat, now))
            # Spent here even if the shared row refuses: this process then asks the
            # database at most ``per_s`` times a second for a flooding namespace.
            self._tat[namespace] = taken
        wait = take_start(self.database, namespace, rate, now)  # outside the lock: others' starts go on
        if wait is not None:
            raise _over(namespace, per_s, wait)


def _over(namespace: str, per_s: float, wait_s: float) -> QuotaExceeded:
    return QuotaExceeded(
        f"namespace {namespace!r} is over its quota of {per_s:g} starts per second",
        retry_after_s=max(1, math.ceil(wait_s)),
    )


def read_tokens_file(path: str | None) -> TokensFile:
    """The tokens and quotas of ``FLOW_TOKENS_FILE`` (none when unset); read by every
    process that starts workflows or answers the API, once, when it is built."""
    if not path:
        return TokensFile()
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigurationError(f"FLOW_TOKENS_FILE={path!r} cannot be read: {e.strerror}") from e
    return namespaces.parse_tokens_file(text, source=path)


__all__ = ["NamespaceQuotas", "read_tokens_file"]
