"""The ``limits`` case: what a concurrency limit costs, and whether it is fair (issue 23's
targets).

- **Per-step cost**: 10-step sequences (``Seq10``) against the same sequences whose every
  step has a concurrency limit keyed by a tenant, high enough never to make a step wait
  for a slot (``Seq10Limited`` in :mod:`bench.harness`, 64 per tenant: at most 16 hold one): what the limit adds is,
  on PostgreSQL, each step let in within the commit that queues it — the limit's lock and
  count in that commit, the engine's second outcome (docs/design.md, "Let in at once").
  Target: per-step p50 within 1.2x at 16 in flight.
- **Fairness**: a small tenant's 10 workflows (``Tenant``: one step limited to 2 at once
  per tenant) started alone, then again while a big tenant has 5,000 (quick: 1,000)
  queued on the same limit: the p99 from each small workflow's start to its step's
  ``Scheduled``. Target: within 2x of alone.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import Bench, median, pct
from flow.core.state import ActivityStatus
from flow.persistence.models import ActivityRecord, WorkflowRecord

INFLIGHT = 16
SMALL = 10
TARGET_COST = 1.2
TARGET_FAIRNESS = 2.0
#: The per-step work compared with and without a limit (``Bench.workflows``' figures).
PER_STEP = ("pg_xacts_per_step", "pg_statements_per_step", "pg_rows_written_per_step", "engine_cpu_us_per_step")


def case_limits(b: Bench, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    b.start_flow()
    total = 32 if b.quick else 64
    # Alternated, so that a busy moment of a shared machine falls on both.
    plain, limited = [], []
    for _ in range(rounds):
        plain.append(b.workflows("Seq10", INFLIGHT, total))
        limited.append(b.workflows("Seq10Limited", INFLIGHT, total, input_data={"tenant": "t0"}))
    out["plain_ms"] = median([r["per_step_ms_p50"] for r in plain])
    out["limited_ms"] = median([r["per_step_ms_p50"] for r in limited])
    out["cost_ratio"] = out["limited_ms"] / out["plain_ms"]
    # What a limit adds per step, the machine aside: database work and the engine's CPU.
    for label, runs in (("plain", plain), ("limited", limited)):
        for figure in PER_STEP:
            values = [r[figure] for r in runs if r.get(figure) is not None]
            out[f"{label}_{figure}"] = median(values) if values else None
    big = 1000 if b.quick else 5000
    out["alone_p99_ms"] = _small_tenant_p99(b, "alone")
    flood = [b.service.start("Tenant", {"tenant": "big", "n": n})[0].id for n in range(big)]
    # The small tenant comes once the flood waits on the limit (every big workflow started:
    # its step queued or beyond), so what is measured is the limit's fairness, not the
    # engine's backlog of starts.
    b.wait(
        lambda: (
            ActivityRecord.select()
            .where(ActivityRecord.workflow.in_(flood) & (ActivityRecord.status != ActivityStatus.PENDING))
            .count()
            == big
        )
    )
    out["flooded_p99_ms"] = _small_tenant_p99(b, "beside")
    out["big"] = big
    out["fairness_ratio"] = out["flooded_p99_ms"] / out["alone_p99_ms"]
    b.stop_all()
    return out


def _small_tenant_p99(b: Bench, label: str) -> float:
    """The p99, in ms, from a small tenant's workflow's start to its step's ``Scheduled``."""
    tenant = f"small-{label}-{time.time_ns()}"
    ids = [b.service.start("Tenant", {"tenant": tenant, "n": n})[0].id for n in range(SMALL)]

    def scheduled() -> bool:
        rows = ActivityRecord.select().where(
            ActivityRecord.workflow.in_(ids) & (ActivityRecord.status == ActivityStatus.SUCCEEDED)
        )
        return rows.count() == len(ids)

    b.wait(scheduled)
    created = {w.id: w.created_at for w in WorkflowRecord.select().where(WorkflowRecord.id.in_(ids))}
    firsts = []
    for a in ActivityRecord.select().where(ActivityRecord.workflow.in_(ids)):
        # scheduled_at of the last attempt: when it was let in and sent (its first, here).
        firsts.append((a.started_at or a.scheduled_at) - created[a.workflow_id])
    return pct([f.total_seconds() * 1000 for f in firsts], 0.99)


def report(results: dict[str, Any]) -> list[str]:
    """The case's lines in ``bench/results/README.md``."""
    r = results
    cost = "met" if r["cost_ratio"] <= TARGET_COST else "missed"
    fair = "met" if r["fairness_ratio"] <= TARGET_FAIRNESS else "missed"
    return [
        "## Concurrency limits",
        "",
        f"- Per-step p50 at {INFLIGHT} in flight: 10-step sequences {r['plain_ms']:.2f} ms; with a keyed limit on "
        f"every step (never full) {r['limited_ms']:.2f} ms; {r['cost_ratio']:.2f}x (target <= {TARGET_COST}x: {cost})",
        f"- A small tenant's {SMALL} workflows, start to first activity, p99: alone {r['alone_p99_ms']:.1f} ms; "
        f"while a big tenant has {r['big']} queued on the same limit {r['flooded_p99_ms']:.1f} ms; "
        f"{r['fairness_ratio']:.2f}x (target <= {TARGET_FAIRNESS}x: {fair})",
        "- Work per step, without a limit -> with: "
        + "; ".join(f"{f} {r.get('plain_' + f)} -> {r.get('limited_' + f)}" for f in PER_STEP),
        "",
    ]
