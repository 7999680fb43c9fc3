"""The command table (envlock.cli.commands.COMMANDS), the CLI's one lazy boundary: each row names the
module that defines its command and the summary `envlock --help` lists, and `envlock --help` imports
no command module."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
from typer.main import get_command

from envlock.cli import app
from envlock.cli.commands import COMMANDS
from tests.helpers import REPO_ROOT


def _defined_by(module: str) -> set[str]:
    """The commands whose function lives in ``module``."""
    importlib.import_module(module)
    return {info.name or info.callback.__name__.replace("_", "-") for info in app.registered_commands
            if info.callback is not None and info.callback.__module__ == module}


def test_every_row_names_the_module_that_defines_its_command() -> None:
    for name, entry in COMMANDS.items():
        assert name in _defined_by(entry.module), f"{entry.module} does not define `envlock {name}`"


def test_every_command_has_a_row() -> None:
    for entry in COMMANDS.values():
        importlib.import_module(entry.module)
    registered = {info.name or info.callback.__name__.replace("_", "-")
                  for info in app.registered_commands if info.callback is not None}
    assert registered == set(COMMANDS), "a command defined with @app.command() needs a row in COMMANDS"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_summary_is_what_the_command_help_shortens_to(name: str) -> None:
    """At every width `envlock --help` shows the same words as when it built every command."""
    command = get_command(app).commands[name]  # type: ignore[attr-defined]
    listed = type(command)(name, help=COMMANDS[name].summary)
    for limit in range(10, 400):
        assert listed.get_short_help_str(limit) == command.get_short_help_str(limit), (name, limit)


@pytest.mark.processes("what a fresh interpreter imports for `envlock --help`")
def test_the_group_help_imports_no_command_module() -> None:
    code = ("import json, sys; sys.argv = ['envlock', '--help']\n"
            "from envlock.__main__ import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('envlock.'))), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True,
                            timeout=60)
    loaded = set(json.loads(result.stderr.strip().splitlines()[-1]))
    modules = {entry.module for entry in COMMANDS.values()}
    assert not loaded & modules, f"`envlock --help` imported command modules: {sorted(loaded & modules)}"
    assert not {m for m in loaded if m.split(".")[1] in ("models", "store", "golden", "probes", "daemon")}
    assert "Commands:" in result.stdout and all(f"  {name} " in result.stdout for name in COMMANDS)
