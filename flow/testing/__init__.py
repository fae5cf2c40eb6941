"""Real services and real processes for tests and benchmarks of Libero Flow.

Like ``dramatiq.brokers.stub`` or ``temporalio.testing``, this is part of the
package so that anything that exercises a deployment — this repository's test
suite, its benchmarks (``bench/``), and a user's own tests of their activities —
shares one harness instead of copying it:

- :mod:`flow.testing.services`: a PostgreSQL database and a RabbitMQ queue prefix of
  one's own, removed afterwards; a check that both services answer.
- :mod:`flow.testing.processes`: the API, engines and workers as real OS processes,
  each in its own process group and logging to its own file.
- :mod:`flow.testing.cluster`: such processes supervised (restarted when they die,
  like compose's ``restart: unless-stopped``), and a checker of the invariants of
  docs/design.md that reads the database after a run.
- :mod:`flow.testing.definitions`: sample workflow definitions covering each way a
  workflow ends, and the settings of an embedded Libero Flow that runs them.
- :mod:`flow.testing.sampling`: a sampler of how high a count per key went while
  something ran (a limit's holders).
- :mod:`flow.testing.proxy`: a TCP fault proxy between a component and PostgreSQL or
  RabbitMQ (latency, bandwidth, black holes, resets, partitions), switched during a test.
- :mod:`flow.testing.activities`: activities that fail, refuse or kill their process
  on purpose (found only where ``FLOW_ACTIVITY_PACKAGES`` names them).

Nothing here is imported by the engine, the worker or the API.
"""

from flow.testing.cluster import Cluster, check_settled
from flow.testing.definitions import (
    ACTIVITY_PACKAGE,
    EXPECTED_STATUS,
    embedded_env,
    sample_definitions,
    write_definitions,
)
from flow.testing.processes import (
    ROOT,
    VENV_BIN,
    Processes,
    child_pids,
    die_with_parent,
    flow_up,
    flow_up_process,
    free_port,
    kill_on_sigterm,
    migrate,
    unhandled_errors,
    wait_http,
)
from flow.testing.proxy import FaultProxy
from flow.testing.services import (
    AMQP_URL,
    PG_DSN,
    ServicesUnavailable,
    check_services,
    new_database,
    new_queue_prefix,
    query,
    queue_consumers,
    queue_depth,
)

__all__ = [
    "ACTIVITY_PACKAGE",
    "AMQP_URL",
    "EXPECTED_STATUS",
    "PG_DSN",
    "ROOT",
    "VENV_BIN",
    "Cluster",
    "FaultProxy",
    "Processes",
    "ServicesUnavailable",
    "check_services",
    "check_settled",
    "child_pids",
    "die_with_parent",
    "embedded_env",
    "flow_up",
    "flow_up_process",
    "free_port",
    "kill_on_sigterm",
    "migrate",
    "new_database",
    "new_queue_prefix",
    "query",
    "queue_consumers",
    "queue_depth",
    "sample_definitions",
    "unhandled_errors",
    "wait_http",
    "write_definitions",
]
