"""Every command's --help wraps cleanly at the widths people use (issue 16 item 7).

The bug this guards against: a hard line break in a docstring survives into the rendered help,
and the formatter then wraps the long line again, so a sentence stops in the middle of the screen
("costs about one") and goes on below ("TensorFlow import"). The check is what a greedy wrapper
guarantees: within one block of text (same indentation), a line that does not end a sentence or
clause is only broken there because the next word did not fit. A line followed by a word that
would have fit is a hard break inside a sentence: a broken paragraph. Paragraphs written with
click's ``\\b`` marker are laid out by hand (tables) and exempt from that, but, like every line,
must fit the terminal, or the terminal breaks them itself.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import pytest
from typer.main import get_command

from envlock.cli import app

COMMANDS = [[], ["capture"], ["diff"], ["schema"], ["verify"], ["explain"], ["build"], ["watch"], ["cores"],
            ["fleet"]]
WIDTHS = [80, 120]
# A line that ends one of these ends a sentence or clause (or click's "[default: ...]"): a break
# after it is the author's, not a wrap.
_ENDS_CLAUSE = re.compile(r"[.:;!?\]]$")
_NEW_ITEM = re.compile(r"^-{1,2}\w|^\S+ {2,}\S")  # an option row (-o, --output), a "term  text" row


def _command(argv: list[str]) -> Any:
    group = get_command(app)
    return group.commands[argv[0]] if argv else group  # type: ignore[attr-defined]


def _help(argv: list[str], width: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """``envlock ARGV --help`` as a terminal of ``width`` columns shows it. Not through CliRunner,
    which forces click's width to 80; the contexts are made the way the real run makes them (the
    app's context settings included), with the terminal's width."""
    monkeypatch.setenv("COLUMNS", str(width))  # what Typer's rich help reads
    group = get_command(app)
    root = group.make_context("envlock", [], resilient_parsing=True, terminal_width=width)
    command = _command(argv)
    ctx = command.make_context(argv[0], [], parent=root, resilient_parsing=True) if argv else root
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # Typer's rich help prints instead of returning the text
        text = command.get_help(ctx)
    return text + printed.getvalue()


def _hand_laid_lines(argv: list[str]) -> set[str]:
    """The lines of the command's ``\\b`` paragraphs, as written (stripped)."""
    command = _command(argv)
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    lines: set[str] = set()
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            if paragraph.lstrip(" ").startswith("\b"):
                lines.update(line.strip() for line in paragraph.splitlines()[1:] if line.strip())
    return lines


def broken_lines(text: str, width: int, hand_laid: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Every place ``text`` (rendered for a terminal of ``width`` columns) is broken badly."""
    problems = []
    lines = [line.rstrip() for line in text.splitlines()]
    for number, line in enumerate(lines):
        if len(line) > width:
            problems.append(f"line {number + 1} is {len(line)} columns wide: {line!r}")
    wrap_width = width - 2  # click wraps at the terminal width less a margin; rich at the width itself
    for number, (a, b) in enumerate(zip(lines, lines[1:], strict=False)):
        if not a.strip() or not b.strip() or a.strip() in hand_laid:
            continue
        indent_a, indent_b = len(a) - len(a.lstrip()), len(b) - len(b.lstrip())
        if indent_a != indent_b or _ENDS_CLAUSE.search(a) or _NEW_ITEM.match(b.lstrip()) and indent_a <= 2:
            continue
        word = b.split()[0]
        needed = len(a) + len(word) + (0 if a.endswith("-") else 1)
        if needed <= wrap_width:
            problems.append(f"line {number + 1} stops mid-sentence although {word!r} fits: {a.strip()!r} / "
                            f"{b.strip()!r}")
    return problems


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "envlock")
def test_help_wraps_cleanly(argv: list[str], width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help(argv, width, monkeypatch)
    assert broken_lines(text, width, _hand_laid_lines(argv)) == []


def test_the_check_catches_the_reported_break() -> None:
    """The capture help as Typer's rich mode printed it (issue 16): the check must flag it."""
    reported = ("\n Prints a readable summary (or the manifest as JSON with --json); writes a file\n"
                " only with -o.\n"
                " TensorFlow is inspected in a child process started first, so a full capture\n"
                " costs about one\n"
                " TensorFlow import; --no-tf never imports it.\n")
    problems = broken_lines(reported, 80)
    assert len(problems) == 1 and "'costs about one' / 'TensorFlow import;" in problems[0], problems


def test_the_check_passes_a_wrapped_paragraph_and_option_rows() -> None:
    wrapped = ("  Prints a readable summary (or the manifest as JSON with --json); writes a\n"
               "  file only with -o. TensorFlow is inspected in a child process started first,\n"
               "  so a full capture costs about one TensorFlow import.\n\n"
               "Options:\n"
               "  --json     Print the manifest as JSON instead of a summary\n"
               "  --no-tf    Skip TensorFlow: never import it.\n")
    assert broken_lines(wrapped, 80) == []
    assert broken_lines("x" * 81, 80) != []  # a hand-laid line too wide for the terminal


def test_help_at_120_columns_uses_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wider terminals get longer lines (click stops at 80 columns unless told otherwise)."""
    assert max(len(line) for line in _help(["verify"], 120, monkeypatch).splitlines()) > 100
