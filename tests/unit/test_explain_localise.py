"""Localisation and oneDNN's verbose output, on recorded goldens and recorded probe runs (no TF)."""

from __future__ import annotations

import json
from pathlib import Path

from envlock.display import render_explain
from envlock.explain.localise import compare_primitives, localise
from envlock.explain.report import CandidateOutcome, ExplainReport, Finding
from envlock.golden import compute_golden_digest, load_golden, save_golden
from envlock.probes.onednn_verbose import detected_isa, executed_primitives
from envlock.results import ProbeRun, parse_run

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "explain"
GOLDEN = load_golden(DATA / "amd_zen4_golden_with_intermediates.json")
ONEDNN_OFF = json.loads((DATA / "amd_zen4_runs_onednn_off.json").read_text())["runs"]


def _record(name: str):  # type: ignore[no-untyped-def]
    record = GOLDEN.probe(name)
    assert record is not None
    return record


def test_the_first_differing_intermediate_and_its_op() -> None:
    loc = localise(_record("compile.eager"), parse_run(ONEDNN_OFF["compile.eager"][0]))
    assert loc.method == "intermediates"
    # Inputs and the first matmul/tanh held; the softmax (oneDNN's jit kernel vs Eigen's) is first to move.
    assert loc.identical_before[:3] == ["x", "w1", "w2"]
    assert loc.first_difference is not None and loc.op is not None
    names = [i.name for i in _record("compile.eager").intermediates or []]
    assert names.index(loc.first_difference) == len(loc.identical_before)
    assert loc.first_difference in loc.summary and loc.op in loc.summary
    assert loc.differing_outputs and "softmax ran jit:avx512_core_bf16 in the golden, not at all here" in loc.primitives


def test_a_keras_fit_names_the_first_step_and_variable() -> None:
    loc = localise(_record("training.keras_fit"), parse_run(ONEDNN_OFF["training.keras_fit"][0]))
    assert loc.first_difference is not None and loc.first_difference.startswith("epoch 0 step ")
    assert loc.first_difference.split(": ")[1] in ("Dense[0]/kernel", "Dense[0]/bias", "Dense[1]/kernel",
                                                   "Dense[1]/bias")
    assert "initial: Dense[0]/kernel" in loc.identical_before  # the initialisation held
    assert loc.op == "Adam update (train step)"


def test_identical_runs_localise_nothing() -> None:
    record = _record("compile.eager")
    run = {"status": "ok", "outputs": [o.model_dump() for o in record.outputs],
           "intermediates": [i.model_dump() for i in record.intermediates or []]}
    loc = localise(record, parse_run(run))  # type: ignore[arg-type]  # the child's JSON
    assert loc.first_difference is None and "identical" in loc.summary


def test_old_goldens_fall_back_to_output_order() -> None:
    old = load_golden(REPO / "goldens" / "intel-xeon-amx-2vcpu.json").probe("compile.eager")
    assert old is not None and old.intermediates is None and old.onednn_primitives is None
    run = dict(ONEDNN_OFF["compile.eager"][0])
    probs = next(o for o in old.outputs if o.name == "probs")
    run["outputs"] = [probs.model_dump() if o["name"] == "probs" else o for o in run["outputs"]]
    loc = localise(old, parse_run(run))  # type: ignore[arg-type]  # the child's JSON
    assert loc.method == "outputs"
    assert loc.summary.startswith("probs identical, grad_w1 differs")
    assert loc.primitives == []  # the golden recorded none: nothing to compare


def test_a_probe_that_did_not_run_here() -> None:
    loc = localise(_record("compile.eager"), ProbeRun(status="skipped", reason="bf16 under an AVX2 cap"))
    assert loc.method == "none" and "bf16 under an AVX2 cap" in loc.summary


def test_onednn_verbose_of_the_intel_machine() -> None:
    text = (DATA / "onednn-verbose-dense-grad.txt").read_text()
    assert executed_primitives(text) == ["gemm_api", "softmax:jit:avx10_1_512"]
    assert detected_isa(text) is not None and "AMX" in (detected_isa(text) or "")
    assert executed_primitives("onednn_verbose,exec,cpu,reorder,jit:uni,undef,...\nnoise\n") == ["reorder:jit:uni"]
    assert compare_primitives(["gemm_api", "softmax:jit:avx512_core"], executed_primitives(text)) == [
        "softmax ran jit:avx10_1_512 here, jit:avx512_core in the golden"]
    assert compare_primitives(None, ["gemm_api"]) == []


def test_new_fields_round_trip_and_old_goldens_keep_their_digest(tmp_path: Path) -> None:
    for path in (REPO / "goldens" / "cpu-reference.json", DATA / "amd_zen4_golden_with_intermediates.json"):
        golden = load_golden(path)
        assert golden.digest == compute_golden_digest(golden)
        save_golden(tmp_path / "g.json", golden)
        again = load_golden(tmp_path / "g.json")
        assert again == golden
    raw = json.loads((REPO / "goldens" / "cpu-reference.json").read_text())
    assert all("intermediates" not in p for p in raw["probes"])  # 0.1.0's shape, untouched


def _finding(status: str, **extra: object) -> Finding:
    return Finding(probe="compile.eager", status=status, **extra)  # type: ignore[arg-type]


def test_report_is_one_table_and_says_what_was_not_tried() -> None:
    verify = {"reproduces": False, "exit_code": 1, "golden": "g.json", "golden_digest": "sha256:" + "0" * 64,
              "manifest_digest": "m", "golden_manifest_digest": "m", "tolerance": "bitwise", "repeat": 1,
              "golden_env": False, "counts": {}, "probes": [], "differences": []}
    report = ExplainReport.model_validate({
        "golden": "g.json", "golden_digest": "sha256:" + "0" * 64, "reproduces": False, "exit_code": 1,
        "budget_seconds": 10, "verify": verify, "not_tried": ["ONEDNN_MAX_CPU_ISA=AVX2"],
        "candidates": [CandidateOutcome(id="ONEDNN_MAX_CPU_ISA=AVX2", kind="isa", reason="r",
                                        status="not tried (budget)").model_dump(),
                       CandidateOutcome(id="X=1", kind="environment", reason="r", status="crashed",
                                        detail="the probe process failed (exit -11)").model_dump()],
        "findings": [_finding("fixed", fixed_by="unset OMP_NUM_THREADS", env={"OMP_NUM_THREADS": None}).model_dump()],
        "emit_env": {"OMP_NUM_THREADS": None}, "emit_complete": True})
    text = render_explain(report)
    assert "compile.eager" in text and "fixed" in text and "unset OMP_NUM_THREADS" in text
    assert "not tried within the 10 s budget: ONEDNN_MAX_CPU_ISA=AVX2" in text
    assert "could not be tried (crashed): X=1" in text
    assert "reproduces with: unset OMP_NUM_THREADS" in text
    assert _finding("fixed", fixed_by="A=1").proof().startswith("fixed by A=1")
