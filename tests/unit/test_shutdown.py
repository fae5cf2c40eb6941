"""A Dramatiq worker process ignores a repeated SIGTERM, from the moment it loads flow.actors."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

# A stand-in for Dramatiq's worker process: its handler counts, then the two signals
# that honcho and Dramatiq's master send arrive.
SCRIPT = """
import os, signal
calls = []
signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
from flow.process.shutdown import ignore_repeated_sigterm
ignore_repeated_sigterm()
ignore_repeated_sigterm()  # a second install does not wrap twice
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGTERM)
print(len(calls))
"""


def run(script: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_repeated_sigterm_reaches_dramatiqs_handler_once():
    assert run(SCRIPT) == "1"


def test_a_process_with_the_default_handler_keeps_it():
    assert (
        run(
            "import signal\nfrom flow.process.shutdown import ignore_repeated_sigterm\nignore_repeated_sigterm()\n"
            "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
        )
        == "True"
    )


def test_flow_actors_installs_it_before_loading_the_runtime():
    source = (ROOT / "flow" / "actors.py").read_text()
    assert source.index("ignore_repeated_sigterm()") < source.index("from flow.process.runtime import")
