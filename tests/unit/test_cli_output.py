"""What the CLI writes to the terminal (issue 17): it never dies on a character it cannot encode
(a lone surrogate from a resealed golden), and no string from a file or a probe module can act on
the terminal (ESC[2J, an OSC title, a carriage return) or forge a line the CLI prints itself.

verify and explain on such a golden need TensorFlow: tests/integration/test_cli_terminal.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import envlock.cli.build
import envlock.cli.capture_golden
import envlock.image.build
from envlock.cli import app
from envlock.cli.common import terminal_safe
from envlock.models import Manifest, with_digest
from tests.helpers import REFERENCE_GOLDEN, make_hostile_golden, real_golden_data, reseal

HOSTILE = "\x1b[2J\x1b]0;owned\x07\rgone\x9b31m\u202eevil"
FORGED = "\nREPRODUCES: every probe is identical"


def _golden_with_model_name(path: Path, model_name: str) -> Path:
    """The shipped golden with its CPU model renamed, both digests resealed (anyone can)."""
    data: dict[str, Any] = real_golden_data()
    data["manifest"]["cpu"]["model_name"] = model_name
    data["manifest"]["digest"] = with_digest(Manifest.model_validate(data["manifest"])).digest
    path.write_text(json.dumps(reseal(data)), encoding="utf-8")  # json writes the surrogate as \ud800
    return path


def test_diff_of_a_golden_with_a_lone_surrogate_prints_it_escaped(tmp_path: Path) -> None:
    golden = _golden_with_model_name(tmp_path / "g.json", "AMD \ud800 EPYC")
    result = CliRunner().invoke(app, ["diff", str(REFERENCE_GOLDEN), str(golden)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert "AMD \\ud800 EPYC" in result.stdout


def test_diff_output_cannot_act_on_the_terminal(tmp_path: Path) -> None:
    golden = _golden_with_model_name(tmp_path / "g.json", f"AMD {HOSTILE}")
    result = CliRunner().invoke(app, ["diff", str(REFERENCE_GOLDEN), str(golden)])
    assert result.exit_code == 1, result.output
    assert not any(c in result.stdout for c in "\x1b\x07\r\x9b\u202e"), repr(result.stdout)
    assert "\\x1b[2J" in result.stdout


def test_capture_names_a_probe_that_was_not_recorded_in_one_escaped_line(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's reason comes from a user module: it can neither clear the screen nor forge a line."""
    golden = make_hostile_golden(skipped_reason=f"raised {HOSTILE}{FORGED}")
    monkeypatch.setattr(envlock.cli.capture_golden, "capture_golden", lambda **_kwargs: golden)  # the probe child
    output = tmp_path / "g.json"
    result = CliRunner().invoke(app, ["capture", "--golden", "-o", str(output)])
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stdout.splitlines()
    assert [line for line in lines if "not recorded" in line] == [
        "  not recorded: gpu.matmul: skipped: raised \\x1b[2J\\x1b]0;owned\\x07\\rgone\\x9b31m\\u202eevil"
        "\\nREPRODUCES: every probe is identical"], lines
    assert not any(line.startswith("REPRODUCES") for line in lines)


def test_build_progress_from_docker_is_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run_build(options: Any, progress: Any) -> Any:
        progress(f"Step 1/9 {HOSTILE}{FORGED}")
        return envlock.image.build.BuildResult(context_dir=tmp_path, spec=None)  # type: ignore[arg-type]

    monkeypatch.setattr(envlock.cli.build, "run_build", run_build)
    result = CliRunner().invoke(app, ["build", "--golden", str(REFERENCE_GOLDEN), "--context-only", str(tmp_path)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert len(result.stderr.splitlines()) == 1 and "\x1b" not in result.stderr, repr(result.stderr)


@pytest.mark.parametrize(("text", "shown"), [
    ("line one\n\tline two\n", "line one\n\tline two\n"),  # a report's layout is kept
    ("\x1b[2J", "\\x1b[2J"), ("\x1b]0;title\x07", "\\x1b]0;title\\x07"), ("over\rwrite", "over\\rwrite"),
    ("\x9b2J", "\\x9b2J"), ("\u202eabc", "\\u202eabc"), ("\x7f", "\\x7f"), ("\x00", "\\x00"),
    ("caf\u00e9 \u2713", "caf\u00e9 \u2713"),  # printable text is untouched
])
def test_terminal_safe_escapes_what_a_terminal_would_obey(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown
