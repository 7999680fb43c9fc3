"""Every command of ``envlock``: the one lazy boundary of the CLI, as pip's ``commands_dict``.

A row names the module that defines the command (with ``@app.command()``) and the first
paragraph of its help, which ``envlock --help`` lists. The group in ``envlock.cli.common`` lists
the commands from this table and imports a command's module only when the command runs or its
``--help`` is asked, so ``envlock --help`` imports no command module and each command pays only
for its own core. A new command is one row here and one module; tests/unit/test_cli_commands.py
checks every row against the command its module defines.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandEntry:
    module: str  # the module whose import registers the command
    summary: str  # the first paragraph of the command's help, on one line


# In the order `envlock --help` lists them.
COMMANDS: dict[str, CommandEntry] = {
    "build": CommandEntry(
        "envlock.cli.build",
        "Build a Docker image that reproduces a golden: exact wheels by sha256 (installed offline), determinism "
        "environment baked in, the golden inside, and an entrypoint that verifies it before running your command "
        "(ENVLOCK_ON_DRIFT=warn only warns)."),
    "capture": CommandEntry(
        "envlock.cli.capture", "Fingerprint this machine and its software stack as a versioned manifest."),
    "diff": CommandEntry(
        "envlock.cli.diff", "Show every identity difference between two manifests, with severity and reason."),
    "schema": CommandEntry("envlock.cli.diff", "Print the manifest's JSON Schema (exit code 0)."),
    "cores": CommandEntry(
        "envlock.cli.cores",
        "Run known-answer probes pinned to each CPU in turn and compare the bits across CPUs: a CPU that deviates "
        'from the majority is a suspected defective ("mercurial") core.'),
    "explain": CommandEntry(
        "envlock.cli.explain",
        "Verify, then re-run only the drifting probes in fresh processes under configurations derived from the "
        "differences between the golden and this machine (determinism variables, oneDNN, affinity and threads, ISA "
        "ceilings): per probe, fixed by X (the smallest set), partly, or not fixable by configuration here "
        "(hardware-bound), with the first operation that differs."),
    "fleet": CommandEntry(
        "envlock.cli.fleet",
        "Read goldens and verify reports (`envlock verify --json` or `--report`) from many machines and say which "
        "numeric classes there are, which machines are in each, which probes separate the classes and by how many "
        "ULPs, and where the numerics profile changes the picture."),
    "verify": CommandEntry(
        "envlock.cli.verify",
        "Run the probe suite here and compare it with a golden: identical, within tolerance, drift (with likely "
        "causes), nondeterministic or skipped, per probe."),
    "watch": CommandEntry("envlock.cli.watch", "Keep checking this machine against GOLDEN and report its health."),
}

__all__ = ["COMMANDS", "CommandEntry"]
