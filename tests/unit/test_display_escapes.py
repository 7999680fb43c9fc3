"""Text from a golden, a manifest or a user module never reaches the terminal raw (issue 17, class 8).

A golden can name a probe ``"\\x1b[2J"`` (clear the screen), carry an OSC title sequence in a skipped
probe's reason, or forge a ``REPRODUCES`` line with an embedded newline. Every renderer escapes each
field it did not write itself, so the only line breaks are its own and no escape sequence survives.
"""

from __future__ import annotations

import json

import pytest

from envlock.diff import Difference
from envlock.display import render_differences, render_explain, render_report
from envlock.explain.report import ExplainReport
from envlock.verdict import CauseSummary, ProbeVerdict, VerifyReport
from tests.helpers import DATA_DIR

HOSTILE = ["\x1b[2J", "\x1b]0;pwned\x07", "ok\nREPRODUCES: 45 identical", "\r\x1b[1A", "\u202e", "\ud800", "\x9b2J"]


def _clean(text: str) -> None:
    for line in text.split("\n"):
        assert line.isprintable(), repr(line)  # no control, format or unpaired-surrogate character
        assert "\x1b" not in line and "\x9b" not in line
    forged = [line for line in text.split("\n") if line.startswith("REPRODUCES")]
    assert not forged, forged


def _report(evil: str) -> VerifyReport:
    probes = [
        ProbeVerdict(name=f"p{evil}", status="drift", max_ulp=2.0, max_rel_error=1e-8, mismatched=3, compared=9,
                     reason=f"1 of 1 outputs differ ({evil})", proved=f"fixed by {evil}"),
        ProbeVerdict(name=f"s{evil}", status="skipped", reason=f"recorded reason {evil}"),
        ProbeVerdict(name=f"i{evil}", status="identical", max_ulp=0.0, max_rel_error=0.0, mismatched=0),
        ProbeVerdict(name=f"n{evil}", status="nondeterministic", reason=evil),
    ]
    return VerifyReport(
        reproduces=False, exit_code=1, golden=f"/tmp/g{evil}.json", golden_digest=f"sha256:{evil}",
        manifest_digest="sha256:x", golden_manifest_digest="sha256:y", tolerance="bitwise", repeat=2,
        golden_env=False, counts={"identical": 1, "within_tolerance": 0, "drift": 1, "nondeterministic": 1,
                                  "skipped": 1, "error": 0},
        probes=probes, differences=[], notes=[f"note {evil}"], suggestion=f"hint {evil}",
        causes=[CauseSummary(rule=None, path=f"environment.X{evil}", reason=f"X {evil}", score=1.0,
                             probes=[f"p{evil}"])],
        next_command=f"envlock explain '/tmp/g{evil}.json'")


@pytest.mark.parametrize("evil", HOSTILE)
@pytest.mark.parametrize("verbose", [False, True])
def test_verify_view_escapes_every_field(evil: str, verbose: bool) -> None:
    text = render_report(_report(evil), verbose=verbose)
    _clean(text)
    assert text.split("\n")[-1].startswith("DOES NOT REPRODUCE")


@pytest.mark.parametrize("evil", HOSTILE)
def test_differences_escape_values(evil: str) -> None:
    diff = Difference(path="cpu.model_name", old="AMD", new=evil, severity="warning", components=[],
                      reason=f"cpu.model_name 'AMD' -> {evil!s}")
    _clean(render_differences([diff]))


@pytest.mark.parametrize("evil", HOSTILE)
def test_explain_view_escapes_every_field(evil: str) -> None:
    recorded = json.loads((DATA_DIR / "machines" / "intel-xeon-amx-2vcpu-2026-12-03" /
                           "explain-of-amd-epyc-zen4-2vcpu.json").read_text())
    recorded["golden"] = f"/tmp/{evil}"
    for finding in recorded["findings"]:
        finding["probe"] = finding["probe"] + evil
    recorded["notes"] = [*recorded.get("notes", []), evil]
    _clean(render_explain(ExplainReport.model_validate(recorded)))
