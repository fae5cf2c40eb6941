"""CPU per step of the core alone (decide over a 10-step sequence: its start and each step's
result), in this thread: robust to a busy machine, which slows wall time more than CPU."""

import sys
import time

from tests.unit.test_graph import Run, state_of

S0 = state_of(*[{"name": "A", "id": f"A{i}"} for i in range(10)])
IDS = [f"A{i}" for i in range(10)]


def one():
    run = Run(S0)
    for i in IDS:
        run.end(i)
    assert run.state.status.value == "Finished"


N = 300
runs = []
for _ in range(7):
    t = time.thread_time()
    for _ in range(N):
        one()
    runs.append((time.thread_time() - t) / (N * 10) * 1e6)
print(
    sys.argv[1],
    "decide CPU µs per step (10-step sequence), min/median of 7:",
    round(min(runs), 1),
    round(sorted(runs)[3], 1),
)
