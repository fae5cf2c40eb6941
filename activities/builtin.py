"""General-purpose activities that ship with Libero Flow."""

from __future__ import annotations

import time

from activities.base import BaseActivity


class NoopActivity(BaseActivity):
    """Succeeds at once. Useful as a placeholder and for measuring engine overhead."""

    def do_activity(self) -> str:
        return self.SUCCEEDED


class SleepActivity(BaseActivity):
    """Sleeps ``config.sleep_s`` seconds (default 1), then succeeds."""

    def do_activity(self) -> str:
        time.sleep(float(self.config.get("sleep_s", 1)))
        return self.SUCCEEDED
