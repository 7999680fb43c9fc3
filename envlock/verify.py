"""verify: does this machine reproduce a golden, by how much not, and why.

Flow: load the golden (integrity-checked) -> build the child's environment (this machine's,
or with ``golden_env`` the golden's allow-listed determinism variables exactly) -> capture
this machine's manifest -> run the probes in a child under the golden's lockdown settings,
``repeat`` times -> a verdict per probe -> causes for each drifting probe.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envlock.capture import capture_manifest
from envlock.diff import diff_manifests
from envlock.environ import golden_environment_changes, refused_note, with_changes
from envlock.errors import BadInputError
from envlock.golden import (
    Golden,
    ProbeRecord,
    class_entry,
    class_entry_of_runs,
    golden_numeric_class,
    golden_profile,
    golden_profile_id,
    load_golden,
    manifest_with_tf,
)
from envlock.models import Manifest
from envlock.numeric import numeric_class
from envlock.probes.compare import Tolerance
from envlock.probes.registry import all_probes
from envlock.probes.supervisor import run_child
from envlock.profiles import apply_to
from envlock.progress import NO_PROGRESS, Progress
from envlock.results import ChildResult, no_probes_run
from envlock.signing import TrustedKey, check_signature, signature_note
from envlock.verdict import (
    PYTEST_GOLDEN_NOTE,
    SOURCE_CHANGED,
    VerifyReport,
    attribute,
    build_report,
    is_user_probe,
    verdict_for,
)


def child_environment(golden: Golden, environ: dict[str, str], *, golden_env: bool) -> dict[str, str]:
    """The probes' environment: this machine's, or with the golden's determinism variables exactly."""
    if not golden_env:
        return dict(environ)
    return with_changes(environ, golden_environment_changes(dict(environ), golden.lockdown.environment)[0])


def _select(golden: Golden, probe_names: list[str] | None) -> list[ProbeRecord]:
    if not probe_names:
        return list(golden.probes)
    missing = [n for n in probe_names if golden.probe(n) is None]
    if missing:
        raise BadInputError(f"probe(s) not in the golden: {', '.join(missing)}")
    return [p for p in (golden.probe(n) for n in dict.fromkeys(probe_names)) if p is not None]


@dataclass
class VerifyRun:
    """What a verify saw besides its report: explain re-uses it instead of running the suite again."""

    report: VerifyReport
    golden: Golden
    manifest: Manifest  # this machine's, TensorFlow section from the child
    environ: dict[str, str]
    result: ChildResult  # the probe child's result (runs per probe, timings)


def verify_golden(golden_path: Path | str, *, probe_names: list[str] | None = None,
                  tolerance: Tolerance | None = None, repeat: int | None = None,
                  golden_env: bool = False, trusted_keys: Sequence[TrustedKey] = (),
                  probe_modules: Sequence[str] = (), probe_timeout: float | None = None,
                  allow_changed_probes: bool = False, portable: bool = False,
                  progress: Progress = NO_PROGRESS) -> VerifyReport:
    """Run the golden's probes here and judge them. ``probe_modules`` load user probes in the child;
    a probe whose source digest differs from the golden's is not compared unless ``allow_changed_probes``.
    Raises BadFileError/IntegrityError (exit 2),
    BadInputError (exit 2), SignatureError (exit 2: ``trusted_keys`` given and no valid signature
    by one of them), TensorflowMissing/EnvironmentProblem (exit 3)."""
    return verify_run(golden_path, probe_names=probe_names, tolerance=tolerance, repeat=repeat,
                      golden_env=golden_env, trusted_keys=trusted_keys, probe_modules=probe_modules,
                      probe_timeout=probe_timeout, allow_changed_probes=allow_changed_probes,
                      portable=portable, progress=progress).report


def verify_run(golden_path: Path | str, *, probe_names: list[str] | None = None,
               tolerance: Tolerance | None = None, repeat: int | None = None, golden_env: bool = False,
               trusted_keys: Sequence[TrustedKey] = (), onednn_verbose: bool = False,
               probe_modules: Sequence[str] = (), probe_timeout: float | None = None,
               allow_changed_probes: bool = False, portable: bool = False,
               progress: Progress = NO_PROGRESS) -> VerifyRun:
    """``verify_golden`` keeping what explain needs (``onednn_verbose``: record the primitives run, and
    trace the Keras models of probes that hand theirs to envlock, for localisation).

    A golden recorded under a numerics profile (``capture --golden --portable``) is verified under it,
    with no flag: the profile's settings are applied to the probes' environment, as this envlock's table
    defines them. ``portable``: the user asks for that; a golden recorded without the profile cannot
    match by design, so that is BadInputError (exit 2)."""
    started = time.perf_counter()
    tolerance = tolerance or Tolerance()
    path = Path(golden_path)
    golden = load_golden(path)
    if trusted_keys:
        signer = check_signature(golden, path, trusted_keys)  # before anything of the golden is used
        signature = f"golden is signed by trusted key {signer}"
    else:
        signature = signature_note(golden)
    profile = golden_profile(golden, path)
    if portable and profile is None:
        raise BadInputError(f"{path}: recorded without the portable profile, so its bits cannot match another "
                            "machine's under it by design: re-record it with `envlock capture --golden --portable`")
    records = _select(golden, probe_names)
    repeat = repeat or golden.repeat
    environ = child_environment(golden, dict(os.environ), golden_env=golden_env)
    if profile is not None:
        environ = apply_to(environ, profile)

    known = all_probes()
    # User probes (a source outside envlock) exist only in the child, which skips names nobody registers.
    runnable = [r.name for r in records if r.status == "ok" and (r.name in known or is_user_probe(r))]
    manifest = capture_manifest(include_tf=False, environ=environ)
    progress.stage("verify")
    result = run_child(probe_names=runnable, repeat=repeat, settings=golden.lockdown, env=environ,
                       probe_modules=list(probe_modules), probe_timeout=probe_timeout, unknown="skip",
                       onednn_verbose=onednn_verbose, trace=onednn_verbose, on_event=progress.events_for("verify")) \
        if runnable and golden.recorded_by != "pytest" else no_probes_run("no probes to run")
    if golden.recorded_by != "pytest":  # the pytest plugin records manifests without TensorFlow: compare like that
        manifest = manifest_with_tf(manifest, result)
    differences = diff_manifests(golden.manifest, manifest)

    verdicts = [verdict_for(record, result, tolerance, pytest_golden=golden.recorded_by == "pytest",
                         allow_changed_probes=allow_changed_probes) for record in records]
    stable_drifted = attribute(verdicts, differences)
    report = build_report(path, golden, manifest.digest, verdicts, differences, tolerance=tolerance, repeat=repeat,
                   golden_env=golden_env, stable_drifted=stable_drifted,
                   timings={"import_seconds": result.import_seconds or 0.0,
                            "suite_seconds": result.suite_seconds,
                            "total_seconds": time.perf_counter() - started})
    if golden.recorded_by != "pytest":
        report.numeric_profile = golden_profile_id(golden)
        # A probe the golden could not record (skipped, nondeterministic) is not run here: as the golden has it.
        report.numeric_class = numeric_class([class_entry_of_runs(r.name, result.runs_of(r.name)) if r.status == "ok"
                                              else class_entry(r) for r in records], report.numeric_profile)
        report.golden_numeric_class = golden_numeric_class(golden, [r.name for r in records])
    report.hostname = manifest.host.hostname
    if profile is not None:
        report.profile = profile.label
        missing = [f for f in profile.requires_isa if getattr(manifest.cpu.isa, f, None) is False]
        if missing:
            report.notes.append(f"this CPU lacks {', '.join(missing)}, which the {profile.label} profile assumes "
                                "both machines have: probes whose kernels oneDNN picks by instruction set may differ "
                                "by design")
        for verdict in report.probes:
            verdict.portable = profile.covers(verdict.name)
        uncovered = [v.name for v in report.probes if v.status == "drift" and v.portable is False]
        report.notes.append(f"verified under the {profile.label} profile (recorded in the golden): "
                            f"{sum(v.portable is True and v.status != 'skipped' for v in report.probes)} of the "
                            "probes compared here are measured to give the same bits on both recorded CPU vendors "
                            "under it"
                            + (f"; {len(uncovered)} drifting probe(s) it does not cover: {', '.join(uncovered)}"
                               if uncovered else ""))
    if golden.recorded_by == "pytest":
        report.notes.append(PYTEST_GOLDEN_NOTE)
    unloaded_user = [v.name for v in verdicts if v.status == "skipped" and (v.reason or "").startswith("user probe")]
    if unloaded_user:
        report.notes.append(f"{len(unloaded_user)} user probe(s) not compared because their module is not loaded "
                            f"here ({', '.join(unloaded_user)}): pass --probe-module")
    changed = [v.name for v in verdicts if v.status == "skipped" and (v.reason or "").startswith(SOURCE_CHANGED)]
    if changed:
        report.notes.append(f"{len(changed)} probe(s) not compared because their code changed since the golden was "
                            f"recorded ({', '.join(changed)})")
    report.notes.append(signature)
    refused = golden_environment_changes(environ, golden.lockdown.environment)[1] if golden_env else {}
    if (note := refused_note(refused)) is not None:
        report.notes.append(note)
    return VerifyRun(report, golden, manifest, environ, result)
