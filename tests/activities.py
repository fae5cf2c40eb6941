"""Activities for the tests only (loaded with FLOW_ACTIVITY_PACKAGES=tests.activities)."""

from __future__ import annotations

import os

from activities.base import BaseActivity


class FlakyActivity(BaseActivity):
    """Fails temporarily until attempt ``config.succeed_on_attempt`` (default 2)."""

    def do_activity(self) -> str:
        if self.attempt < int(self.config.get("succeed_on_attempt", 2)):
            self.error = f"flaky on attempt {self.attempt}"
            return self.TEMPORARY_FAILURE
        self.output = {"attempt": self.attempt}
        return self.SUCCEEDED


class BrokenActivity(BaseActivity):
    """Raises on every attempt."""

    def do_activity(self) -> str:
        raise RuntimeError("broken on purpose")


class RefusingActivity(BaseActivity):
    """Fails permanently at once."""

    def do_activity(self) -> str:
        self.error = "refused on purpose"
        return self.PERMANENT_FAILURE


class EchoActivity(BaseActivity):
    """Outputs its input, config, attempt and the outputs it was handed."""

    def do_activity(self) -> str:
        self.output = {
            "input_data": dict(self.input_data),
            "config": {k: v for k, v in self.config.items() if k != "retry"},
            "outputs": dict(self.outputs),
            "pid": os.getpid(),
        }
        return self.SUCCEEDED


class KillerActivity(BaseActivity):
    """Kills the process running it, every time: a poison message."""

    def do_activity(self) -> str:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        return self.SUCCEEDED  # never reached


class SpinActivity(BaseActivity):
    """Busy for ``config.spin_s`` seconds in short naps, so a timeout can interrupt it."""

    def do_activity(self) -> str:
        import time

        deadline = time.monotonic() + float(self.config.get("spin_s", 5))
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return self.SUCCEEDED


class BigOutputActivity(BaseActivity):
    """Outputs ``config.size`` bytes."""

    def do_activity(self) -> str:
        self.output = "x" * int(self.config.get("size", 1_000_000))
        return self.SUCCEEDED
