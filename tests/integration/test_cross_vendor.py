"""Cross-vendor, for real: verify the goldens recorded on each machine kind CI runs on.

goldens/cpu-reference.json was recorded on an AMD EPYC Zen 4, goldens/intel-xeon-amx-2vcpu.json on
an Intel Xeon with AMX (tests/data/README.md has the provenance), both with TensorFlow 2.21.0 CPU.
Whichever machine CI runs on:
- a golden whose CPU (vendor, family, model, flags) is this machine's must reproduce (exit 0);
- any other golden must reproduce, or drift only in canary probes with every stable probe
  identical, and name a CPU difference among the causes of each drift.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from envlock.golden import load_golden
from tests.helpers import GOLDENS, cpu_identity, envlock_cli, this_cpu

pytestmark = [pytest.mark.tf, pytest.mark.slow]


@pytest.mark.parametrize("machine", sorted(GOLDENS))
def test_verify_the_golden_of_each_machine_kind(machine: str, tensorflow_required: None, tmp_path: Path) -> None:
    golden_path = GOLDENS[machine]
    golden = load_golden(golden_path)
    # Like with like: the goldens and this venv must hold the same TensorFlow and numpy
    # (goldens/constraints.txt pins them); otherwise the stable probes move for a version reason.
    recorded = {d.name: d.version for d in golden.manifest.python.distributions}
    for name in ("tensorflow-cpu", "numpy", "keras"):
        assert metadata.version(name) == recorded[name], f"{name}: install per goldens/constraints.txt"

    report_file = tmp_path / "report.json"
    proc = envlock_cli("verify", str(golden_path), "--report", str(report_file))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    report = json.loads(report_file.read_text())
    assert report["exit_code"] == proc.returncode
    probes = {p["name"]: p for p in report["probes"]}
    assert probes, "verify compared no probe"

    if cpu_identity(golden.manifest.cpu) == cpu_identity(this_cpu()):
        moved = {n: p["status"] for n, p in probes.items() if p["status"] not in ("identical", "skipped")}
        assert proc.returncode == 0 and not moved, f"same CPU as the golden, yet: {moved}\n{proc.stdout}"
        return

    # Another CPU: only canaries and hardware-arithmetic probes may move, stable probes hold bit for bit,
    # and a CPU difference is named.
    assert all(p["status"] in ("identical", "skipped") for p in probes.values() if p["group"] == "stable"), \
        proc.stdout
    drifted = {n: p for n, p in probes.items() if p["status"] not in ("identical", "skipped")}
    assert all(p["status"] in ("drift", "within_tolerance") for p in drifted.values()), proc.stdout
    assert all(p["group"] != "stable" for p in drifted.values())
    assert (proc.returncode == 1) == bool(drifted)
    for name, probe in drifted.items():
        cause_paths = [c["path"] for c in probe["causes"]]
        assert any(path.startswith("cpu.") for path in cause_paths), f"{name}: no CPU difference among {cause_paths}"
    cpu_differences = [d["path"] for d in report["differences"] if d["path"].startswith("cpu.")]
    assert cpu_differences, "the manifests of two CPU kinds must differ in cpu.*"
