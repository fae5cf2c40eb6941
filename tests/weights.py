"""``python -m tests.weights CPU_LOG``: rewrite ``tests/weights.json``, each test file's wall
seconds in a run with ``FLOW_TEST_CPU_LOG=CPU_LOG`` (see tests/conftest.py).

pytest-xdist hands whole files to its workers (``--dist loadfile``) in the order the
suite collects them (``--no-loadscope-reorder``); tests/conftest.py collects the heaviest
files first, by these weights, so that a long file never starts last and runs alone
while the other workers idle (longest first is the classic bound for this: the run
ends at most one file's length after the ideal). A file missing here weighs nothing:
new files are short until a run says otherwise.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

WEIGHTS = Path(__file__).with_name("weights.json")


def weights_of(log: str) -> dict[str, int]:
    """Seconds per test file, summed over its tests' wall seconds in ``log``."""
    seconds: defaultdict[str, float] = defaultdict(float)
    for line in log.splitlines():
        _cpu, wall, nodeid = line.split(" ", 2)
        seconds[nodeid.split("::", 1)[0]] += float(wall)
    return {path: round(total) for path, total in sorted(seconds.items()) if round(total) > 0}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    weights = weights_of(Path(argv[0]).read_text())
    WEIGHTS.write_text(json.dumps(weights, indent=0, sort_keys=True) + "\n")
    print(f"{len(weights)} files, {sum(weights.values())} s in all, written to {WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
