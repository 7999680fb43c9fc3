"""Verdicts per probe and the verify report/CLI pieces that need no TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.cli.common import resolve_golden_path
from envlock.diff import Difference
from envlock.display import render_report
from envlock.golden import Golden, OutputRecord, ProbeRecord
from envlock.probes.compare import Tolerance, summarize_array
from envlock.results import ProbeRun
from envlock.verdict import STABLE_UNEXPLAINED_NOTE, VerifyReport, attribute, build_report, judge_probe
from tests.helpers import imported_in_a_fresh_python, probe_run

GOLDEN_VALUES = np.random.default_rng(0).standard_normal((50, 50)).astype(np.float32)


def _record(group: str = "canary", status: str = "ok") -> ProbeRecord:
    outputs = [OutputRecord.model_validate(summarize_array("product", GOLDEN_VALUES))] if status == "ok" else []
    return ProbeRecord(name="matmul.f32", tags=["matmul", "onednn"], group=group, status=status,  # type: ignore[arg-type]
                       reason=None if status == "ok" else "no GPU", outputs=outputs)


def _nudged() -> np.ndarray:
    values = GOLDEN_VALUES.copy()
    values[::7] = np.nextafter(values[::7], np.float32(np.inf))
    return values


def test_identical() -> None:
    verdict = judge_probe(_record(), [probe_run(GOLDEN_VALUES)] * 2, Tolerance())
    assert verdict.status == "identical" and verdict.max_ulp == 0


def test_drift_reports_ulp_scale_error_and_count() -> None:
    verdict = judge_probe(_record(), [probe_run(_nudged())] * 2, Tolerance())
    assert verdict.status == "drift" and verdict.max_ulp == 1.0
    assert verdict.mismatched and verdict.compared == 128 and 0 < verdict.max_rel_error < 1e-6
    assert verdict.outputs_differing == ["product"]
    assert judge_probe(_record(), [probe_run(_nudged())] * 2, Tolerance(1)).status == "within_tolerance"


def test_repeats_differing_here_is_nondeterministic_not_drift() -> None:
    verdict = judge_probe(_record(), [probe_run(GOLDEN_VALUES), probe_run(_nudged())], Tolerance(100))
    assert verdict.status == "nondeterministic" and "repeats on this machine" in (verdict.reason or "")


def test_skips_and_failures() -> None:
    assert judge_probe(_record(status="skipped"), [ProbeRun(status="skipped")], Tolerance()).status == "skipped"
    here = judge_probe(_record(), [ProbeRun(status="skipped", reason="no GPU visible to TensorFlow")], Tolerance())
    assert here.status == "skipped" and here.reason == "no GPU visible to TensorFlow"
    failed = judge_probe(_record(), [ProbeRun(status="error", reason="probe failed: boom")], Tolerance())
    assert failed.status == "error" and "boom" in (failed.reason or "")


def _onednn_diff() -> Difference:
    return Difference(path="environment.TF_ENABLE_ONEDNN_OPTS", old=None, new="0", severity="critical",
                      reason="switches oneDNN", components=["onednn", "matmul"])


def _report_for(verdicts: list, diffs: list, golden_env: bool = False) -> VerifyReport:
    golden = Golden.model_construct(digest="sha256:" + "a" * 64,
                                    manifest=type("M", (), {"digest": "sha256:" + "b" * 64})())
    stable = attribute(verdicts, diffs)
    return build_report(Path("g.json"), golden, "sha256:" + "c" * 64, verdicts, diffs, tolerance=Tolerance(),
                   repeat=2, golden_env=golden_env, stable_drifted=stable, timings={})


def test_report_exit_codes_and_golden_env_hint() -> None:
    drift = judge_probe(_record(), [probe_run(_nudged())] * 2, Tolerance())
    report = _report_for([drift], [_onednn_diff()])
    assert not report.reproduces and report.exit_code == 1
    assert report.probes[0].causes[0].path == "environment.TF_ENABLE_ONEDNN_OPTS"
    assert report.suggestion and "--golden-env" in report.suggestion
    assert _report_for([judge_probe(_record(), [probe_run(_nudged())] * 2, Tolerance())], [_onednn_diff()],
                       golden_env=True).suggestion is None
    ok = _report_for([judge_probe(_record(), [probe_run(GOLDEN_VALUES)], Tolerance())], [])
    assert ok.reproduces and ok.exit_code == 0
    data = json.loads(ok.model_dump_json())
    for key in ("reproduces", "exit_code", "probes", "differences", "golden_digest", "manifest_digest"):
        assert key in data
    for key in ("name", "status", "max_ulp", "max_rel_error", "mismatched", "reason", "causes"):
        assert key in data["probes"][0]


def test_stable_drift_note_and_table() -> None:
    verdict = judge_probe(_record(group="stable"), [probe_run(_nudged())] * 2, Tolerance())
    report = _report_for([verdict], [])
    # No version differs: the note says the cause is unrecorded and what tests it, never "suspect a version".
    assert STABLE_UNEXPLAINED_NOTE in report.notes
    assert not any("suspect" in n for n in report.notes)
    text = render_report(report)
    assert "DOES NOT REPRODUCE" in text and "no recorded difference explains this" in text
    assert "envlock explain" in text


def test_golden_path_falls_back_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVLOCK_GOLDEN", "/images/golden.json")
    assert resolve_golden_path(None) == Path("/images/golden.json")
    assert resolve_golden_path("x.json") == Path("x.json")


runner = CliRunner()


def test_cli_without_golden_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVLOCK_GOLDEN", raising=False)
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 2 and "ENVLOCK_GOLDEN" in result.output


def test_cli_bad_tolerance_and_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", str(tmp_path / "g.json"), "--tolerance", "loose"])
    assert result.exit_code == 2 and "--tolerance" in result.output
    result = runner.invoke(app, ["verify", str(tmp_path / "absent.json")])
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.processes("what a fresh interpreter imports")
def test_list_probes_does_not_import_tensorflow() -> None:
    result = runner.invoke(app, ["verify", "--list-probes"])
    assert result.exit_code == 0 and "distribute.mirrored_step" in result.output and "canary" in result.output
    # Asked of a fresh interpreter: whether this process holds TensorFlow depends on the tests before.
    assert imported_in_a_fresh_python("""
        from typer.testing import CliRunner
        from envlock.cli import app
        assert CliRunner().invoke(app, ["verify", "--list-probes"]).exit_code == 0
    """, ["tensorflow"]) == []


def test_cli_report_into_a_missing_directory_fails_before_running(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", str(tmp_path / "g.json"), "--report", str(tmp_path / "no" / "r.json")])
    assert result.exit_code == 2 and "directory does not exist" in result.output


def test_nothing_compared_is_never_a_pass() -> None:
    # Every probe skipped here (GPU probes without a GPU, a cap that makes a probe skip itself): nothing
    # was verified, so no "REPRODUCES" and no exit 0: exit 3, this machine could not verify the golden.
    skipped = judge_probe(_record(), [ProbeRun(status="skipped", reason="no GPU visible to TensorFlow")], Tolerance())
    report = _report_for([skipped], [])
    assert skipped.status == "skipped"
    assert not report.reproduces and report.exit_code == 3
    text = render_report(report)
    assert "NOTHING VERIFIED" in text and "REPRODUCES:" not in text
    identical = judge_probe(_record(), [probe_run(GOLDEN_VALUES)], Tolerance())
    assert _report_for([skipped, identical], []).exit_code == 0  # one compared probe is a verdict
