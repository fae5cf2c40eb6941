"""``python -m bench.schemathesis``: a long schemathesis run against ``flow up``.

Starts ``flow up`` on a temporary SQLite database with the definitions of
:mod:`flow.testing.definitions` (its HTTP activity pointed at a closed port, so
nothing leaves the machine), then runs ``schemathesis run <url>/openapi.json`` with
every check (``-c all``), positive and negative data, and many more examples per
operation than the bounded run in ``tests/api/test_openapi.py``;
``bench/schemathesis.toml`` holds its configuration. It fails if schemathesis finds
anything or the server logged an unhandled error; the server's log and
schemathesis' JUnit report are kept in ``--report-dir``.

It depends on the package alone (:mod:`flow.testing`), not on the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from flow.testing import ROOT, flow_up, unhandled_errors
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions

#: DoAnotherThingActivity's URLs point here: nothing listens on the discard port.
CLOSED_PORT_URL = "http://127.0.0.1:9"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.schemathesis", description=__doc__)
    parser.add_argument("--max-examples", type=int, default=300, help="test cases per operation (default 300)")
    parser.add_argument("--checks", default="all", help="schemathesis checks (default: all)")
    parser.add_argument("--mode", default="all", choices=("positive", "negative", "all"))
    parser.add_argument("--workers", default="1", help="concurrent schemathesis workers (default 1)")
    parser.add_argument("--seed", type=int, help="for a reproducible run")
    parser.add_argument("--report-dir", type=Path, default=ROOT / "test-artifacts" / "schemathesis")
    args = parser.parse_args()

    args.report_dir = args.report_dir.resolve()
    args.report_dir.mkdir(parents=True, exist_ok=True)
    schemathesis = Path(sys.executable).parent / "schemathesis"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        definitions = write_definitions(base / "workflows", sample_definitions(CLOSED_PORT_URL))
        with flow_up(base, embedded_env(base, definitions)) as url:
            command = [
                str(schemathesis),
                "--config-file",
                str(ROOT / "bench" / "schemathesis.toml"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                args.checks,
                "--mode",
                args.mode,
                "--max-examples",
                str(args.max_examples),
                "--workers",
                args.workers,
                "--report",
                "junit",
                "--report-dir",
                str(args.report_dir),
                *(["--seed", str(args.seed)] if args.seed is not None else []),
            ]
            print("$", " ".join(command), flush=True)
            # In the temporary directory: schemathesis keeps a cache where it runs.
            code = subprocess.run(command, cwd=base).returncode
        log = base / "up.log"
        shutil.copy(log, args.report_dir / "flow-up.log")
        text = log.read_text(errors="replace")
    served = text.count("flow.http")
    tracebacks = unhandled_errors(text)
    print(f"flow up served {served} requests; {tracebacks} unhandled errors in its log ({args.report_dir}/flow-up.log)")
    return code or (1 if tracebacks else 0)


if __name__ == "__main__":
    sys.exit(main())
