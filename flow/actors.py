"""Entry point of ``dramatiq flow.actors``: builds the runtime and declares every task.

With no ``--queues`` the process is both engine and activity worker; pass
``--queues flow.engine`` or ``--queues flow.activities`` to split them. Settings
come from the ``FLOW_`` environment variables (see the README).
"""

from __future__ import annotations

import dramatiq

from flow.process.shutdown import GracefulShutdown, ignore_repeated_sigterm

# First: honcho and Dramatiq's master each send SIGTERM, and they may do so while the
# rest of this module (the whole runtime) is still loading.
ignore_repeated_sigterm()

from flow.observability import tracing  # noqa: E402
from flow.observability.metrics import prometheus_middleware  # noqa: E402
from flow.process.logs import configure_logging  # noqa: E402 - after the signal handler
from flow.process.runtime import Runtime  # noqa: E402
from flow.settings import Settings  # noqa: E402

settings = Settings.from_env()
configure_logging(settings)
tracing.configure()  # per process: Dramatiq's CLI imports this module in each worker process
runtime = Runtime.build(settings)
broker = runtime.broker
broker.add_middleware(GracefulShutdown())
if settings.metrics_port:
    # Dramatiq's exporter (a forked process per master) serves every metric written
    # by the worker processes, ours included.
    # Dramatiq runs after_* hooks in reverse order: adding ours first makes it run
    # after the Prometheus middleware has switched prometheus_client to multiprocess.
    broker.add_middleware(runtime.metrics)
    broker.add_middleware(prometheus_middleware())
# Dramatiq's CLI takes the global broker; the tasks are already bound to this one.
dramatiq.set_broker(broker)

start_workflow = runtime.tasks["flow.start_workflow"]
run_activity = runtime.tasks["flow.run_activity"]

__all__ = ["broker", "runtime", "start_workflow", "run_activity"]
