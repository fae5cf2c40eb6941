"""What :mod:`flow.testing` reads from a process's log."""

from __future__ import annotations

from flow.testing import unhandled_errors

ACTIVITY_RAISED = """\
2026-11-30 00:02:15,116 WARNING activities.BrokenActivity do_activity raised
Traceback (most recent call last):
  File "flow/testing/activities.py", line 19, in do_activity
RuntimeError: broken on purpose [workflow_id=w activity=0:BrokenActivity attempt=2]
"""
UNHANDLED = """\
2026-11-30 00:02:16,001 ERROR   api.errors unexpected error
Traceback (most recent call last):
  File "api/resources/workflows.py", line 80, in on_post
flow.errors.ConcurrentUpdate: raced
"""


def test_an_activity_that_raised_is_not_an_unhandled_error():
    assert unhandled_errors(ACTIVITY_RAISED * 3) == 0


def test_every_other_traceback_is_one():
    assert unhandled_errors(UNHANDLED) == 1
    assert unhandled_errors(ACTIVITY_RAISED + UNHANDLED + ACTIVITY_RAISED + UNHANDLED) == 2
    assert unhandled_errors("Traceback (most recent call last):\n") == 1


def test_the_clusters_supervisor_loop_restarts_a_process_that_exited(tmp_path):
    from types import SimpleNamespace

    from flow.testing.cluster import Cluster
    from tests.conftest import wait_for

    cluster = Cluster(tmp_path, "postgres://unused", "p", {})
    started = []
    (tmp_path / "engine-0.log").write_text("the first run's log")
    cluster.procs = SimpleNamespace(  # type: ignore[assignment]
        procs={"engine-0": SimpleNamespace(poll=lambda: -9)},
        log_dir=tmp_path,
        dramatiq=lambda name, *queues, **options: started.append((name, queues)),
        stop_all=lambda **options: None,
    )
    cluster.supervised["engine-0"] = (("p.engine",), {})
    cluster.restarts["engine-0"] = 0
    cluster._supervisor.start()
    try:
        wait_for(lambda: started)
    finally:
        cluster.stop()
    assert started == [("engine-0", ("p.engine",))] and cluster.restarts == {"engine-0": 1}
    assert (tmp_path / "engine-0.1.log").read_text() == "the first run's log"
    assert not cluster._supervisor.is_alive()
