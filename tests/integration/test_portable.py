"""The portable profile for real: the other vendor's golden, recorded under it, reproduces here.

goldens/amd-epyc-zen4-2vcpu-portable.json was recorded on an AMD EPYC Zen 4 and
goldens/intel-xeon-amx-2vcpu-portable.json on an Intel Xeon with AMX, both with
`capture --golden --portable --probe-module examples/envlock_probes.py` (docs/portable.md). Whichever
machine CI runs on, the golden of the other vendor is verified here with no flag (the golden carries its
profile): every probe the profile covers must be bit-identical, the dense network's gradient, a Keras
fit, a MirroredStrategy step, the hardware-arithmetic probes and the example user probes among them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envlock.golden import load_golden
from tests.helpers import REPO_ROOT, cpu_identity, env_with, envlock_cli, this_cpu

pytestmark = [pytest.mark.tf, pytest.mark.slow]

PORTABLE = {
    "amd-epyc-zen4": REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu-portable.json",
    "intel-xeon-amx": REPO_ROOT / "goldens" / "intel-xeon-amx-2vcpu-portable.json",
}
EXAMPLES = str(REPO_ROOT / "examples" / "envlock_probes.py")
MUST_AGREE = {"training.keras_fit", "compile.function", "compile.eager", "distribute.mirrored_step",
              "layers.batchnorm_train", "hw.reciprocal", "hw.rsqrt", "hw.layernorm_grad", "mixed.bf16_matmul",
              "user.seed_doc_train_model", "user.seed_doc_fit_predict"}


def _other_vendors() -> list[Path]:
    here = cpu_identity(this_cpu())
    others = [p for p in PORTABLE.values() if cpu_identity(load_golden(p).manifest.cpu) != here]
    assert others, "this machine has the CPU of every portable golden: nothing to cross"
    return others


def test_the_other_vendors_portable_golden_reproduces_here(tensorflow_required: None, tmp_path: Path) -> None:
    for golden in _other_vendors():
        report_file = tmp_path / "report.json"
        proc = envlock_cli("verify", str(golden), "--probe-module", EXAMPLES, "--report", str(report_file))
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        report = json.loads(report_file.read_text())
        assert report["profile"] == "portable v1"
        probes = {p["name"]: p for p in report["probes"]}
        covered = {n: p for n, p in probes.items() if p["portable"] is True}
        assert set(covered) >= MUST_AGREE, sorted(MUST_AGREE - set(covered))
        moved = {n: p["status"] for n, p in covered.items() if p["status"] != "identical"}
        assert not moved, f"{golden.name}: covered probes differ across vendors: {moved}\n{proc.stdout}"
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "portable v1 profile" in proc.stdout


LOCKDOWN_AFTER_TF = """
import json, warnings
import tensorflow as tf
import envlock
from envlock.errors import DriftFound
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    report = envlock.lockdown(portable=True)
try:
    envlock.lockdown(portable=True, strict=True)
    strict = "passed"
except DriftFound as exc:
    strict = str(exc)
print(json.dumps({"warnings": [str(w.message) for w in caught], "strict": strict, "profile": report.profile}))
"""

LOCKDOWN_BEFORE_TF = """
import json, os
import envlock
report = envlock.lockdown(portable=True, strict=True)
import tensorflow as tf
print(json.dumps({"profile": report.profile, "TF_XLA_FLAGS": os.environ.get("TF_XLA_FLAGS"),
                  "xla": tf.config.optimizer.get_jit()}))
"""


def test_lockdown_portable_before_and_after_tensorflow(tensorflow_required: None) -> None:
    env = env_with(TF_XLA_FLAGS=None, XLA_FLAGS=None, ONEDNN_MAX_CPU_ISA=None, PYTHONHASHSEED="0",
                   TF_ENABLE_ONEDNN_OPTS="1")
    before = subprocess.run([sys.executable, "-c", LOCKDOWN_BEFORE_TF], capture_output=True, text=True, env=env,
                            timeout=300, check=False)
    assert before.returncode == 0, before.stderr[-2000:]
    result = json.loads(before.stdout.splitlines()[-1])
    assert result["profile"] == "portable v1" and "--tf_xla_min_cluster_size=1" in result["TF_XLA_FLAGS"]

    after = subprocess.run([sys.executable, "-c", LOCKDOWN_AFTER_TF], capture_output=True, text=True, env=env,
                           timeout=300, check=False)
    assert after.returncode == 0, after.stderr[-2000:]
    result = json.loads(after.stdout.splitlines()[-1])
    assert any("before TensorFlow is imported" in w for w in result["warnings"]), result
    assert "before TensorFlow is imported" in result["strict"]
