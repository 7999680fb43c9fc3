"""Shared pieces of the thin Typer layer: the app, error handling, output helpers."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from envlock.cli.commands import COMMANDS
from envlock.errors import BAD_INPUT, EXIT_CODES_HELP, BadInputError, EnvlockError, one_line

if TYPE_CHECKING:  # the click Typer runs on (this Typer vendors it); types only
    from typer._click import Command, Context, HelpFormatter

# click's UsageError and Abort, whether typer vendors click or depends on it.
_UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_Abort: type[BaseException] = next(c for c in typer.Abort.__mro__ if c.__name__ == "Abort")


class _Interrupted(Exception):
    """Ctrl-C inside a command. Typer's main turns a KeyboardInterrupt into a silent exit 130; this
    type passes through it to ``OneLineUsageGroup.main``, which says so in one line."""


class LoadedOnUse(MutableMapping[str, "Command"]):
    """The group's commands by name: every row of ``envlock.cli.commands.COMMANDS``, each imported
    (its module, then its click command made the way Typer makes it) when it is first looked up.
    Listing the names, and Typer's "Did you mean" among them, imports nothing."""

    def __init__(self, loaded: Mapping[str, Command]) -> None:
        self._loaded: dict[str, Command] = dict(loaded)

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*COMMANDS, *(name for name in self._loaded if name not in COMMANDS)])

    def __len__(self) -> int:
        return len(list(iter(self)))


def load_command(name: str) -> Command:
    """The click command ``name``: its module imported (which registers it on ``app``), then built
    from its registration with the app's settings, as Typer builds the commands it already knows."""
    importlib.import_module(COMMANDS[name].module)
    (info,) = [c for c in app.registered_commands
               if (c.name or typer.main.get_command_name(c.callback.__name__ if c.callback else "")) == name]
    return typer.main.get_command_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                            rich_markup_mode=app.rich_markup_mode)


class OneLineUsageGroup(TyperGroup):
    """Where every error of every command is caught, once: a typed ``EnvlockError`` from the core
    becomes one line on stderr and its exit code (no traceback); bad flags, unknown commands and
    missing arguments give one line and exit 2, like every other bad input -- not click's
    multi-line usage box; Ctrl-C is exit 130.

    Its commands are the table ``envlock.cli.commands.COMMANDS``: a command's module is imported
    when the command runs or shows its help; the group's own help lists the table's summaries."""

    def __init__(self, *, commands: Mapping[str, Command] | None = None, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LoadedOnUse(commands or {})

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # the names only: TyperGroup's reads every command

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The "Commands:" section, from the table: each summary shortened as click shortens a help."""
        names = [name for name in self.list_commands(ctx) if name in COMMANDS]
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, TyperCommand(name, help=COMMANDS[name].summary).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        try:
            never_die_on_output()
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except _UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `envlock`: show the help
                exc.show()  # type: ignore[attr-defined]
                sys.exit(BAD_INPUT)
            hint = f" (try '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) else ""  # type: ignore[attr-defined]
            message = one_line(f"{exc.format_message()}{hint}")  # type: ignore[attr-defined]
            typer.echo(f"envlock: error: {message}", err=True)
            sys.exit(BAD_INPUT)
        except EnvlockError as exc:
            typer.echo(f"envlock: error: {one_line(str(exc))}", err=True)  # one line, whatever a path holds
            sys.exit(exc.exit_code)
        except (_Interrupted, _Abort, KeyboardInterrupt):  # Ctrl-C: in a command, at a prompt, while parsing
            interrupted()
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted() from None


# What a terminal would obey rather than show: C0 controls but newline and tab (ESC starts CSI and
# OSC sequences, CR overwrites a line), DEL, C1 controls (U+009B is a one-character CSI) and the
# bidirectional overrides. Newlines are the display's to escape per field: a report has many lines.
_TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """``text`` with every character a terminal would act on escaped (``\\x1b``), lines kept."""
    return _TERMINAL_CONTROLS.sub(lambda match: one_line(match.group()), text)


def show(text: str, *, err: bool = False, nl: bool = True) -> None:
    """Print a rendered report: whatever a golden or a probe module put into it cannot clear the
    screen, set the window title or move the cursor, on a terminal or not."""
    typer.echo(terminal_safe(text), err=err, nl=nl)


def never_die_on_output() -> None:
    """Whatever reaches stdout or stderr, writing it never raises: a lone surrogate from a golden
    ("\\ud800" in a manifest string) or a character the terminal's encoding lacks is written as a
    backslash escape instead of ending the command with a UnicodeEncodeError. Untrusted strings are
    escaped field by field (``one_line``, the display layer); this is the net under all of them."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) != "backslashreplace":
            with contextlib.suppress(ValueError, OSError, TypeError):  # a closed or foreign stream
                reconfigure(errors="backslashreplace")


def interrupted() -> None:
    """Ctrl-C: one line on stderr and exit 130 (128 + SIGINT), as shells report an interrupted command."""
    with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr must not hide the exit code
        typer.echo("envlock: interrupted", err=True)
    sys.exit(130)


def strict_int(name: str, low: int, high: int) -> Callable[[str], int]:
    """A parser for an integer option: ASCII digits only, within [low, high].

    Python's int() (click's INT) takes "1_0", " 7", "+3" and full-width digits; an option's value
    comes from scripts and manifests, so anything but plain digits is a usage error (exit 2)."""

    def parse(text: str) -> int:
        raw = str(text)
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
            raise typer.BadParameter(f"{raw!r} is not a whole number of plain digits", param_hint=f"'{name}'")
        value = int(raw)
        if not low <= value <= high:
            raise typer.BadParameter(f"{value} is not in the range {low} to {high}", param_hint=f"'{name}'")
        return value

    return parse


app = typer.Typer(
    cls=OneLineUsageGroup,
    name="envlock",
    help="Make TensorFlow results reproducible across machines: capture, build, verify, watch.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=False,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: it rewraps every paragraph to the terminal's width (a hard line break in a
    # docstring is only source layout) and prints a paragraph that starts with \b as written. Rich
    # mode keeps single line breaks after the first paragraph and then wraps again, which splits
    # sentences mid-line ("costs about one / TensorFlow import"), and it reads [..] as markup.
    rich_markup_mode=None,
    # click stops wrapping at 80 columns unless told: a wider terminal gets wider help.
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)


# One convention for the golden on every command that takes one (verify, explain, build, watch):
# `--golden FILE`, else $ENVLOCK_GOLDEN (how an image built by `envlock build` finds its own).
# verify and explain also take it as their argument: `envlock verify GOLDEN` keeps working.
GOLDEN_ENV = "ENVLOCK_GOLDEN"
GOLDEN_HELP = "The golden file (from `envlock capture --golden`); default: $ENVLOCK_GOLDEN."
GoldenOption = Annotated[Path | None, typer.Option("--golden", metavar="FILE", help=GOLDEN_HELP, show_default=False)]
GoldenArgument = Annotated[Path | None, typer.Argument(metavar="GOLDEN", help="Same as --golden.",
                                                       show_default=False)]


def resolve_golden_path(*given: Path | str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The golden a command was given: the one named on the command line, else $ENVLOCK_GOLDEN.
    Two different ones (``verify A --golden B``) or none at all is bad usage (exit 2)."""
    named = list(dict.fromkeys(str(g) for g in given if g))
    if len(named) > 1:
        raise BadInputError(f"two goldens given ({' and '.join(named)}): give one")
    if named:
        return Path(named[0])
    from_env = (os.environ if environ is None else environ).get(GOLDEN_ENV)
    if from_env:
        return Path(from_env)
    raise BadInputError("no golden given: pass --golden FILE or set ENVLOCK_GOLDEN")


def with_flag(flag: str, help_text: str) -> str:
    """An option's help that applies only with another flag: "With --golden: also load ..."."""
    return f"With {flag}: {help_text[:1].lower()}{help_text[1:]}"


# `--trusted-key`, the same option on verify, build and watch (envlock.signing).
TRUSTED_KEY_HELP = ("Require the golden to be signed by this Ed25519 key: an OpenSSH public key file "
                    "(id_ed25519.pub, or one key per line); repeatable. Unsigned or otherwise signed: exit 2.")
TrustedKeyOption = Annotated[list[Path] | None, typer.Option("--trusted-key", metavar="PUB", help=TRUSTED_KEY_HELP)]


# `--probe-module` and `--probe-timeout`, the same options on capture --golden and verify.
PROBE_MODULE_HELP = ("Also load the @envlock.probe functions of this module (a dotted name on the Python path, "
                     "or a .py file); repeatable. Imported only in the probe process, which may import TensorFlow. "
                     "Installed packages contribute probes through the 'envlock.probes' entry-point group.")
PROBE_TIMEOUT_HELP = ("Seconds one probe run may take; a probe past it (or one that crashes the probe process) is "
                      "reported as an error for that probe and the others run on in a fresh process.")
