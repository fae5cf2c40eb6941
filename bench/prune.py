"""The ``prune`` case: ``flow prune`` deleting 100,000 ended workflows (quick: 20,000)
while 8 clients read other workflows through the API, to show what retention costs the
API and how fast it goes.

Seeded in bulk: the workflows to prune ended 30 days ago, each with 10 activities and
22 history entries (what a finished 10-step sequence has); 10,000 (quick: 5,000) more
ended just now, and those are what the clients GET. The GETs' latency is measured for
as long as the prune runs, and for the same kind of load before it.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from typing import Any

from bench.harness import Bench, load, random_workflow, seed_ended_workflows
from flow.clock import utcnow
from flow.testing import VENV_BIN

#: History entries per seeded workflow: start, 10 schedules, 10 results, the end.
EVENTS = 22


def seed(b: Bench, *, kept: int, pruned: int) -> None:
    seed_ended_workflows(b, kept)
    seed_ended_workflows(b, pruned, first=kept + 1, finished_at=utcnow() - timedelta(days=30))
    # The other 9 activities and the history, copied server-side from the first activity.
    b.sql(
        "INSERT INTO activities (workflow_id, position, name, independent, required, config, retry, timeouts, "
        "status, attempt, attempts_before, output, error, scheduled_at, started_at, finished_at) "
        "SELECT workflow_id, p, name, independent, required, config, retry, timeouts, status, attempt, "
        "attempts_before, output, error, scheduled_at, started_at, finished_at "
        "FROM activities, generate_series(1, 9) AS p WHERE position = 0"
    )
    b.sql(
        "INSERT INTO events (workflow_id, position, type, data, occurred_at) "
        'SELECT id, mod(n, 10), \'activity-result\', \'{"attempt":1,"outcome":"SUCCEEDED"}\', finished_at '
        "FROM workflows, generate_series(1, %s) AS n",
        (EVENTS,),
    )
    b.sql("ANALYZE")


def case_prune(b: Bench, rounds: int) -> dict[str, Any]:
    """Once, whatever ``rounds`` says: the seed is what takes the time, and a prune leaves
    nothing to prune again."""
    kept, pruned = (5_000, 20_000) if b.quick else (10_000, 100_000)
    seed(b, kept=kept, pruned=pruned)
    rows_before = {t: b.sql(f"SELECT count(*) FROM {t}")[0][0] for t in ("workflows", "activities", "events")}
    url = b.start_api()
    kept_workflow = random_workflow(kept)
    load(url, kept_workflow, 3)  # warm-up: every gunicorn worker connected
    before = load(url, kept_workflow, 10 if b.quick else 20)
    prune = subprocess.Popen(
        [str(VENV_BIN / "flow"), "prune", "--older-than", "7", "--json"],
        env={**os.environ, **b.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    during = load(url, kept_workflow, until=lambda: prune.poll() is not None)
    out, err = prune.communicate()
    assert prune.returncode == 0, err
    summary = json.loads(out)
    rows_after = {t: b.sql(f"SELECT count(*) FROM {t}")[0][0] for t in rows_before}
    assert summary["workflows"] == pruned and rows_after["workflows"] == kept, (summary, rows_after)
    b.stop_all()
    return {
        "pruned": pruned,
        "kept": kept,
        "rows_before": rows_before,
        "rows_after": rows_after,
        "prune_s": summary["seconds"],
        "workflows_per_s": pruned / summary["seconds"],
        "rows_per_s": sum(rows_before[t] - rows_after[t] for t in rows_before) / summary["seconds"],
        "get_before": before,
        "get_during": during,
        "p99_ratio": during["p99_ms"] / before["p99_ms"],
    }


def report(p: dict[str, Any]) -> list[str]:
    """The case's lines in ``bench/results/README.md``."""
    rows = p["rows_before"]
    return [
        f"## Retention: `flow prune` of {p['pruned']:,} ended workflows while the API serves (one run, not rounds)",
        "",
        f"{rows['workflows']:,} workflows stored ({rows['activities']:,} activities, {rows['events']:,} history "
        f"entries); {p['pruned']:,} of them ended 30 days ago. `flow prune --older-than 7` deleted them in "
        f"{p['prune_s']:.1f} s: {p['workflows_per_s']:,.0f} workflows/s ({p['rows_per_s']:,.0f} rows/s), 500 per "
        "transaction. Meanwhile 8 clients GET `/workflows/{id}` of the others (gunicorn, 4 workers):",
        "",
        "| GET /workflows/{id} | requests/s | p50 ms | p99 ms | slowest ms |",
        "|---|---|---|---|---|",
        *(
            f"| {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.0f} |"
            for label, r in (("before the prune", p["get_before"]), ("during the prune", p["get_during"]))
        ),
        "",
        f"p99 during the prune: {p['p99_ratio']:.2f}x the p99 before it.",
        "",
    ]
