"""``envlock.lockdown()``: lock what can be locked in a user's own training script.

What can be locked from inside Python: the Python/numpy/TF/Keras seeds, TF op determinism,
TF's intra/inter-op thread counts (while TF's runtime is not yet initialised). What cannot be
locked once the process or TensorFlow has started: ``PYTHONHASHSEED`` (read at interpreter
start) and the variables TF reads at import (``TF_ENABLE_ONEDNN_OPTS``, ``TF_XLA_FLAGS``, ...).
Those are reported -- as warnings, or with ``strict=True`` as a ``DriftFound`` error.

With ``golden=``, the golden's lockdown settings are used (seed, thread counts), its
allow-listed determinism environment is applied when TF is not imported yet, and
``strict=True`` refuses to run on a machine whose fingerprint differs critically.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.capture import capture_manifest
from envlock.diff import diff_manifests
from envlock.environ import golden_environment_changes, refused_note
from envlock.errors import BadInputError, DriftFound
from envlock.fingerprint.tf import collect_tensorflow_info
from envlock.golden import golden_profile, load_golden
from envlock.limits import MAX_SEED, MAX_THREADS
from envlock.models import with_digest
from envlock.profiles import Profile
from envlock.record import portable_profile
from envlock.redact import redact_value
from envlock.tfcontrols import apply_tf_controls, default_thread_count


class LockdownWarning(RuntimeWarning):
    """Something that could not be locked (see ``LockdownReport.problems``)."""


_WARNED: set[str] = set()


@dataclass
class LockdownReport:
    seed: int
    op_determinism: bool
    intra_op_threads: int | None
    inter_op_threads: int | None
    environment_changes: dict[str, str | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    profile: str | None = None  # the numerics profile in force ("portable v1")


def _environment_problems(golden_env: dict[str, str] | None) -> list[str]:
    problems: list[str] = []
    if sys.flags.hash_randomization and not os.environ.get("PYTHONHASHSEED"):
        problems.append("PYTHONHASHSEED is not set: Python randomises str hashing (set iteration order) per "
                        "process; export PYTHONHASHSEED=0 before starting Python")
    if golden_env is None and "TF_ENABLE_ONEDNN_OPTS" not in os.environ:
        problems.append("TF_ENABLE_ONEDNN_OPTS is not set: TensorFlow turns oneDNN on by default only on CPUs "
                        "with AVX512_VNNI/AVX512_BF16/AVX_VNNI/AMX, so matmul/conv bits depend on the CPU; set it "
                        "explicitly before TensorFlow is imported")
    return problems


def redacted(value: str | None) -> str | None:
    """``value`` with home directories and credentials redacted (what lockdown's report shows)."""
    return None if value is None else redact_value(value, os.environ.get("HOME"))


def _apply_golden_environment(golden_env: dict[str, str], report: LockdownReport) -> None:
    changes, refused = golden_environment_changes(dict(os.environ), golden_env)
    if (note := refused_note(refused)) is not None:
        report.problems.append(note)
    if "tensorflow" in sys.modules:
        for name, value in changes.items():
            now = os.environ.get(name)
            report.problems.append(
                f"{name}={redacted(now)!r} differs from the golden's {redacted(value)!r} and TensorFlow is "
                "already imported; "
                f"set it before importing TensorFlow (or import envlock and call lockdown() first)")
        return
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    report.environment_changes = changes


def _apply_profile(profile: Profile, report: LockdownReport) -> None:
    """Set the profile's variables before TensorFlow reads them; once it is imported, say it is too late."""
    pending = {name: value for name, value in profile.environment.items() if os.environ.get(name) != value}
    report.profile = profile.label
    if "tensorflow" in sys.modules and pending:
        report.problems.append(
            f"the {profile.label} profile needs {', '.join(sorted(pending))} set before TensorFlow is imported, and "
            "TensorFlow already is: call envlock.lockdown(portable=True) before importing TensorFlow (or export "
            "them; `envlock build` bakes them into the image)")
        return
    for name, value in pending.items():
        os.environ[name] = value
        report.environment_changes[name] = value


# What lockdown itself sets inside TF: a second lockdown() call, or a script that enabled op
# determinism first, must not read its own controls as the machine differing from the golden
# (the golden records them apart, in Golden.lockdown).
LOCKDOWN_CONTROLLED_FIELDS = frozenset(
    {"tensorflow.op_determinism", "tensorflow.intra_op_threads", "tensorflow.inter_op_threads"}
)


def _critical_differences(golden: Any) -> list[str]:
    here = capture_manifest(include_tf=False)
    here = with_digest(here.model_copy(update={"tensorflow": collect_tensorflow_info()}))
    return [f"{d.path}: {d.old!r} -> {d.new!r} ({d.reason})"
            for d in diff_manifests(golden.manifest, here)
            if d.severity == "critical" and d.path not in LOCKDOWN_CONTROLLED_FIELDS]


def reseed(seed: int = 42) -> None:
    """Reset the Python, numpy, TF and Keras seeds only (the rest of ``lockdown()`` stays in force).

    For code that trains several times in one process and wants each run to start from the
    same state, as ``train_model(seed)`` in examples/train_under_lockdown.py does.
    """
    import tensorflow as tf  # lazy: the golden's environment must be in place before TensorFlow is imported

    tf.keras.utils.set_random_seed(seed)


def _caller_stacklevel() -> int:
    """Point warnings at the user's line, however many envlock frames (wrappers) are in between."""
    package_dir = str(Path(__file__).resolve().parent)
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package_dir):
        frame, level = frame.f_back, level + 1
    return level


def _check_controls(seed: object, *threads: object) -> None:
    """The same ranges a golden's lockdown must have: numpy refuses other seeds, and a negative thread
    count makes TensorFlow abort the whole process (SIGABRT)."""

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BadInputError(f"lockdown: seed must be an integer from 0 to {MAX_SEED}, not {seed!r}")
    for count in threads:
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or not 0 <= count <= MAX_THREADS):
            raise BadInputError(f"lockdown: thread counts must be integers from 0 to {MAX_THREADS}, not {count!r}")


def lockdown(seed: int | None = None, *, golden: str | Path | None = None, strict: bool = False,
             intra_op_threads: int | None = None, inter_op_threads: int | None = None,
             op_determinism: bool = True, portable: bool = False) -> LockdownReport:
    """Seed Python/numpy/TF, enable op determinism, fix thread counts; report what could not be locked.

    Call it at the top of a training script, before building models or running TF ops (and before
    importing TensorFlow when ``portable`` or a golden's environment must take effect).
    ``portable=True`` applies the portable numerics profile (envlock.profiles, docs/portable.md), as does a
    ``golden`` recorded under it. Raises ``DriftFound`` (``strict=True``) instead of warning;
    ``BadFileError`` for a bad golden.
    """
    loaded = None
    if golden is not None:
        loaded = load_golden(golden)
        seed = loaded.lockdown.seed if seed is None else seed
        intra_op_threads = intra_op_threads or loaded.lockdown.intra_op_threads
        inter_op_threads = inter_op_threads or loaded.lockdown.inter_op_threads
    seed = 42 if seed is None else seed
    _check_controls(seed, intra_op_threads, inter_op_threads)
    report = LockdownReport(seed, op_determinism, intra_op_threads or default_thread_count(),
                            inter_op_threads or default_thread_count())
    report.problems.extend(_environment_problems(loaded.lockdown.environment if loaded else None))
    if loaded is not None:
        _apply_golden_environment(loaded.lockdown.environment, report)
    profile = golden_profile(loaded, golden) if loaded is not None and golden is not None else None
    if portable and profile is None:
        if loaded is not None:
            raise BadInputError(f"lockdown: {golden} was recorded without the portable profile: its bits cannot "
                                "match under it by design (re-record it with `envlock capture --golden --portable`)")
        profile = portable_profile()
    if profile is not None:
        _apply_profile(profile, report)
    import tensorflow as tf  # lazy: the golden's environment must be in place before TensorFlow is imported

    # Compare with the golden before applying the controls: a golden's manifest is TF as a job
    # finds it, its lockdown is recorded apart (and applied below on both machines alike).
    critical = _critical_differences(loaded) if loaded is not None and strict else []
    applied = apply_tf_controls(tf, seed=seed, op_determinism=op_determinism,
                                intra_op_threads=report.intra_op_threads, inter_op_threads=report.inter_op_threads)
    report.intra_op_threads, report.inter_op_threads = applied["intra_op_threads"], applied["inter_op_threads"]
    report.problems.extend(applied["problems"])
    if critical:
        raise DriftFound("this machine differs critically from the golden: " + "; ".join(critical))
    if report.problems:
        if strict:
            raise DriftFound("envlock.lockdown could not lock: " + "; ".join(report.problems))
        for problem in report.problems:
            if problem in _WARNED:
                continue  # calling lockdown() again (e.g. to reseed) should not repeat the same warnings
            _WARNED.add(problem)
            warnings.warn(f"envlock.lockdown: {problem}", LockdownWarning, stacklevel=_caller_stacklevel())
    return report
