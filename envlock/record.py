"""Recording a golden (``envlock capture --golden``): the use case that runs the probe suite here
in a child process and seals what it produced, with this machine's manifest and the lockdown
settings the probes ran under. The file format itself is ``envlock.golden``."""

from __future__ import annotations

import datetime as _dt
import os
from importlib import metadata

from envlock.capture import capture_manifest
from envlock.environ import capture_environment
from envlock.golden import Golden, ProfileRecord, golden_numeric_class, manifest_with_tf, probe_record, seal
from envlock.limits import MAX_THREADS
from envlock.models import LockdownSettings
from envlock.probes.supervisor import check_probe_names, probe_infos, run_child
from envlock.profiles import Profile, apply_to, latest
from envlock.progress import NO_PROGRESS, Progress
from envlock.tfcontrols import default_thread_count
from envlock.version import __version__


def lockdown_settings_for_this_process(environ: dict[str, str], seed: int = 42) -> LockdownSettings:
    """The controls a golden is recorded under: explicit thread counts and today's determinism env."""
    threads = min(default_thread_count(), MAX_THREADS)  # a golden must load wherever it goes
    return LockdownSettings(seed=seed, op_determinism=True, intra_op_threads=threads, inter_op_threads=threads,
                            environment=capture_environment(environ))


TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos")


def installed_tensorflow() -> str | None:
    """The installed TensorFlow's version, read from its distribution metadata (TF is not imported)."""
    for name in TENSORFLOW_DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def portable_profile() -> Profile:
    """The newest portable profile measured on the installed TensorFlow (BadInputError when none was)."""
    return latest("portable", installed_tensorflow())


def capture_golden(*, probe_names: list[str] | None = None, repeat: int = 2, probe_modules: list[str] | None = None,
                   probe_timeout: float | None = None, portable: bool = False,
                   progress: Progress = NO_PROGRESS) -> Golden:
    """Run the probe suite on this machine in a child process and build a sealed golden.

    ``probe_modules`` (``--probe-module``) and installed ``envlock.probes`` entry points add user
    probes; they are imported only in the child, which reports each probe's metadata and source.
    """
    check_probe_names(probe_names, probe_modules or [])  # built-in names in the parent, the rest in the child
    # Snapshot the environment before capturing: collectors may add variables to os.environ
    # (threadpoolctl sets KMP_DUPLICATE_LIB_OK), and the probes must see the user's environment.
    environ = dict(os.environ)
    profile = portable_profile() if portable else None
    if profile is not None:  # recorded under the profile: its settings are part of the golden's environment
        environ = apply_to(environ, profile)
    settings = lockdown_settings_for_this_process(environ)
    manifest = capture_manifest(include_tf=False, environ=environ)
    # oneDNN's verbose lines name the kernels each probe ran: explain compares them with this machine's.
    progress.stage("record")
    result = run_child(probe_names=probe_names, repeat=repeat, settings=settings, env=environ,
                       probe_modules=probe_modules or [], probe_timeout=probe_timeout, onednn_verbose=True,
                       trace=True,
                       on_event=progress.events_for("record"))
    probes = probe_infos(result, probe_names)
    golden = Golden(
        envlock_version=__version__,
        created_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        manifest=manifest_with_tf(manifest, result),
        lockdown=settings,
        repeat=repeat,
        probes=[probe_record(p, result.runs_of(p.name)) for p in probes],
        profile=ProfileRecord(name=profile.name, version=profile.version, environment=profile.environment)
        if profile is not None else None,
    )
    return seal(golden.model_copy(update={"numeric_class": golden_numeric_class(golden)}))
