"""The Typer app. Each command lives in its own module, imported only when that command runs or shows its
help (the table envlock.cli.commands.COMMANDS); none imports TensorFlow or docker at import time."""

from __future__ import annotations

import typer

from envlock.cli.common import app, interrupted
from envlock.errors import BAD_INPUT
from envlock.runner import Terminated, stop_cleanly_on_sigterm
from envlock.version import __version__


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"envlock {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Make TensorFlow results reproducible across machines."""
    if ctx.invoked_subcommand is None:  # bare `envlock`: the help, and the usage-error code
        typer.echo(ctx.get_help())
        raise typer.Exit(BAD_INPUT)


def main() -> None:
    # SIGTERM unwinds (children killed, temp dirs removed) instead of ending the process mid-way;
    # `watch` replaces this with its own stop handler.
    stop_cleanly_on_sigterm()
    try:
        app(prog_name="envlock")
    except Terminated:
        typer.echo("envlock: terminated", err=True)
        raise
    except KeyboardInterrupt:  # Ctrl-C outside any command (while Typer builds the command tree)
        interrupted()


__all__ = ["app", "main"]
