"""``python -m flow.cli``: the ``flow`` command."""

from flow.cli import main

main()
