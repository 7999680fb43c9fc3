"""capture: this machine and its software stack as a Manifest (digest filled).

With TensorFlow, the slow part is importing it (seconds). The TF child is started first --
before this module even imports pydantic or numpy -- and everything else is collected while
it imports, so a full capture costs about one TF import.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from envlock.environ import capture_environment
from envlock.fingerprint import tf as tf_fingerprint
from envlock.redact import redact_value
from envlock.runner import Runner
from envlock.version import __version__

if TYPE_CHECKING:
    from envlock.models import Manifest

_WORKER_NICENESS = 10

def capture_manifest(
    *, include_tf: bool = True, runner: Runner | None = None, environ: Mapping[str, str] | None = None
) -> Manifest:
    """Fingerprint this machine. ``include_tf=False`` never imports (or starts) TensorFlow.

    ``environ`` defaults to this process's environment; it is snapshotted first because
    importing threadpoolctl sets KMP_DUPLICATE_LIB_OK in os.environ.
    """
    child = tf_fingerprint.start_tensorflow_child() if include_tf else None
    environ = dict(os.environ if environ is None else environ)
    try:
        if child is None:
            manifest = _collect_everything_else(runner, environ)
        else:
            manifest = _collect_beside_child(runner, environ)
    except BaseException:
        if child is not None:
            child.kill()
        raise
    # lazy: pydantic loads after the TF child started (see the docstring)
    from envlock.models import TensorflowInfo, with_digest

    if not include_tf:
        tensorflow = TensorflowInfo(status="not_captured", detail="captured with --no-tf")
    elif child is None:
        tensorflow = TensorflowInfo(status="absent", detail="TensorFlow is not installed in this Python")
    else:
        tensorflow = child.result()
    return with_digest(redact_locations(manifest.model_copy(update={"tensorflow": tensorflow}), environ.get("HOME")))


def redact_locations(manifest: Manifest, home: str | None) -> Manifest:
    """``manifest`` with home directories and credentials redacted from the fields that say where
    things are: the interpreter, the loaded libraries and the free-text details. A venv under
    /home/NAME would otherwise carry NAME into every manifest and golden. These fields are all
    volatile (``VOLATILE_FIELDS``), so the digest is the same with or without this."""

    def clean(value: str | None) -> str | None:
        return None if value is None else redact_value(value, home)

    tensorflow = manifest.tensorflow
    libraries = [lib.model_copy(update={"path": clean(lib.path)}) for lib in tensorflow.loaded_libraries]
    return manifest.model_copy(update={
        "python": manifest.python.model_copy(update={"executable": clean(manifest.python.executable)}),
        "tensorflow": tensorflow.model_copy(update={"loaded_libraries": libraries, "detail": clean(tensorflow.detail)}),
        "gpu": manifest.gpu.model_copy(update={"detail": clean(manifest.gpu.detail)}),
    })


def _collect_beside_child(runner: Runner | None, environ: dict[str, str]) -> Manifest:
    """Collect in a worker thread at a lower CPU priority than the TF child.

    The child's TF import is the critical path; on a busy machine our own collection (numpy,
    threadpoolctl, package records: ~0.4 s of CPU) would otherwise steal CPU from it. On Linux
    the nice value is per thread, so only this short-lived worker is reniced -- never the
    caller's thread (capture_manifest also runs inside long-lived processes such as watch).
    """

    result: dict[str, Manifest] = {}
    failure: list[BaseException] = []

    def work() -> None:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + _WORKER_NICENESS))
        try:
            result["manifest"] = _collect_everything_else(runner, environ)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=work, name="envlock-capture", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result["manifest"]


def _collect_everything_else(runner: Runner | None, environ: dict[str, str]) -> Manifest:
    # lazy: the collectors import pydantic and numpy: after the TF child started
    from envlock.fingerprint.cpu import collect_cpu
    from envlock.fingerprint.gpu import collect_gpu
    from envlock.fingerprint.host import collect_host
    from envlock.fingerprint.memory import collect_memory
    from envlock.fingerprint.numeric import collect_numeric
    from envlock.fingerprint.python_env import collect_python
    from envlock.models import Manifest, TensorflowInfo

    runner = runner or Runner()
    return Manifest(
        envlock_version=__version__,
        captured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=collect_host(runner, environ),
        cpu=collect_cpu(runner),
        memory=collect_memory(runner),
        numeric=collect_numeric(),
        gpu=collect_gpu(),
        tensorflow=TensorflowInfo(status="not_captured"),  # replaced by the caller
        python=collect_python(),
        environment=capture_environment(environ),
    )

