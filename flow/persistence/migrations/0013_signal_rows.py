"""Signals leave the workflow's row: one row per signal in ``signals``, written when the
signal arrives and when a step takes it (its payload is then deleted: the step's output
holds it), so a commit that does not change the inbox writes none of it. The row of a
taken signal stays, by id and payload digest, so that a repeated send is recognised and
a send of the same key with another payload refused (docs/design.md, "Waiting: sleeps
and signals"). Each workflow's ``inbox`` JSON is moved into rows, then the column goes.
"""

import hashlib
import json


def up(migrator, db):
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS signals ("
        "workflow_id VARCHAR(36) NOT NULL REFERENCES workflows (id) ON DELETE CASCADE, "
        "signal_id VARCHAR(255) NOT NULL, "
        "n INTEGER NOT NULL, "
        "name VARCHAR(128) NOT NULL, "
        "received_at TIMESTAMP NOT NULL, "
        "size INTEGER NOT NULL, "
        "digest VARCHAR(64), "
        "consumed_by INTEGER, "
        "position INTEGER, "
        "run INTEGER, "
        # Last: SQLite reads the columns before a large value without its overflow pages.
        "payload TEXT, "
        "PRIMARY KEY (workflow_id, signal_id))"
    )
    # What the API sums for each signal it is sent (the kept bytes), read from the index
    # alone: not a row, let alone a payload, of the signals kept.
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS signals_kept ON signals (workflow_id, consumed_by, size) WHERE consumed_by IS NULL"
    )
    param = db.param
    columns = "workflow_id, signal_id, n, name, received_at, payload, size, digest, consumed_by, position, run"
    insert = f"INSERT INTO signals ({columns}) VALUES ({', '.join([param] * 11)})"
    rows = db.execute_sql("SELECT id, inbox FROM workflows WHERE inbox IS NOT NULL").fetchall()
    for workflow_id, inbox in rows:
        for n, s in enumerate(json.loads(inbox) if isinstance(inbox, str) else inbox or ()):
            kept = s.get("consumed_by") is None
            payload = s.get("payload")
            size = len(json.dumps(payload)) if kept else 0
            canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest() if kept else None
            received_at = s["received_at"].replace("T", " ").removesuffix("Z")
            db.execute_sql(
                insert,
                (
                    workflow_id,
                    s["id"],
                    n,
                    s["name"],
                    received_at,
                    json.dumps(payload, separators=(",", ":")) if kept else None,
                    size,
                    digest,
                    s.get("consumed_by"),
                    s.get("position"),
                    s.get("run"),
                ),
            )
    db.execute_sql("ALTER TABLE workflows DROP COLUMN inbox")
