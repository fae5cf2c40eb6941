"""A condition failure holding NUL on PostgreSQL, with an engine of its own.

Not in ``test_hostile_input_postgres.py``: the models are bound to one database per
process (:func:`flow.persistence.models.bind`), and there this test's engine ran beside
that module's, on another database. Each rebound the models to its own, the other's
loops then read and renewed leases in a database not theirs, and the two engines took
each other's partitions (same process: each counted the other dead). The workflow,
fenced again and again, never left Pending under load (two busy-core suite runs of two).
"""

from __future__ import annotations

import pytest

from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env, write_definitions

pytestmark = pytest.mark.services


def test_review_a_condition_failure_holding_nul_fails_only_its_activity_on_postgresql(services, tmp_path):
    """Review (fixed): ``abs()`` of a JSON literal holding NUL cannot be evaluated; the fail
    reason quotes the value as is, PostgreSQL refuses the NUL in activities.error and
    events.data, and the engine fails the whole workflow ("the engine cannot handle this
    workflow: ValueError: A string literal cannot contain NUL"), with ``first`` left
    Scheduled and ``last`` Pending, instead of failing the optional activity and going on."""
    from flow.testing import new_database

    body = {
        "name": "NulCondition",
        "activities": [
            {"id": "first", "name": "EchoActivity"},
            {"id": "bad", "name": "EchoActivity", "required": False, "when": 'abs(`"\\u0000"`)'},
            {"id": "last", "name": "EchoActivity"},
        ],
    }
    definitions = write_definitions(tmp_path / "workflows", {"NulCondition": body})
    with new_database() as url:
        settings = Settings.from_env(embedded_env(tmp_path, definitions, FLOW_DATABASE_URL=url), embedded=True)
        with EmbeddedFlow(settings) as flow:
            state = flow.wait(flow.start("NulCondition", {}), timeout_s=20).state
    statuses = {a.id: a.status for a in state.activities}
    # The statuses in the message: a run that has not ended in time says where it stood.
    assert state.status == "Finished", (state.status, state.error, statuses)
    assert statuses == {"first": "Succeeded", "bad": "Failed", "last": "Succeeded"}
