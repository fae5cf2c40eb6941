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


# -- a saga (examples/workflows/saga.json): each step that succeeds names its undo ----------


class ChargeCard(BaseActivity):
    """Charges ``input.amount``: outputs the payment (what its undo refunds)."""

    def do_activity(self) -> str:
        self.output = {"payment": f"pay-{self.workflow_id[:8]}", "amount": self.input_data.get("amount", 0)}
        return self.SUCCEEDED


class ReserveStock(BaseActivity):
    """Reserves ``input.sku``: outputs the reservation (what its undo releases)."""

    def do_activity(self) -> str:
        self.output = {"reservation": f"res-{self.workflow_id[:8]}", "sku": self.input_data.get("sku")}
        return self.SUCCEEDED


class Ship(BaseActivity):
    """Ships the order: fails permanently when ``input.address`` is missing, the failure
    that makes the saga undo the charge and the reservation."""

    def do_activity(self) -> str:
        if not self.input_data.get("address"):
            self.error = "no address to ship to"
            return self.PERMANENT_FAILURE
        self.output = {"shipped_to": self.input_data["address"]}
        return self.SUCCEEDED


class _Undo(BaseActivity):
    """An undo: reads what it undoes from ``self.compensating``; fails temporarily on its
    first ``config.fail_attempts`` attempts (default 0), to show that an undo is retried
    by its own policy."""

    undoes = ""

    def do_activity(self) -> str:
        if self.attempt <= int(self.config.get("fail_attempts", 0)):
            self.error = f"{type(self).__name__} unavailable on attempt {self.attempt}"
            return self.TEMPORARY_FAILURE
        done = (self.compensating or {}).get("output") or {}
        self.output = {"undid": done.get(self.undoes), "activity": (self.compensating or {}).get("activity")}
        return self.SUCCEEDED


class RefundPayment(_Undo):
    """The undo of :class:`ChargeCard`: refunds its payment."""

    undoes = "payment"


class ReleaseStock(_Undo):
    """The undo of :class:`ReserveStock`: releases its reservation."""

    undoes = "reservation"


class NotifyOps(BaseActivity):
    """A failure handler: its input is the failure (``failed_activity``, ``error``,
    ``outputs``, ``compensation``); outputs what it would tell ``config.channel``."""

    def do_activity(self) -> str:
        failure = self.input_data
        self.output = {
            "channel": self.config.get("channel", "#ops"),
            "message": f"{failure.get('failed_activity')} failed: {failure.get('error')} "
            f"(compensation {failure.get('compensation')})",
        }
        return self.SUCCEEDED


class SetAttributesActivity(BaseActivity):
    """Sets the workflow's search attributes named in ``config.attributes`` (a JSON
    object: strings, numbers, booleans) with :meth:`~BaseActivity.set_attribute`, then
    succeeds: shows attributes that change as a workflow goes on."""

    def do_activity(self) -> str:
        for name, value in dict(self.config.get("attributes", {})).items():
            self.set_attribute(name, value)
        return self.SUCCEEDED
