"""envlock.lockdown() with real TensorFlow, each case in a fresh process (the way a user's script runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envlock.golden import load_golden
from tests.helpers import REPO_ROOT, env_with

pytestmark = [pytest.mark.tf, pytest.mark.slow]

EXAMPLE = REPO_ROOT / "examples" / "train_under_lockdown.py"


def _python(code_or_path: str | Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(code_or_path), *args] if isinstance(code_or_path, Path) else \
        [sys.executable, "-c", code_or_path, *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)




def test_seed_examples_train_bitwise_identical_twice(tensorflow_required: None, tmp_path: Path) -> None:
    outs = [tmp_path / "run1.npz", tmp_path / "run2.npz"]
    for out in outs:
        proc = _python(EXAMPLE, "--out", str(out), env=env_with())
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "weights sha256:" in proc.stdout
    first, second = np.load(outs[0]), np.load(outs[1])
    assert sorted(first.files) == sorted(second.files) and len(first.files) >= 8
    for name in first.files:
        assert first[name].tobytes() == second[name].tobytes(), name
    # ...and training really trained: weights moved away from a seeded init that differs per seed.
    assert not np.array_equal(first["train_model.0"], np.zeros_like(first["train_model.0"]))


AFTER_TF = """
import json, sys, warnings
import tensorflow as tf
tf.constant(1.0) + 1.0  # TF's runtime (and its thread pools) now exist
import envlock
from envlock.errors import DriftFound
from envlock.fingerprint.tf import collect_tensorflow_info
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    report = envlock.lockdown(seed=3, intra_op_threads=1)
try:
    envlock.lockdown(seed=3, golden=sys.argv[1], strict=True)
    strict = "passed"
except DriftFound as exc:
    strict = str(exc)
print(json.dumps({"problems": report.problems, "warnings": [str(w.message) for w in caught], "strict": strict,
                  "determinism": collect_tensorflow_info().op_determinism}))
"""


def test_lockdown_after_tf_started_reports_what_it_cannot_lock(golden_path: Path) -> None:
    flipped = "0" if load_golden(golden_path).manifest.tensorflow.onednn_enabled else "1"
    proc = _python(AFTER_TF, str(golden_path), env=env_with(PYTHONHASHSEED=None, TF_ENABLE_ONEDNN_OPTS=flipped))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    problems = " | ".join(result["problems"])
    assert "PYTHONHASHSEED" in problems and "threads could not be set to 1" in problems
    assert len(result["warnings"]) == len(result["problems"])
    assert result["determinism"] is True
    # strict with a golden: TF already runs with the wrong oneDNN setting -> refused, and why.
    assert "TF_ENABLE_ONEDNN_OPTS" in result["strict"]


BEFORE_TF = """
import json, sys
import envlock
report = envlock.lockdown(golden=sys.argv[1], strict=True)
import tensorflow as tf
from envlock.fingerprint.tf import collect_tensorflow_info
print(json.dumps({"changes": report.environment_changes, "seed": report.seed,
                  "threads": [report.intra_op_threads, report.inter_op_threads],
                  "onednn": collect_tensorflow_info().onednn_enabled}))
"""


def test_lockdown_with_golden_before_tf_applies_the_golden_environment(golden_path: Path) -> None:
    golden = load_golden(golden_path)
    flipped = "0" if golden.manifest.tensorflow.onednn_enabled else "1"
    proc = _python(BEFORE_TF, str(golden_path), env=env_with(PYTHONHASHSEED="0", TF_ENABLE_ONEDNN_OPTS=flipped))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["changes"]["TF_ENABLE_ONEDNN_OPTS"] == golden.lockdown.environment.get("TF_ENABLE_ONEDNN_OPTS")
    assert result["onednn"] == golden.manifest.tensorflow.onednn_enabled
    assert result["seed"] == golden.lockdown.seed
    assert result["threads"] == [golden.lockdown.intra_op_threads, golden.lockdown.inter_op_threads]


TWICE = """
import sys
import envlock
envlock.lockdown(golden=sys.argv[1], strict=True)
envlock.lockdown(golden=sys.argv[1], strict=True)  # e.g. to reseed: its own controls are not drift
print("ok")
"""


def test_strict_lockdown_twice_does_not_mistake_its_own_controls_for_drift(golden_path: Path) -> None:
    proc = _python(TWICE, str(golden_path), env=env_with(PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"
