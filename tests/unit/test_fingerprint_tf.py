"""TensorFlow info parsing without importing TensorFlow (the real import is an integration test)."""

from __future__ import annotations

import sys

import pytest

from envlock.fingerprint import tf as tf_fingerprint
from envlock.fingerprint.tf import RESULT_MARKER, is_full_capture, parse_build_info, parse_child_output
from envlock.models import TensorflowInfo
from tests.helpers import imported_in_a_fresh_python

# tf.sysconfig.get_build_info() of TF 2.21.0 CPU on this machine, and of a CUDA wheel
# (keys as TF's build_info.py writes them for a CUDA build).
CPU_BUILD = {"is_cuda_build": False, "is_rocm_build": False, "is_tensorrt_build": False}
CUDA_BUILD = {"cpu_compiler": "/usr/lib/llvm-18/bin/clang", "cuda_compute_capabilities": ["sm_60", "sm_70", "sm_80",
              "sm_89", "compute_90"], "cuda_version": "12.5.1", "cudnn_version": "9", "is_cuda_build": True,
              "is_rocm_build": False, "is_tensorrt_build": False}


def test_cpu_build_info() -> None:
    typed = parse_build_info(CPU_BUILD)
    assert typed == {"is_cuda_build": False, "is_rocm_build": False, "built_cuda_version": None,
                     "built_cudnn_version": None}


def test_cuda_build_info() -> None:
    typed = parse_build_info(CUDA_BUILD)
    assert typed["is_cuda_build"] is True
    assert (typed["built_cuda_version"], typed["built_cudnn_version"]) == ("12.5.1", "9")


def test_empty_build_info_is_unknown() -> None:
    assert set(parse_build_info({}).values()) == {None}


def test_child_output_round_trip() -> None:
    info = TensorflowInfo(status="present", version="2.21.0", onednn_enabled=True, xla_jit="off")
    stdout = "some TF banner\n" + RESULT_MARKER + info.model_dump_json() + "\n"
    assert parse_child_output(stdout, "I0000 oneDNN custom operations are on.", 0) == info


def test_child_crash_becomes_error_with_the_last_stderr_line() -> None:
    parsed = parse_child_output("", "Traceback...\nImportError: libcudart.so.12: cannot open shared object file\n", 1)
    assert parsed.status == "error"
    assert "libcudart.so.12" in (parsed.detail or "")


def test_child_garbage_becomes_error() -> None:
    parsed = parse_child_output(RESULT_MARKER + "{not json\n", "", 0)
    assert parsed.status == "error"


def test_installed_but_unimportable_tensorflow_is_an_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` raise ImportError
    monkeypatch.setattr(tf_fingerprint, "tensorflow_installed", lambda: True)
    assert tf_fingerprint.tensorflow_info_fields()["status"] == "error"
    monkeypatch.setattr(tf_fingerprint, "tensorflow_installed", lambda: False)
    info = tf_fingerprint.collect_tensorflow_info()
    assert info.status == "absent" and info.detail


@pytest.mark.processes("what a fresh interpreter imports")
def test_capture_module_and_tf_child_path_stay_light() -> None:
    # The TF child is spawned right after `import envlock.capture`: nothing heavy may come first,
    # and the child itself must not import pydantic (its critical path is the TF import alone).
    heavy = imported_in_a_fresh_python("import envlock.capture, envlock.fingerprint.tf",
                                       ["pydantic", "numpy", "tensorflow", "threadpoolctl"])
    assert heavy == []


@pytest.mark.parametrize(
    ("argv", "prestart"),
    [
        (["capture"], True),
        (["capture", "-o", "m.json", "--json"], True),
        (["capture", "--no-tf"], False),
        (["capture", "--golden", "-o", "g.json"], False),
        (["capture", "--help"], False),
        (["verify", "g.json"], False),
        ([], False),
    ],
)
def test_only_a_full_capture_prestarts_the_tf_child(argv: list[str], prestart: bool) -> None:
    assert is_full_capture(argv) is prestart
