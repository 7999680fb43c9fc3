"""Shared pieces of the thin Typer layer: the app, error handling, output helpers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from envlock.errors import EXIT_CODES_HELP, EnvlockError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="envlock",
    help="Make TensorFlow results reproducible across machines: capture, build, verify, watch.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def handles_errors(fn: F) -> F:
    """Turn an ``EnvlockError`` into one line on stderr and its exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EnvlockError as exc:
            typer.echo(f"envlock: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("envlock: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
