"""TensorFlow as this process (or a child that imported it) really sees it.

Importing TensorFlow costs seconds, so ``envlock capture`` runs ``python -m
envlock.fingerprint.tf`` in a child *first* and collects everything else while the child
imports TF (see ``start_tensorflow_child``). The child imports TF before anything else, then
prints one marked line of TensorflowInfo JSON, with the libraries from *its own*
/proc/self/maps -- the process that has TF loaded.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.fingerprint.loaded_libs import loaded_library_records
from envlock.fingerprint.onednn import onednn_info
from envlock.runner import SPAWN_ERRORS, CouldNotStart, kill_tree, spawn

if TYPE_CHECKING:
    from envlock.models import TensorflowInfo

RESULT_MARKER = "ENVLOCK-TENSORFLOW-INFO "
CHILD_TIMEOUT_S = 300.0


def _as_version(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def parse_build_info(raw: dict[str, Any]) -> dict[str, Any]:
    """The typed fields of ``tf.sysconfig.get_build_info()``; the raw dict is kept beside them."""
    return {
        "is_cuda_build": raw.get("is_cuda_build") if isinstance(raw.get("is_cuda_build"), bool) else None,
        "is_rocm_build": raw.get("is_rocm_build") if isinstance(raw.get("is_rocm_build"), bool) else None,
        "built_cuda_version": _as_version(raw.get("cuda_version")),
        "built_cudnn_version": _as_version(raw.get("cudnn_version")),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _safe(fn: Any) -> Any:
    """Call a TF introspection function; an API missing in this TF version means unknown."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - any failure of an optional probe is "unknown", never a crash
        return None


def _onednn_enabled() -> bool | None:
    # TF turns oneDNN on by default only on CPUs with AVX512_VNNI/BF16, AVX_VNNI or AMX
    # (docs/causes.md, finding 1), so the effective state, not TF_ENABLE_ONEDNN_OPTS, is what
    # decides the bits. IsMklEnabled() reports that effective state.
    # lazy: TensorFlow loads only in the process it fingerprints (seconds to import)
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def _op_determinism() -> bool | None:
    import tensorflow as tf  # lazy: TensorFlow loads only in the process it fingerprints (seconds to import)

    public = getattr(tf.config.experimental, "is_op_determinism_enabled", None)
    if public is not None:
        return bool(public())
    # lazy: TensorFlow loads only in the process it fingerprints (seconds to import)
    from tensorflow.python.framework import config as tf_config

    return bool(tf_config.is_op_determinism_enabled())


def _xla_jit() -> str | None:
    import tensorflow as tf  # lazy: TensorFlow loads only in the process it fingerprints (seconds to import)

    jit = tf.config.optimizer.get_jit()
    # get_jit() returns "" when auto-clustering is off; older TFs returned a bool.
    if isinstance(jit, bool):
        return "autoclustering" if jit else "off"
    return str(jit) or "off"


def _keras_version() -> str | None:
    import keras  # lazy: as TensorFlow, which it comes with

    return _as_version(getattr(keras, "__version__", None))


def _tiny_matmul() -> None:
    import tensorflow as tf  # lazy: TensorFlow loads only in the process it fingerprints (seconds to import)

    tf.linalg.matmul(tf.ones([8, 8]), tf.ones([8, 8])).numpy()


def tensorflow_info_fields(*, onednn_report: bool = False) -> dict[str, Any]:
    """TensorflowInfo's fields as plain JSON data. Imports TF; does not import pydantic, so
    the child's critical path is the TF import alone.

    ``onednn_report``: also run one tiny matmul with ONEDNN_VERBOSE on, for oneDNN's version and
    detected ISA. Only for a process that runs nothing else afterwards (the capture child): oneDNN
    reads the variable once, so verbose output would stay on for later ops."""
    try:
        import tensorflow as tf  # lazy: TensorFlow loads only in the process it fingerprints (seconds to import)
    except ImportError as exc:
        # Installed but failing to import (a missing CUDA library, an ABI mismatch) is an error,
        # not an absence: the user has a TensorFlow, it is just broken.
        status = "error" if tensorflow_installed() else "absent"
        return {"status": status, "detail": f"tensorflow is not importable: {exc}"}
    raw_build = _safe(lambda: dict(tf.sysconfig.get_build_info())) or {}
    maps_text = _safe(lambda: Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace"))
    onednn: dict[str, Any] = {}
    if onednn_report:
        onednn = _safe(lambda: onednn_info(_tiny_matmul)) or {}
    return {
        "status": "present",
        "version": _as_version(getattr(tf, "__version__", None)),
        "git_version": _as_version(_safe(lambda: tf.version.GIT_VERSION)),
        "compiler": _as_version(_safe(lambda: tf.version.COMPILER_VERSION)),
        "build_info": _jsonable(raw_build) if raw_build else None,
        "onednn_enabled": _safe(_onednn_enabled),
        "xla_jit": _safe(_xla_jit),
        "op_determinism": _safe(_op_determinism),
        "intra_op_threads": _safe(tf.config.threading.get_intra_op_parallelism_threads),
        "inter_op_threads": _safe(tf.config.threading.get_inter_op_parallelism_threads),
        "physical_devices": _safe(lambda: sorted(d.name for d in tf.config.list_physical_devices())),
        "keras_version": _safe(_keras_version),
        "loaded_libraries": loaded_library_records(maps_text) if maps_text else [],
        **parse_build_info(raw_build),
        **{k: v for k, v in onednn.items() if v is not None},
    }


def collect_tensorflow_info() -> TensorflowInfo:
    """Everything about the TF in this process. Imports TF (safe if already imported)."""
    # lazy: pydantic loads after TensorFlow in the child, and after the child started in the parent
    from envlock.models import TensorflowInfo

    return TensorflowInfo.model_validate(tensorflow_info_fields())


def tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


class TensorflowChild:
    """A child process importing TF and reporting TensorflowInfo; started early, joined late."""

    def __init__(self) -> None:
        # Same interpreter, same environment: the child must see exactly what a user's job sees.
        # spawn: it dies with capture, even when capture is SIGKILLed.
        argv = [sys.executable, "-m", "envlock.fingerprint.tf"]
        try:
            self._proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        except SPAWN_ERRORS as exc:  # not executable, gone: exit 3 at once, one line
            raise CouldNotStart(argv, exc, "the TensorFlow child") from None

    def result(self, timeout: float = CHILD_TIMEOUT_S) -> TensorflowInfo:
        try:
            stdout, stderr = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            # lazy: pydantic loads after TensorFlow in the child, and after the child started in the parent
            from envlock.models import TensorflowInfo

            return TensorflowInfo(status="error", detail=f"TensorFlow child timed out after {timeout:.0f} s")
        return parse_child_output(stdout, stderr, self._proc.returncode)

    def kill(self) -> None:
        if self._proc.poll() is None:
            kill_tree(self._proc)
        self._proc.communicate()


def parse_child_output(stdout: str, stderr: str, returncode: int) -> TensorflowInfo:
    """The child's marked JSON line as TensorflowInfo; anything else becomes status "error"."""
    # lazy: pydantic loads after TensorFlow in the child, and after the child started in the parent
    from envlock.models import TensorflowInfo

    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return TensorflowInfo.model_validate_json(line[len(RESULT_MARKER):])
            except ValueError as exc:
                return TensorflowInfo(status="error", detail=f"unreadable TensorFlow report: {exc}".splitlines()[0])
    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    return TensorflowInfo(status="error", detail=f"TensorFlow child exited {returncode}: {last[:300]}")


_prestarted: TensorflowChild | None = None


def prestart_for_argv(argv: list[str]) -> None:
    """Start the TF child before the CLI itself is even imported, when ``argv`` is a full capture.

    Parsing the command line with Typer costs ~0.15 s; a full capture costs one TF import, so
    the child starts first and ``start_tensorflow_child`` hands it over. An unclaimed child
    (bad arguments, an early error) is killed at exit.
    """
    global _prestarted
    if _prestarted is None and is_full_capture(argv) and tensorflow_installed():
        try:
            _prestarted = TensorflowChild()
        except CouldNotStart:
            return  # capture itself tries again, inside the CLI, and reports it in one line
        atexit.register(_kill_unclaimed_child)


def is_full_capture(argv: list[str]) -> bool:
    """Whether this command line captures TF info in a child (``--golden`` runs its own probe child)."""
    return argv[:1] == ["capture"] and not {"--no-tf", "--golden", "-h", "--help"}.intersection(argv)


def _kill_unclaimed_child() -> None:
    if _prestarted is not None:
        _prestarted.kill()


def start_tensorflow_child() -> TensorflowChild | None:
    """Start the TF child now (or claim the prestarted one); None when TF is not installed."""
    global _prestarted
    if _prestarted is not None:
        child, _prestarted = _prestarted, None
        return child
    if not tensorflow_installed():
        return None
    return TensorflowChild()


def _child_main() -> None:
    sys.stdout.write(RESULT_MARKER + json.dumps(tensorflow_info_fields(onednn_report=True)) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Measured: tearing TF down at exit costs ~0.9 s here once an op has run (thread pools, oneDNN),
    # all of it on capture's critical path; this child holds nothing that needs a clean exit.
    os._exit(0)


if __name__ == "__main__":
    _child_main()
