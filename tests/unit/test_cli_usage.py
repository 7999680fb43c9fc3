"""Every command: bad flags, unknown commands and missing arguments are one line on stderr, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.errors import BAD_INPUT


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["nope"], "No such command 'nope'"),
        (["capture", "--nope"], "No such option: --nope"),
        (["diff", "only-one.json"], "Missing argument"),
        (["verify", "--tolerance"], "requires an argument"),
        (["verify", "--repeat", "many"], "Invalid value for '--repeat'"),
        # int() would take these; an option is plain ASCII digits in range, or a usage error
        (["verify", "golden.json", "--repeat", "1_0"], "not a whole number of plain digits"),
        (["verify", "golden.json", "--repeat", "\uff11\uff10"], "not a whole number of plain digits"),
        (["verify", "golden.json", "--repeat", " 7"], "not a whole number of plain digits"),
        (["verify", "golden.json", "--repeat", "+3"], "not a whole number of plain digits"),
        (["capture", "--golden", "-o", "g.json", "--repeat", "101"], "not in the range 1 to 100"),
        (["capture", "--golden", "-o", "g.json", "--repeat", "0"], "not in the range 1 to 100"),
        (["watch", "--golden", "g.json", "--once", "--listen", "127.0.0.1:65536"], "between 0 and 65535"),
        (["build", "--nope"], "No such option"),
        (["watch", "--golden"], "requires an argument"),
        (["schema", "extra"], "unexpected extra argument"),
        (["capture", "--golden", "-o", "/tmp/envlock-usage-g.json", "--probes", ","], "at least one probe name"),
        (["capture", "--golden", "-o", "/tmp/envlock-usage-g.json", "--probes", "nosuch"], "unknown probe(s): nosuch"),
        (["verify", "golden.json", "--probes", " , "], "at least one probe name"),
        (["explain", "golden.json", "--budget", "0"], "not in the range 1 to 86400"),
        (["explain", "golden.json", "--budget", "nan"], "not a whole number of plain digits"),
        (["explain", "golden.json", "--jobs", "0"], "Invalid value for '--jobs'"),
        (["explain", "golden.json", "--probes", ","], "at least one probe name"),
        (["verify", "golden.json", "--explain", "--golden-env"], "does not combine"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], says: str) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == BAD_INPUT, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("envlock: error: ") and says.lower() in lines[0].lower()
    assert "Traceback" not in result.output


def test_bare_envlock_shows_help_and_exits_2() -> None:
    result = CliRunner().invoke(app, [])
    assert result.exit_code == BAD_INPUT
    assert "capture" in result.output and "verify" in result.output and "Exit codes" in result.output


def test_help_documents_exit_codes_for_every_command() -> None:
    for command in ["capture", "diff", "verify", "build", "watch"]:
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert "Exit code" in result.output or "exit code" in result.output, f"{command} --help lacks exit codes"
        assert "Exit codes" in result.stdout, command  # the section, on stdout


# ---------------------------------------------------------------- one --golden convention


def _one_error_line(result: object) -> str:
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    return lines[0]


GOLDEN_COMMANDS = [["verify"], ["explain"], ["build", "--context-only", "CTX"], ["watch", "--once"]]


@pytest.mark.parametrize("command", GOLDEN_COMMANDS, ids=lambda c: c[0])
def test_every_golden_command_without_a_golden_names_both_ways_to_give_one(
        command: list[str], tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVLOCK_GOLDEN", raising=False)
    argv = [str(tmp_path) + "/ctx" if a == "CTX" else a for a in command]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == BAD_INPUT, result.output
    assert _one_error_line(result) == "envlock: error: no golden given: pass --golden FILE or set ENVLOCK_GOLDEN"


@pytest.mark.parametrize("command", GOLDEN_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("how", ["--golden", "ENVLOCK_GOLDEN"])
def test_every_golden_command_takes_the_golden_from_the_option_or_the_environment(
        command: list[str], how: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"{tmp_path}/no-such-golden.json"
    monkeypatch.delenv("ENVLOCK_GOLDEN", raising=False)
    argv = [str(tmp_path) + "/ctx" if a == "CTX" else a for a in command]
    if how == "--golden":
        argv += ["--golden", missing]
    else:
        monkeypatch.setenv("ENVLOCK_GOLDEN", missing)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == BAD_INPUT, result.output
    # The command read that golden (and found it missing): it took the path from where it was given.
    assert missing in _one_error_line(result)


@pytest.mark.parametrize("command", ["verify", "explain"])
def test_bare_golden_argument_still_works_and_two_different_goldens_are_refused(
        command: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVLOCK_GOLDEN", f"{tmp_path}/from-env.json")
    positional = f"{tmp_path}/positional.json"
    result = CliRunner().invoke(app, [command, positional])  # the argument beats the environment
    assert result.exit_code == BAD_INPUT and positional in _one_error_line(result)
    result = CliRunner().invoke(app, [command, positional, "--golden", f"{tmp_path}/other.json"])
    assert result.exit_code == BAD_INPUT
    assert "two goldens given" in _one_error_line(result)
