"""The ``flow`` group imports a command's module only when that command runs: its table
of modules (``Commands.MODULES``) must name every command, each with the module that
registers it."""

from __future__ import annotations

import importlib

from click.testing import CliRunner

from flow.cli.app import Commands, main


def test_the_table_names_each_command_with_the_module_that_registers_it():
    for module in sorted(set(Commands.MODULES.values())):
        importlib.import_module(module)
    registered = {name: command.callback.__module__ for name, command in main.commands.items()}
    assert registered == Commands.MODULES


def test_the_help_lists_every_command():
    shown = CliRunner().invoke(main, ["--help"])
    assert shown.exit_code == 0, shown.output
    for name in Commands.MODULES:
        assert f"  {name} " in shown.output, name
