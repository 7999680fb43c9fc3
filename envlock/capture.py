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
    return with_digest(manifest.model_copy(update={"tensorflow": tensorflow}))


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

