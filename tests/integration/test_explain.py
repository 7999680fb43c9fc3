"""explain for real: the other CPU vendor's golden, a golden of this machine, an injected cause.

goldens/cpu-reference.json is an AMD EPYC Zen 4, goldens/intel-xeon-amx-2vcpu.json an Intel Xeon
with AMX; whichever CI runs on, one of them is "this CPU" and the other is not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envlock.golden import load_golden
from tests.helpers import GOLDENS, cpu_identity, env_with, envlock_cli, this_cpu

pytestmark = [pytest.mark.tf, pytest.mark.slow]


@pytest.mark.parametrize("machine", sorted(GOLDENS))
def test_explain_the_golden_of_each_machine_kind(machine: str, tensorflow_required: None, tmp_path: Path) -> None:
    golden_path = GOLDENS[machine]
    report_file, env_file = tmp_path / "explain.json", tmp_path / "env.sh"
    proc = envlock_cli("explain", str(golden_path), "--report", str(report_file), "--emit-env", str(env_file))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    report = json.loads(report_file.read_text())
    assert report["exit_code"] == proc.returncode

    if cpu_identity(load_golden(golden_path).manifest.cpu) == cpu_identity(this_cpu()):
        assert proc.returncode == 0 and report["findings"] == [], proc.stdout
        assert "nothing to explain" in proc.stdout
        return

    # The other vendor: every drifting probe ends proved (fixed / partly, by a candidate that ran)
    # or hardware-bound with its evidence -- never a bare guess -- and names what differs first.
    assert proc.returncode == 1 and report["findings"], proc.stdout
    tried = {c["id"] for c in report["candidates"] if c["status"] == "tried"}
    for finding in report["findings"]:
        assert finding["status"] in ("fixed", "partly", "hardware-bound"), finding
        if finding["status"] in ("fixed", "partly"):
            assert finding["fixed_by"] in tried
        else:
            assert "not fixable by configuration on this machine" in finding["detail"]
        loc = finding["localisation"]
        assert loc["first_difference"], finding
        assert loc["first_difference"] in proc.stdout
    assert report["not_tried"] == [], "the default budget must cover the cross-vendor case"
    # Always written: the environment that reproduces, or a file whose sourcing fails saying none does.
    reproducing = report["emit_env"] is not None or bool(report["emit_affinity"])
    assert ("no environment reproduces" in env_file.read_text()) != reproducing


def test_an_injected_cause_is_proved_and_verify_says_so(tensorflow_required: None, tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    probes = "matmul.f32,rng.global_seed"
    proc = envlock_cli("capture", "--golden", "-o", str(golden), "--probes", probes)
    assert proc.returncode == 0, proc.stderr[-2000:]
    onednn_on = json.loads(golden.read_text())["manifest"]["tensorflow"]["onednn_enabled"]
    flipped = "0" if onednn_on else "1"
    env_file = tmp_path / "env.sh"
    proc = envlock_cli("verify", str(golden), "--explain", env=env_with(TF_ENABLE_ONEDNN_OPTS=flipped))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "proved: fixed by unset TF_ENABLE_ONEDNN_OPTS" in proc.stdout, proc.stdout
    proc = envlock_cli("explain", str(golden), "--emit-env", str(env_file), "--budget", "60",
                       env=env_with(TF_ENABLE_ONEDNN_OPTS=flipped))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "matmul.f32" in proc.stdout and "fixed" in proc.stdout
    assert "unset TF_ENABLE_ONEDNN_OPTS" in env_file.read_text()


def test_a_budget_too_small_lists_the_candidates_it_skipped(tensorflow_required: None, tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    assert envlock_cli("capture", "--golden", "-o", str(golden), "--probes", "numpy.matmul").returncode == 0
    proc = envlock_cli("explain", str(golden), "--json", "--budget", "1", env=env_with(OPENBLAS_NUM_THREADS="1"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["not_tried"] and report["findings"][0]["status"] == "not proved"
