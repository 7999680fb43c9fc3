"""Ctrl-C (issue 17, "Also"): one line on stderr, ``envlock: interrupted``, and exit 130.

Typer's main turns a KeyboardInterrupt into a silent exit 130; these run a real command whose
core is interrupted (the core function replaced by one that raises as Ctrl-C would). The real
signal, end to end, is tests/integration/test_cli_terminal.py."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import envlock.cli.diff
import envlock.cli.verify
from envlock.cli import app
from tests.helpers import REFERENCE_GOLDEN


def _ctrl_c(*_args: object, **_kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(("module", "name", "argv"), [
    (envlock.cli.verify, "verify_golden", ["verify", str(REFERENCE_GOLDEN)]),
    (envlock.cli.diff, "diff_manifests", ["diff", str(REFERENCE_GOLDEN), str(REFERENCE_GOLDEN)]),
])
def test_ctrl_c_in_a_command_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch, module: object, name: str,
                                                      argv: list[str]) -> None:
    monkeypatch.setattr(module, name, _ctrl_c)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 130, (result.exit_code, result.output, result.exception)
    assert result.stderr == "envlock: interrupted\n"


def test_an_ordinary_run_says_nothing_of_an_interrupt() -> None:
    """Only an interrupt says "interrupted": an ordinary exit code passes through unchanged."""
    result = CliRunner().invoke(app, ["diff", str(REFERENCE_GOLDEN), str(REFERENCE_GOLDEN)])
    assert result.exit_code == 0 and "interrupted" not in result.stderr
