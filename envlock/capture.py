"""capture: this machine and its software stack as a Manifest (digest filled).

With TensorFlow, the slow part is importing it (seconds). The TF child is started first and
everything else is collected while it imports, so a full capture costs about one TF import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from envlock import __version__
from envlock.fingerprint.cpu import collect_cpu
from envlock.fingerprint.environ import capture_environment
from envlock.fingerprint.host import collect_host
from envlock.fingerprint.memory import collect_memory
from envlock.models import MANIFEST_KIND, MANIFEST_SCHEMA_VERSION, Manifest, TensorflowInfo, with_digest
from envlock.runner import Runner
from envlock.store import Migration, load_model

# schema_version n -> n+1 upgrades, applied one step at a time on load (none yet).
MANIFEST_MIGRATIONS: dict[int, Migration] = {}


def capture_manifest(
    *, include_tf: bool = True, runner: Runner | None = None, environ: Mapping[str, str] | None = None
) -> Manifest:
    """Fingerprint this machine. ``include_tf=False`` never imports (or starts) TensorFlow."""
    from envlock.fingerprint import tf as tf_fingerprint

    # Start TF first: its import dominates, and everything below runs while it happens.
    child = tf_fingerprint.start_tensorflow_child() if include_tf else None
    runner = runner or Runner()
    # Snapshot first: importing threadpoolctl sets KMP_DUPLICATE_LIB_OK in os.environ.
    environ = dict(os.environ if environ is None else environ)
    environment = capture_environment(environ)
    try:
        from envlock.fingerprint.gpu import collect_gpu
        from envlock.fingerprint.numeric import collect_numeric
        from envlock.fingerprint.python_env import collect_python

        parts = {
            "host": collect_host(runner, environ),
            "cpu": collect_cpu(runner),
            "memory": collect_memory(runner),
            "numeric": collect_numeric(),
            "gpu": collect_gpu(),
            "python": collect_python(),
            "environment": environment,
        }
    except BaseException:
        if child is not None:
            child.kill()
        raise
    if not include_tf:
        tensorflow = TensorflowInfo(status="not_captured", detail="captured with --no-tf")
    elif child is None:
        tensorflow = TensorflowInfo(status="absent", detail="TensorFlow is not installed in this Python")
    else:
        tensorflow = child.result()
    manifest = Manifest(
        envlock_version=__version__,
        captured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        tensorflow=tensorflow,
        **parts,
    )
    return with_digest(manifest)


def load_manifest(path: Path | str) -> Manifest:
    """Read a manifest file (validated, migrated); any problem is a one-line BadFileError."""
    return load_model(
        path, Manifest, kind=MANIFEST_KIND, current_version=MANIFEST_SCHEMA_VERSION, migrations=MANIFEST_MIGRATIONS
    )


def load_any_manifest(path: Path | str) -> Manifest:
    """A manifest from a manifest file or from a golden file (its recorded manifest)."""
    from envlock.store import read_json_file

    data = read_json_file(path)
    if isinstance(data, dict) and data.get("kind") == "envlock.golden":
        from envlock.golden import load_golden  # lazily: verify's module, only needed for goldens

        return load_golden(path).manifest
    return load_manifest(path)
