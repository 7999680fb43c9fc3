"""Capture this machine for real, with TensorFlow, in a fresh process (one full capture per session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psutil
import pytest

from envlock.golden import load_any_manifest
from envlock.models import compute_digest, load_manifest
from tests.helpers import envlock_cli

pytestmark = pytest.mark.tf

# TF turns oneDNN on by default only on CPUs with these (docs/causes.md, finding 1).
ONEDNN_DEFAULT_ON_FEATURES = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")


@pytest.fixture(scope="session")
def full_capture(tensorflow_required: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("capture-real") / "manifest.json"
    proc = envlock_cli("capture", "-o", str(path))
    assert proc.returncode == 0, proc.stderr
    return path, proc.stdout


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def test_tensorflow_section_matches_the_installed_tensorflow(full_capture: tuple[Path, str]) -> None:
    manifest = load_manifest(full_capture[0])
    tf = manifest.tensorflow
    assert tf.status == "present", tf.detail
    assert tf.version == _dist_version("tensorflow", "tensorflow-cpu", "tf-nightly")
    assert tf.keras_version == _dist_version("keras")
    assert tf.git_version and tf.compiler
    assert tf.build_info is not None and tf.is_cuda_build == tf.build_info.get("is_cuda_build")
    assert tf.physical_devices and any("CPU:0" in d for d in tf.physical_devices)
    assert tf.xla_jit is not None and tf.op_determinism is False
    names = {lib.name for lib in tf.loaded_libraries}
    assert "libtensorflow_framework" in names  # read from the TF child's own /proc/self/maps
    assert "tensorflow" not in sys.modules  # the test process never imported it


def test_onednn_state_is_the_effective_one(full_capture: tuple[Path, str]) -> None:
    manifest = load_manifest(full_capture[0])
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting in {"0", "1"}:
        expected = setting == "1"
    elif manifest.host.architecture == "x86_64":
        expected = any(getattr(manifest.cpu.isa, f) for f in ONEDNN_DEFAULT_ON_FEATURES)
    else:
        pytest.skip("oneDNN's default is only documented here for x86_64")
    assert manifest.tensorflow.onednn_enabled is expected


def test_the_rest_of_the_machine_is_filled_in(full_capture: tuple[Path, str]) -> None:
    manifest = load_manifest(full_capture[0])
    assert manifest.digest == compute_digest(manifest)
    assert manifest.host.kernel and manifest.host.glibc and manifest.host.container_runtime
    assert manifest.cpu.logical_cores and manifest.cpu.flags and manifest.cpu.affinity
    assert manifest.cpu.affinity == sorted(os.sched_getaffinity(0))
    assert manifest.memory.total_bytes and manifest.memory.total_bytes > 2**30
    assert manifest.numeric.numpy_version == _dist_version("numpy")
    assert manifest.numeric.blas and manifest.numeric.simd_dispatch is not None
    assert manifest.gpu.status in {"ok", "no_gpu", "no_driver", "nvml_unavailable"}
    names = {d.name for d in manifest.python.distributions}
    assert {"numpy", "pydantic", "typer"} <= names and "envlock" not in names
    assert all(d.record_sha256 for d in manifest.python.distributions if d.name == "numpy")
    raw = full_capture[0].read_text()
    assert '"unknown"' not in raw.lower()


def test_summary_mentions_tensorflow_and_onednn(full_capture: tuple[Path, str]) -> None:
    summary = full_capture[1]
    assert "tensorflow" in summary and "oneDNN" in summary
    assert "Traceback" not in summary


def test_no_tf_capture_differs_only_in_the_tensorflow_section(full_capture: tuple[Path, str], tmp_path: Path) -> None:
    no_tf = tmp_path / "no-tf.json"
    proc = envlock_cli("capture", "--no-tf", "-o", str(no_tf))
    assert proc.returncode == 0, proc.stderr
    diff = envlock_cli("diff", str(full_capture[0]), str(no_tf), "--json")
    assert diff.returncode == 1
    paths = [d["path"] for d in json.loads(diff.stdout)["differences"]]
    assert paths and all(p.startswith("tensorflow.") for p in paths), paths


def test_diff_accepts_the_session_golden(full_capture: tuple[Path, str], golden_path: Path) -> None:
    same = envlock_cli("diff", str(golden_path), str(golden_path))
    assert same.returncode == 0, same.stderr
    against = envlock_cli("diff", str(golden_path), str(full_capture[0]), "--json")
    report = json.loads(against.stdout)
    assert report["old"]["digest"] == compute_digest(load_any_manifest(golden_path))
    # Same machine, same software: the golden's manifest is TF as a job finds it (its lockdown
    # is recorded apart), so a plain capture is identical to it.
    assert report["differences"] == [], report["differences"]
    assert against.returncode == 0, against.stderr


def test_a_failed_capture_leaves_no_tensorflow_child_behind(tensorflow_required: None, tmp_path: Path) -> None:
    # The TF child is prestarted before arguments are checked; an early error must kill it.

    proc = envlock_cli("capture", "-o", str(tmp_path / "missing-dir" / "m.json"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    leftovers = [p for p in psutil.process_iter(["cmdline", "ppid"])
                 if "envlock.fingerprint.tf" in " ".join(p.info["cmdline"] or []) and p.info["ppid"] != os.getpid()]
    assert leftovers == [], f"TF child left running: {leftovers}"


def test_a_venv_under_home_leaves_no_home_in_the_manifest(tmp_path: Path) -> None:
    # A venv under $HOME (here a symlink to this one) put the user's home into python.executable.
    home = tmp_path / "someuser"
    home.mkdir()
    (home / "venv").symlink_to(sys.prefix)
    python = home / "venv" / "bin" / Path(sys.executable).name
    proc = subprocess.run([str(python), "-m", "envlock", "capture", "--no-tf", "--json"], capture_output=True,
                          text=True, env={**os.environ, "HOME": str(home)}, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["python"]["executable"] == f"~/venv/bin/{python.name}"
    assert str(home) not in proc.stdout
