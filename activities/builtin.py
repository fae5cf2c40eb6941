"""General-purpose activities that ship with Libero Flow."""

from __future__ import annotations

import time

from activities.base import ActivityCancelled, BaseActivity


class NoopActivity(BaseActivity):
    """Succeeds at once. Useful as a placeholder and for measuring engine overhead."""

    def do_activity(self) -> str:
        return self.SUCCEEDED


class SleepActivity(BaseActivity):
    """Sleeps ``config.sleep_s`` seconds (default 1), then succeeds.

    In slices, so that a cancel stops it at once, and with a heartbeat per second slept
    (none for a sleep under a second), so that ``timeouts.heartbeat_s`` applies to it.
    """

    def do_activity(self) -> str:
        total = float(self.config.get("sleep_s", 1))
        started = time.monotonic()
        beats = 0
        while (left := total - (time.monotonic() - started)) > 0:
            if self.cancelled:
                raise ActivityCancelled(f"cancelled after {total - left:.1f} of {total} s")
            time.sleep(min(left, 0.25))
            slept = time.monotonic() - started
            if int(slept) > beats and slept < total:
                beats = int(slept)
                self.heartbeat({"slept_s": beats})
        return self.SUCCEEDED
