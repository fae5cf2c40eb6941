"""The per-step cost table of the ``sequential`` case (issue 25): the engine's CPU and
PostgreSQL's work per committed step, for each system and in-flight count. These are the
figures that carry over between machines, where latency and throughput on a 2-core box
(workers, broker and database sharing the cores) hide them."""

from __future__ import annotations

from typing import Any

#: The figures of each row (keys of the harness's results) and how each is printed.
_COLUMNS = (
    ("engine_cpu_us_per_step", ".0f"),
    ("pg_xacts_per_step", ".2f"),
    ("pg_rows_written_per_step", ".1f"),
    ("pg_statements_per_step", ".1f"),
    ("pg_wal_bytes_per_step", ".0f"),
)


def _figure(value: float | None, form: str) -> str:
    return "n/a" if value is None else format(value, form)


def report(seq: dict[str, Any]) -> list[str]:
    lines = [
        "### Per committed step: the engine's CPU and PostgreSQL's work",
        "",
        "| system | in flight | engine CPU µs | transactions | rows written | statements | WAL bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for system in ("floor_bare", "floor", "celery", "libero"):
        for inflight, r in seq.get(system, {}).items():
            cells = [_figure(r.get(key), form) for key, form in _COLUMNS]
            lines.append(f"| {system} | {inflight} | {' | '.join(cells)} |")
    lines += [
        "",
        'Celery\'s "engine" is none (its chain passes from worker to worker); its transactions are the '
        "bench's own record of each chain. Statements need `pg_stat_statements` loaded by the server (n/a "
        "otherwise); WAL bytes are the whole server's.",
        "",
    ]
    return lines
