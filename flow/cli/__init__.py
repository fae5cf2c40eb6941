"""The ``flow`` command (``flow = flow.cli:main``).

Embedded (:mod:`flow.cli.embedded`): ``flow run``, ``flow up``. Local
(:mod:`flow.cli.local`): ``flow validate``, ``flow migrate``; ``flow replay`` (:mod:`flow.cli.replay`). Remote, against
``FLOW_API_URL`` (:mod:`flow.cli.remote`): ``flow start [--wait]``, ``status``, ``list``,
``events``, ``cancel``, ``retry``, ``rerun``, ``definitions``, ``flow schedules ...``
(:mod:`flow.cli.schedules`), ``flow limits ...`` (:mod:`flow.cli.limits`), ``flow event
...`` (:mod:`flow.cli.events`) and ``flow batch ...`` (:mod:`flow.cli.batches`). Workers:
``flow worker --pool NAME`` (:mod:`flow.cli.worker`). Tokens: ``flow tokens add|hash``
(:mod:`flow.cli.tokens`). The group (with ``--namespace``), its exit codes and the
helpers they share are in :mod:`flow.cli.app`, whose group imports a command's module
when that command runs (:class:`flow.cli.app.Commands`).
"""

from flow.cli.app import main

__all__ = ["main"]
