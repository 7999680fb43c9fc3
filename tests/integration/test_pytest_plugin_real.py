"""The pytest plugin on this machine, the way a user runs it: pytest in a fresh process capturing
the real machine, the real `envlock verify` / `envlock diff` on the golden it writes, and (marked
tf) a TensorFlow matmul pinned with oneDNN off, compared with oneDNN on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envlock.golden import load_golden
from envlock.verdict import PYTEST_PROBE_REASON
from tests.helpers import REPO_ROOT, env_with, envlock_cli

NUMPY_TEST = """
import numpy as np

def test_sums(envlock_regression):
    values = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    envlock_regression.check("cumsum", {"cumsum": np.cumsum(values), "total": values.sum(keepdims=True)})
"""

TF_TEST = """
import numpy as np
import tensorflow as tf

def test_matmul(envlock_regression):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, 1000)).astype(np.float32)
    b = rng.standard_normal((1000, 1000)).astype(np.float32)
    envlock_regression.check("product", tf.matmul(a, b).numpy(), tags=["matmul", "onednn"])
"""


# Each process runs one of these; all of them reach check() at once (a barrier of marker files), as
# pytest-xdist workers or parallel CI jobs recording into one module's golden do.
CONCURRENT_PROCESSES = 8
CONCURRENT_TEST = """
import os
import time
from pathlib import Path

import numpy as np
import pytest

BARRIER = Path(os.environ["BARRIER_DIR"])

@pytest.mark.parametrize("i", range(8))
def test_check(i, envlock_regression):
    (BARRIER / str(i)).touch()
    deadline = time.monotonic() + 120
    while len(list(BARRIER.iterdir())) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    envlock_regression.check("values", {"v": np.arange(4, dtype=np.float32) * i})
"""


def _pytest_argv(*args: str) -> list[str]:
    # Loaded explicitly, autoload off: independent of whether the installed metadata has the entry point.
    return [sys.executable, "-m", "pytest", "-p", "envlock.pytest_plugin", "-p", "no:cacheprovider", "-q", *args]


def _pytest(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(env or env_with())
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(_pytest_argv(*args), capture_output=True, text=True, cwd=project, env=env, timeout=300,
                          check=False)


def test_concurrent_processes_recording_into_one_golden_keep_every_check(tmp_path: Path) -> None:
    # Before the golden was merged under a lock, each process wrote the golden it had read at the
    # start plus its own check: 8 "recorded" checks, 1 kept (pytest-xdist -n 4: 4 of 10).
    (tmp_path / "test_many.py").write_text(CONCURRENT_TEST)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = env_with(BARRIER_DIR=str(barrier), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    processes = [subprocess.Popen(_pytest_argv(f"test_many.py::test_check[{i}]"), cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for i in range(CONCURRENT_PROCESSES)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * CONCURRENT_PROCESSES, outputs
    assert all("recorded test_check[" in out for out in outputs), outputs

    golden = load_golden(tmp_path / "test_many.golden.json")
    assert [p.name for p in golden.probes] == sorted(f"test_check[{i}]::values" for i in range(CONCURRENT_PROCESSES))
    assert (tmp_path / ".test_many.golden.json.lock").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    again = _pytest(tmp_path, env=env)  # one process, all 8 (the barrier's 8 markers are there: no wait)
    assert again.returncode == 0 and f"{CONCURRENT_PROCESSES} passed" in again.stdout, again.stdout[-3000:]
    assert "recorded" not in again.stdout  # every check compared with what was kept


def test_a_golden_recorded_by_pytest_is_read_by_verify_and_diff(tmp_path: Path) -> None:
    (tmp_path / "test_sums.py").write_text(NUMPY_TEST)
    first = _pytest(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    golden_file = tmp_path / "test_sums.golden.json"
    assert "recorded test_sums::cumsum" in first.stdout
    golden = load_golden(golden_file)
    assert golden.manifest.tensorflow.status == "not_captured"  # the plugin never imports TF

    again = _pytest(tmp_path)
    assert again.returncode == 0 and "1 passed" in again.stdout, again.stdout[-3000:]

    verify = envlock_cli("verify", str(golden_file), "--json")
    assert verify.returncode == 3, verify.stderr  # read, but nothing verify itself can re-run: not a pass
    report = json.loads(verify.stdout)
    assert [(p["name"], p["status"], p["reason"]) for p in report["probes"]] == [
        ("test_sums::cumsum", "skipped", PYTEST_PROBE_REASON)]
    assert report["differences"] == []  # the same machine and environment as the recording
    shown = envlock_cli("verify", str(golden_file))
    assert shown.returncode == 3 and "recorded by the envlock pytest plugin" in shown.stdout, shown.stderr

    manifest = tmp_path / "here.json"
    assert envlock_cli("capture", "--no-tf", "-o", str(manifest)).returncode == 0
    diff = envlock_cli("diff", str(golden_file), str(manifest))
    assert diff.returncode == 0, diff.stdout + diff.stderr


@pytest.mark.tf
@pytest.mark.slow
def test_a_tensorflow_result_drifts_with_onednn_and_the_failure_names_it(tmp_path: Path,
                                                                          tensorflow_required: None) -> None:
    (tmp_path / "test_model.py").write_text(TF_TEST)
    recorded = _pytest(tmp_path, env=env_with(TF_ENABLE_ONEDNN_OPTS="0"))
    assert recorded.returncode == 0, recorded.stdout[-3000:]
    assert _pytest(tmp_path, env=env_with(TF_ENABLE_ONEDNN_OPTS="0")).returncode == 0

    moved = _pytest(tmp_path, env=env_with(TF_ENABLE_ONEDNN_OPTS="1"))
    assert moved.returncode == 1, moved.stdout[-3000:]
    out = moved.stdout
    assert "envlock: test_matmul::product does not reproduce its golden (bitwise)" in out
    assert "(tags: matmul, onednn; group: canary)" in out
    first_cause = out.split("most likely first:\n", 1)[1].splitlines()[0]
    assert first_cause.startswith("  1. environment.TF_ENABLE_ONEDNN_OPTS '0' -> '1': oneDNN optimisations"), out


def test_the_entry_point_as_declared_autoloads_the_plugin(tmp_path: Path) -> None:
    # What an install writes from pyproject.toml (setuptools copies [project.entry-points] into
    # entry_points.txt), on a sys.path entry of its own; pytest then loads the plugin unasked.
    import tomllib  # lazy: Python 3.11+ (what CI runs); envlock itself supports 3.10

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    dist_info = tmp_path / "site" / "envlock_entry_point_check-0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: envlock-entry-point-check\nVersion: 0\n")
    (dist_info / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{name} = {value}\n" for name, value in declared.items()))
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_autoload.py").write_text(
        "import envlock.pytest_plugin\n\n"
        "def test_loaded(request, envlock_regression):\n"
        "    assert request.config.pluginmanager.get_plugin('envlock') is envlock.pytest_plugin\n"
        "    assert envlock_regression.golden_path.name == 'test_autoload.golden.json'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(REPO_ROOT)])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_autoload.py"],
                          capture_output=True, text=True, cwd=project, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
