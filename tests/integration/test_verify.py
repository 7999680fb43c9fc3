"""verify with real TensorFlow: record-then-verify, injected perturbations, --golden-env, bad goldens.

Each verify costs one TF import in a fresh child plus its probes, so perturbation tests run a
small `--probes` subset: one probe the perturbation moves, one it must not move.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envlock.golden import load_golden, save_golden, seal
from envlock.models import with_digest
from envlock.probes.registry import all_probes
from tests.helpers import env_with, envlock_cli, reseal

pytestmark = [pytest.mark.tf, pytest.mark.slow]




def _verify(golden: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    proc = envlock_cli("verify", str(golden), "--json", *args, env=env)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["exit_code"] == proc.returncode
    return proc.returncode, report


def _by_name(report: dict) -> dict[str, dict]:
    return {p["name"]: p for p in report["probes"]}


def test_record_then_verify_reproduces_bitwise(golden_path: Path, tmp_path: Path) -> None:
    # The golden was recorded in one fresh process, this verify runs in another: the whole
    # suite must be bitwise identical (on this CPU, seeded TF is deterministic run to run).
    report_file = tmp_path / "report.json"
    code, report = _verify(golden_path, "--report", str(report_file))
    probes = _by_name(report)
    not_identical = {n: p["status"] for n, p in probes.items() if p["status"] not in ("identical", "skipped")}
    assert code == 0 and report["reproduces"] and not not_identical
    gpu_probes = {name for name, probe in all_probes().items() if probe.needs_gpu}
    assert {n for n, p in probes.items() if p["status"] == "skipped"} <= gpu_probes
    assert json.loads(report_file.read_text()) == report
    assert report["golden_digest"] == load_golden(golden_path).digest


def test_subset_in_another_order_gives_the_same_bits(golden_path: Path) -> None:
    # Probes are reseeded one by one: a subset, in reverse order, must match the full-suite golden.
    code, report = _verify(golden_path, "--probes", "training.keras_fit,init.keras,rng.global_seed", "--repeat", "1")
    assert code == 0 and [p["status"] for p in report["probes"]] == ["identical"] * 3


def test_golden_is_small_and_complete(golden_path: Path) -> None:
    golden = load_golden(golden_path)
    assert golden_path.stat().st_size < 400_000
    assert golden.lockdown.intra_op_threads and golden.lockdown.op_determinism
    assert golden.manifest.tensorflow.status == "present" and golden.repeat >= 2
    recorded = [p for p in golden.probes if p.status == "ok"]
    assert len(recorded) >= 20 and all(o.sha256.startswith("sha256:") for p in recorded for o in p.outputs)


def _flipped_onednn(golden_path: Path) -> str:
    enabled = load_golden(golden_path).manifest.tensorflow.onednn_enabled
    return "0" if enabled else "1"


PERTURBATIONS = [
    # (env change, probe it moves, probe it must not move, accepted top causes)
    pytest.param("onednn", "matmul.f32", "compile.xla",
                 {"environment.TF_ENABLE_ONEDNN_OPTS", "tensorflow.onednn_enabled"}, id="TF_ENABLE_ONEDNN_OPTS"),
    pytest.param({"ONEDNN_MAX_CPU_ISA": "SSE41"}, "matmul.f32", "rng.global_seed",
                 {"environment.ONEDNN_MAX_CPU_ISA"}, id="ONEDNN_MAX_CPU_ISA"),
    pytest.param({"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"}, "compile.function",
                 "compile.eager", {"environment.TF_XLA_FLAGS", "tensorflow.xla_jit"}, id="TF_XLA_FLAGS"),
]


@pytest.mark.parametrize(("change", "moved", "unmoved", "causes"), PERTURBATIONS)
def test_perturbation_is_drift_with_the_right_cause_and_golden_env_reproduces(
    golden_path: Path, change: object, moved: str, unmoved: str, causes: set[str]
) -> None:
    changes = {"TF_ENABLE_ONEDNN_OPTS": _flipped_onednn(golden_path)} if change == "onednn" else dict(change)
    env = env_with(**changes)
    probes = f"{moved},{unmoved}"
    code, report = _verify(golden_path, "--probes", probes, "--repeat", "1", env=env)
    verdicts = _by_name(report)
    assert code == 1 and not report["reproduces"]
    drift = verdicts[moved]
    assert drift["status"] == "drift" and drift["mismatched"] > 0
    assert drift["max_ulp"] > 0 and 0 < drift["max_rel_error"] < 1e-3  # round-off, not garbage
    assert drift["causes"][0]["path"] in causes, drift["causes"][:2]
    assert verdicts[unmoved]["status"] == "identical"
    assert report["suggestion"] and "--golden-env" in report["suggestion"]

    code, report = _verify(golden_path, "--probes", probes, "--repeat", "1", "--golden-env", env=env)
    assert code == 0 and report["golden_env"], [(p["name"], p["status"]) for p in report["probes"]]


def test_human_table_names_the_cause(golden_path: Path) -> None:
    env = env_with(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = envlock_cli("verify", str(golden_path), "--probes", "numpy.matmul", "--repeat", "1", env=env)
    if proc.returncode == 0:
        pytest.skip("OpenBLAS already runs single-threaded here: nothing to perturb")
    assert proc.returncode == 1
    assert "numpy.matmul" in proc.stdout and "drift" in proc.stdout and "OpenBLAS" in proc.stdout
    assert "DOES NOT REPRODUCE" in proc.stdout


def test_tampered_golden_is_exit_2(golden_path: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.json"
    data = json.loads(golden_path.read_text())
    data["lockdown"]["seed"] = 7
    tampered.write_text(json.dumps(data))
    proc = envlock_cli("verify", str(tampered))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "integrity digest" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("content", "expected"), [
    ("", "empty"),
    ('{"kind": "envlock.golden", "schema_version": 1, "probes": [', "truncated"),
    ('{"kind": "envlock.manifest", "schema_version": 1}', "not an envlock.golden file"),
    ('{"kind": "envlock.golden", "schema_version": 99}', "newer"),
    ('{"kind": "envlock.golden", "schema_version": 1, "repeat": 2}', "no integrity digest"),
    (json.dumps(reseal({"kind": "envlock.golden", "schema_version": 1, "repeat": 2})), "field"),
])
def test_malformed_golden_is_exit_2_with_one_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    proc = envlock_cli("verify", str(path))
    assert proc.returncode == 2 and expected in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stdout == ""


def test_golden_from_environment_variable(golden_path: Path) -> None:
    proc = envlock_cli("verify", "--probes", "rng.op_seed", "--repeat", "1",
                       env=env_with(ENVLOCK_GOLDEN=str(golden_path)))
    assert proc.returncode == 0 and "REPRODUCES" in proc.stdout


def test_tensorflow_missing_is_exit_3(golden_path: Path, tmp_path: Path) -> None:
    # A `tensorflow` package that fails to import, first on the child's path: what a machine
    # without TF looks like to the probe process.
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('simulated: no TensorFlow here')\n")
    env = env_with(PYTHONPATH=os.pathsep.join(filter(None, [str(fake.parent), os.environ.get("PYTHONPATH")])))
    proc = envlock_cli("verify", str(golden_path), "--probes", "rng.op_seed", env=env)
    assert proc.returncode == 3 and "TensorFlow" in proc.stderr and "simulated" in proc.stderr


def test_unknown_probe_is_exit_2(golden_path: Path) -> None:
    proc = envlock_cli("verify", str(golden_path), "--probes", "matmul.f32,no.such.probe")
    assert proc.returncode == 2 and "no.such.probe" in proc.stderr


def test_list_probes() -> None:
    proc = envlock_cli("verify", "--list-probes")
    assert proc.returncode == 0 and "matmul.f32" in proc.stdout and "stable" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_onednn_default_by_cpu_trap(golden_path: Path, tmp_path: Path) -> None:
    # Simulate finding 1 of docs/causes.md: a reference CPU on which TF's oneDNN default was the
    # opposite of this one's, with TF_ENABLE_ONEDNN_OPTS unset on both. Record the reference
    # bits with the flag flipped, then erase the flag from the golden as if its CPU had chosen.

    here_on = bool(load_golden(golden_path).manifest.tensorflow.onednn_enabled)
    recorded = tmp_path / "other-cpu.json"
    proc = envlock_cli("capture", "--golden", "--probes", "matmul.f32,rng.op_seed", "--repeat", "1",
                       "-o", str(recorded), env=env_with(TF_ENABLE_ONEDNN_OPTS="0" if here_on else "1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    golden = load_golden(recorded)
    manifest = golden.manifest.model_copy(deep=True)
    manifest.environment.pop("TF_ENABLE_ONEDNN_OPTS", None)
    manifest.cpu.isa.avx512_vnni = not here_on
    lockdown = golden.lockdown.model_copy(deep=True)
    lockdown.environment.pop("TF_ENABLE_ONEDNN_OPTS", None)
    save_golden(recorded, seal(golden.model_copy(update={"manifest": with_digest(manifest), "lockdown": lockdown})))

    code, report = _verify(recorded, "--repeat", "1", env=env_with(TF_ENABLE_ONEDNN_OPTS=None))
    verdicts = _by_name(report)
    assert code == 1 and verdicts["rng.op_seed"]["status"] == "identical"
    top = verdicts["matmul.f32"]["causes"][0]
    assert top["rule"] == "onednn-default-by-cpu" and "AVX512_VNNI" in top["reason"]
    assert report["suggestion"] is None  # the environments agree: --golden-env cannot help here
