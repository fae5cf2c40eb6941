"""Activities that fail on purpose, for tests: ``FLOW_ACTIVITY_PACKAGES=flow.testing.activities``
(:data:`flow.testing.definitions.ACTIVITY_PACKAGE`).

They are found only where that variable names this module (docs/design.md,
invariant 8): a deployment that does not ask for them never runs them.
"""

from __future__ import annotations

import os

from activities.base import BaseActivity


class BrokenActivity(BaseActivity):
    """Raises on every attempt."""

    def do_activity(self) -> str:
        raise RuntimeError("broken on purpose")


class RefusingActivity(BaseActivity):
    """Fails permanently at once."""

    def do_activity(self) -> str:
        self.error = "refused on purpose"
        return self.PERMANENT_FAILURE


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


class TracedActivity(BaseActivity):
    """Makes a span of its own with the global tracer, as an instrumented activity would."""

    def do_activity(self) -> str:
        from opentelemetry import trace

        with trace.get_tracer(__name__).start_as_current_span("inside do_activity") as span:
            span.set_attribute("work.attempt", self.attempt)
        return self.SUCCEEDED


class ItemActivity(BaseActivity):
    """Run by a ``map``: fails permanently for an item ``{"fail": true}``, else outputs
    the item doubled (``{"n": 3}`` gives 6)."""

    def do_activity(self) -> str:
        item = self.item if isinstance(self.item, dict) else {}
        if item.get("fail"):
            self.error = f"item {self.index} refused on purpose"
            return self.PERMANENT_FAILURE
        self.output = 2 * int(item.get("n", 0))
        return self.SUCCEEDED


class BeatActivity(BaseActivity):
    """A long job that heartbeats: ``config.steps`` steps of ``config.step_s`` seconds,
    ``heartbeat({"done": n})`` after each, resuming from ``last_heartbeat``.

    ``config.fail_after``: its first attempt fails (temporarily) after that many steps.
    ``config.stall_s``: its first attempt stops beating that long after its first step.
    ``config.pid_file``: where it writes ``"<pid> <attempt>"`` when it starts (fault tests
    kill that process). It outputs where it resumed from and where it ended.
    """

    def do_activity(self) -> str:
        import time

        steps, step_s = int(self.config.get("steps", 10)), float(self.config.get("step_s", 0.05))
        done = resumed_from = int((self.last_heartbeat or {}).get("done", 0))
        if pid_file := self.config.get("pid_file"):
            with open(pid_file, "a") as f:
                f.write(f"{os.getpid()} {self.attempt}\n")
        while done < steps:
            time.sleep(step_s)
            done += 1
            self.heartbeat({"done": done})
            if self.attempt == 1 and done == 1 and self.config.get("stall_s"):
                time.sleep(float(self.config["stall_s"]))
            if self.attempt == 1 and done == self.config.get("fail_after"):
                self.error = f"failed on purpose after {done} steps"
                return self.TEMPORARY_FAILURE
        self.output = {"resumed_from": resumed_from, "done": done, "attempt": self.attempt}
        return self.SUCCEEDED


class SwitchActivity(BaseActivity):
    """Fails permanently while its config or the workflow's input says ``refuse``; else
    succeeds with its attempt and the input (the rerun tests change one or the other)."""

    def do_activity(self) -> str:
        if self.config.get("refuse") or self.input_data.get("refuse"):
            self.error = "refused by its switch"
            return self.PERMANENT_FAILURE
        self.output = {"attempt": self.attempt, "input": dict(self.input_data)}
        return self.SUCCEEDED


class MarkedUndo(BaseActivity):
    """An undo that leaves marks for fault tests to read, as the worker saw it: the line
    ``"<workflow id> <undone activity> <attempt> <pid> start"`` in ``config.marker_file``
    when an attempt starts and ``"... end"`` when it succeeds; between them
    ``config.steps`` steps of ``config.step_s`` seconds, heartbeating after each (so a
    worker killed mid-undo is noticed by a heartbeat timeout). Appends of one short line
    are atomic, so the workers may share the file."""

    def do_activity(self) -> str:
        import time

        undone = (self.compensating or {}).get("activity", "?")
        mark = f"{self.workflow_id} {undone} {self.attempt} {os.getpid()}"
        with open(self.config["marker_file"], "a") as f:
            f.write(f"{mark} start\n")
        for done in range(int(self.config.get("steps", 10))):
            time.sleep(float(self.config.get("step_s", 0.1)))
            self.heartbeat({"done": done + 1})
        with open(self.config["marker_file"], "a") as f:
            f.write(f"{mark} end\n")
        self.output = {"undid": undone, "attempt": self.attempt}
        return self.SUCCEEDED
