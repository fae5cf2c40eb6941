"""Example activities used by the definitions in ``examples/workflows`` (and the tests)."""

from __future__ import annotations

import os

from activities.base import BaseActivity


class FlakyActivity(BaseActivity):
    """Fails temporarily until attempt ``config.succeed_on_attempt`` (default 2), then
    succeeds with ``{"attempt": n}``: shows the retry policy at work."""

    def do_activity(self) -> str:
        if self.attempt < int(self.config.get("succeed_on_attempt", 2)):
            self.error = f"flaky on attempt {self.attempt}"
            return self.TEMPORARY_FAILURE
        self.output = {"attempt": self.attempt}
        return self.SUCCEEDED


class EchoActivity(BaseActivity):
    """Outputs what it was given: input, config (without ``retry``/``timeouts``), the
    outputs of earlier activities, and the worker's pid (and, run by a ``map``, its item
    and index): shows data between activities."""

    def do_activity(self) -> str:
        self.output = {
            "input_data": dict(self.input_data),
            "config": {k: v for k, v in self.config.items() if k not in ("retry", "timeouts")},
            "outputs": dict(self.outputs),
            "pid": os.getpid(),
        }
        if self.index is not None:  # an item of a map
            self.output.update(item=self.item, index=self.index)
        return self.SUCCEEDED


class SetAttributesActivity(BaseActivity):
    """Sets the workflow's search attributes named in ``config.attributes`` (a JSON
    object: strings, numbers, booleans) with :meth:`~BaseActivity.set_attribute`, then
    succeeds: shows attributes that change as a workflow goes on."""

    def do_activity(self) -> str:
        for name, value in dict(self.config.get("attributes", {})).items():
            self.set_attribute(name, value)
        return self.SUCCEEDED
