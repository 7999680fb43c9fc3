"""This machine, live, without TensorFlow: what every capture must satisfy, whatever the CPU.

Unit tests never read the host (they run on the recorded machines in tests/data/manifests);
the tests here are the ones whose point is the live machine, and they assert only what holds on
every machine (AMD or Intel, with or without a GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envlock.capture import capture_manifest
from envlock.cli import app
from envlock.diff import diff_manifests
from envlock.fingerprint.gpu import collect_gpu
from envlock.models import MANIFEST_SCHEMA_VERSION, Manifest, load_manifest

runner = CliRunner()


@pytest.fixture(scope="module")
def manifest_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "manifest.json"
    result = runner.invoke(app, ["capture", "--no-tf", "-o", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_capture_writes_a_sorted_versioned_manifest(manifest_file: Path) -> None:
    text = manifest_file.read_text()
    data = json.loads(text)
    assert data["kind"] == "envlock.manifest" and data["schema_version"] == MANIFEST_SCHEMA_VERSION
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    manifest = load_manifest(manifest_file)
    assert manifest.tensorflow.status == "not_captured"
    assert manifest.digest.startswith("sha256:")
    assert not list(manifest_file.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_capture_prints_a_summary_not_json() -> None:
    result = runner.invoke(app, ["capture", "--no-tf"])
    assert result.exit_code == 0
    assert "envlock manifest sha256:" in result.stdout
    assert "cpu" in result.stdout and "not captured (--no-tf)" in result.stdout
    assert "unknown" not in result.stdout.lower()


def test_capture_json_is_a_manifest() -> None:
    result = runner.invoke(app, ["capture", "--no-tf", "--json"])
    assert result.exit_code == 0
    Manifest.model_validate(json.loads(result.stdout))


def test_capture_is_stable() -> None:
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0", "HOME": "/root"}
    first = capture_manifest(include_tf=False, environ=environ)
    again = capture_manifest(include_tf=False, environ={**environ, "HOME": "/elsewhere"})
    assert again.digest == first.digest
    assert diff_manifests(first, again) == []


def test_a_no_tf_capture_never_imports_tensorflow() -> None:
    # In a fresh process: this pytest process's sys.modules depends on which tests ran before.
    code = ("import sys; from envlock.capture import capture_manifest; capture_manifest(include_tf=False); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert proc.stdout.split() == ["False", "False"]


def test_this_machine_has_no_nvidia_driver() -> None:
    # The real pynvml on this GPU-less machine: the library is missing, and we say so.
    info = collect_gpu()
    assert info.status in {"no_driver", "ok", "no_gpu"}
    if info.status == "no_driver":
        assert info.devices == []


def test_collecting_numerics_leaves_the_environment_as_it_was() -> None:
    # threadpoolctl sets KMP_DUPLICATE_LIB_OK on import; run in a fresh process so the import happens.
    code = ("import os; from envlock.fingerprint.numeric import collect_numeric; before = dict(os.environ); "
            "info = collect_numeric(); assert info.blas, 'no BLAS found'; "
            "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())")
    env = {k: v for k, v in os.environ.items() if k != "KMP_DUPLICATE_LIB_OK"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-800:]
def test_real_fingerprint_check_never_imports_tensorflow() -> None:
    """In a fresh process: import every daemon module, capture and diff for real, then look.

    threadpoolctl is imported FIRST, as any library might: it sets KMP_DUPLICATE_LIB_OK in
    os.environ. Both checks must use the environment taken at start-up (before it), so that
    variable must not show up as drift; with a snapshot taken when envlock.daemon.checks is
    imported it did. Two captures in one process also prove the capture's own imports don't leak."""
    script = textwrap.dedent("""
        import os, sys
        os.environ.pop("KMP_DUPLICATE_LIB_OK", None)
        environ = dict(os.environ)  # what `envlock watch` snapshots at start-up
        import threadpoolctl
        assert "KMP_DUPLICATE_LIB_OK" in os.environ
        import envlock.daemon.loop, envlock.daemon.http, envlock.daemon.nfd, envlock.cli.watch
        from envlock.capture import capture_manifest
        from envlock.daemon.checks import fingerprint_check
        golden_manifest = capture_manifest(include_tf=False, environ=environ)
        result = fingerprint_check(golden_manifest, golden_digest=None, environ=environ)
        print(result.outcome, result.reason, "tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["pass", "None", "False", "False"]


