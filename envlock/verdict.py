"""Verdicts: a golden's probe records against this machine's runs, and the report they make.

Pure: from the golden, the probe child's typed result (``envlock.results``) and the manifest
differences to per-probe verdicts, ranked causes and the exit code. ``envlock.verify`` runs the
probes; ``envlock.display`` renders the report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from shlex import quote as shell_quote
from typing import Any, Literal

from pydantic import BaseModel, Field

from envlock.diff import Difference
from envlock.errors import DRIFT, ENVIRONMENT, OK
from envlock.golden import Golden, ProbeRecord
from envlock.probes.attribution import Cause, explain
from envlock.probes.compare import Tolerance, compare_output
from envlock.redact import redact_value
from envlock.results import ChildResult, OutputSummary, ProbeRun
from envlock.rules import rule_for
from envlock.version import __version__
from envlock.vocab import GROUPS, group_rule, ruling_group

# "error": the probe raised, returned something unusable, hung or crashed here (a user probe, usually).
Status = Literal["identical", "within_tolerance", "drift", "nondeterministic", "skipped", "error"]

GOLDEN_ENV_HINT = (
    "an environment difference is the likely cause: re-run with --golden-env to check whether this machine "
    "reproduces the golden when configured like it"
)


class ProbeVerdict(BaseModel):
    name: str
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    status: Status
    max_ulp: float | None = None
    max_rel_error: float | None = None  # max|diff| / max|golden| over the compared values
    mismatched: int | None = None  # differing elements among those compared (sampled for large outputs)
    compared: int | None = None
    outputs_differing: list[str] = Field(default_factory=list)
    # Differing outputs whose sampled elements are all identical: the bytes differ, the size is not measured.
    outputs_unmeasured: list[str] = Field(default_factory=list)
    reason: str | None = None
    causes: list[Cause] = Field(default_factory=list)
    # Set by explain (envlock.explain): what an experiment proved about this drift, which supersedes
    # the ranked causes (they are guesses from manifest differences).
    proved: str | None = None
    # Whether the golden's numerics profile makes this probe give the same bits on both recorded vendors
    # (measured, envlock/data/profiles.json); False when the golden was recorded without a profile; None:
    # not measured (a user probe the profile's measurements did not include).
    portable: bool | None = False


class CauseSummary(BaseModel):
    """One distinct likeliest cause and the drifting probes it is first for (text and --json agree)."""

    rule: str | None
    path: str | None
    paths: list[str] = Field(default_factory=list)
    reason: str
    score: float
    probes: list[str]


class VerifyReport(BaseModel):
    reproduces: bool
    exit_code: int
    golden: str
    golden_digest: str
    manifest_digest: str
    golden_manifest_digest: str
    tolerance: str
    repeat: int
    golden_env: bool
    counts: dict[str, int]
    probes: list[ProbeVerdict]
    differences: list[Difference]  # this machine's manifest against the golden's, as recorded
    notes: list[str] = Field(default_factory=list)
    suggestion: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    # Each distinct first cause once, with the probes it explains, most probes first.
    causes: list[CauseSummary] = Field(default_factory=list)
    profile: str | None = None  # the numerics profile the golden was recorded and verified under ("portable v1")
    next_command: str | None = None  # what to run next (e.g. `envlock explain GOLDEN`) when something drifted
    # envlock.numeric: this machine's class over the probes verified, and the golden's over the same
    # probes; equal exactly when every output came back bit for bit. None for a pytest plugin golden.
    numeric_class: str | None = None
    golden_numeric_class: str | None = None
    numeric_profile: str | None = None  # the profile both classes are for ("default", "portable-v1")
    hostname: str | None = None  # this machine (fleet tells machines apart by manifest_digest too)
    # The envlock that wrote the report (added with fleet: reports before it lack it). `envlock fleet`
    # compares classes within one major.minor only.
    envlock_version: str | None = None


STABLE_UNEXPLAINED_NOTE = (
    "stable probes (RNG, tf.data order, init, elementwise) moved although no TensorFlow, Keras or numpy "
    "version differs: nothing recorded explains it; the cause is unrecorded (an environment variable envlock "
    "does not record, a library, or the hardware): `envlock explain` tests which")

# A golden written by the pytest plugin (envlock.pytest_plugin) holds arrays a test computed, not probes.
PYTEST_PROBE_REASON = "recorded by the envlock pytest plugin: run its test with pytest to compare it"
PYTEST_GOLDEN_NOTE = ("this golden was recorded by the envlock pytest plugin: verify compared this machine's manifest "
                      "with the one it was recorded on but cannot re-run tests; run them with pytest here to compare "
                      "their arrays")


# ---------------------------------------------------------------- verdicts


def _skipped(record: ProbeRecord, reason: str) -> ProbeVerdict:
    return ProbeVerdict(name=record.name, group=record.group, tags=record.tags, status="skipped", reason=reason)


def judge_probe(record: ProbeRecord, runs: Sequence[ProbeRun], tolerance: Tolerance) -> ProbeVerdict:
    """Verdict for one probe: its golden record against this machine's repeated runs."""
    if record.status != "ok":
        return _skipped(record, f"not recorded in the golden ({record.status}: {record.reason})")
    first = runs[0]
    if first.status == "skipped":
        return _skipped(record, first.reason or "skipped")
    base = ProbeVerdict(name=record.name, group=record.group, tags=record.tags, status="drift")
    if first.status == "error":
        return base.model_copy(update={"status": "error",
                                       "reason": f"ran in the golden but fails here: {first.reason}"})
    hashes = [r.output_hashes for r in runs]
    if len(set(hashes)) > 1:
        return base.model_copy(update={
            "status": "nondeterministic",
            "reason": f"outputs differed between the {len(runs)} repeats on this machine: run-to-run "
                      "nondeterminism here, a different problem from drift against the golden"})
    return _compare_outputs(base, record, first.outputs, tolerance)


def _compare_outputs(base: ProbeVerdict, record: ProbeRecord, outputs: Sequence[OutputSummary],
                     tolerance: Tolerance) -> ProbeVerdict:
    current = {o.name: o.wire() for o in outputs}
    golden = {o.name: o.model_dump() for o in record.outputs}
    if set(current) != set(golden):
        return base.model_copy(update={"reason": f"outputs changed: golden {sorted(golden)}, here {sorted(current)}"})
    results = {name: compare_output(golden[name], current[name], tolerance) for name in sorted(golden)}
    differing = [name for name, r in results.items() if not r.identical]
    if not differing:
        return base.model_copy(update={"status": "identical", "max_ulp": 0.0, "max_rel_error": 0.0,
                                       "mismatched": 0})
    measured = [r for name, r in results.items() if name in differing and r.mismatched is not None]
    ulps = [r.max_ulp for r in measured if r.max_ulp is not None]
    rels = [r.max_rel_error for r in measured if r.max_rel_error is not None]
    mismatched = [r.mismatched for r in measured if r.mismatched is not None]
    unmeasured = [name for name in differing if results[name].mismatched is None]
    notes = sorted({r.note for r in results.values() if r.note})
    within = all(r.within_tolerance for r in results.values())
    reason = f"{len(differing)} of {len(results)} outputs differ ({', '.join(differing)})"
    if notes:
        reason += "; " + "; ".join(notes)
    return base.model_copy(update={
        "status": "within_tolerance" if within else "drift",
        "max_ulp": max(ulps) if ulps else None,
        "max_rel_error": max(rels) if rels else None,
        "mismatched": sum(mismatched) if mismatched else None,
        "compared": sum(r.compared for r in results.values()),
        "outputs_differing": differing,
        "outputs_unmeasured": unmeasured,
        "reason": reason,
    })


def attribute(verdicts: list[ProbeVerdict], differences: list[Any]) -> bool:
    """Fill ``causes`` of every drifting probe; return whether a stable probe drifted (the group that
    moves only with versions: envlock.vocab.GROUPS)."""
    drifted = {v.group for v in verdicts if v.status == "drift"}
    for verdict in verdicts:
        if verdict.status == "drift":
            verdict.causes = explain(set(verdict.tags), differences, drifted_groups=drifted)
    return GROUPS[ruling_group(drifted)].versions_only


SOURCE_CHANGED = "the probe's code changed since the golden was recorded"


def verdict_for(record: ProbeRecord, result: ChildResult, tolerance: Tolerance, *, pytest_golden: bool,
             allow_changed_probes: bool) -> ProbeVerdict:
    if pytest_golden:
        return _skipped(record, PYTEST_PROBE_REASON)
    if record.status != "ok":
        return judge_probe(record, result.runs_of(record.name), tolerance)
    if not result.ran(record.name):  # recorded, but nothing here registers it
        return _skipped(record, _not_loaded_reason(record) if is_user_probe(record)
                        else "this envlock version does not know this probe")
    changed = _source_change(record, result)
    if changed and not allow_changed_probes:
        return _skipped(record, f"{changed}; re-record the golden or pass --allow-changed-probes")
    verdict = judge_probe(record, result.runs_of(record.name), tolerance)
    info = result.probes.get(record.name)
    if info is not None:  # this envlock's measured group and tags, not the golden's day's
        verdict.group, verdict.tags = info.group, sorted(info.tags)
    if changed:
        verdict.reason = f"{verdict.reason}; {changed} (compared anyway)" if verdict.reason \
            else f"{changed} (compared anyway)"
    return verdict


def is_user_probe(record: ProbeRecord) -> bool:
    module = record.source.module if record.source else None
    return module is not None and not module.startswith("envlock.probes.")


def _not_loaded_reason(record: ProbeRecord) -> str:
    source = record.source
    assert source is not None
    where = source.module or "?"
    if source.distribution:
        where += f" (distribution {source.distribution} {source.version or ''})".replace(" )", ")")
    hint = source.file if source.file and source.file.endswith(".py") else source.module
    return (f"user probe from {where} is not loaded here: pass --probe-module {hint}, or install the package "
            "that provides it")


def _source_change(record: ProbeRecord, result: ChildResult) -> str | None:
    """'probe source changed ... (sha256 a -> b)' when the golden and this run both know the digest."""
    recorded = record.source.sha256 if record.source else None
    info = result.probes.get(record.name)
    current = info.source_sha256 if info is not None else None
    if recorded is None or current is None or recorded == current:
        return None
    return f"{SOURCE_CHANGED} (sha256 {recorded[7:19]} -> {current[7:19]})"


def _versions_only(group: str | None) -> bool:
    rule = group_rule(group)
    return rule is not None and rule.versions_only


def _drift_note(verdicts: list[ProbeVerdict]) -> str | None:
    """The note of the group that rules this drift (envlock.vocab.GROUPS): the hardware or the canary one."""
    return GROUPS[ruling_group(v.group for v in verdicts if v.status == "drift")].drift_note


def build_report(path: Path, golden: Golden, manifest_digest: str, verdicts: list[ProbeVerdict], differences: list[Any],
            *, tolerance: Tolerance, repeat: int, golden_env: bool, stable_drifted: bool,
            timings: dict[str, float]) -> VerifyReport:
    counts = {s: sum(v.status == s for v in verdicts)
              for s in ("identical", "within_tolerance", "drift", "nondeterministic", "skipped", "error")}
    # Reasons quote the golden (a skipped probe's recorded reason) and child errors (paths): the
    # report goes to files, /status and logs, so they are redacted like manifest values are.
    for verdict in verdicts:
        if verdict.reason:
            verdict.reason = redact_value(verdict.reason, os.environ.get("HOME"))
    compared = len(verdicts) - counts["skipped"]
    # Nothing compared proves nothing: never "reproduces" (exit 0) on a machine that ran no probe of
    # the golden (all skipped here, e.g. GPU probes without a GPU, or a pytest-plugin golden).
    reproduces = compared > 0 and counts["drift"] == 0 and counts["nondeterministic"] == 0 and counts["error"] == 0
    exit_code = OK if reproduces else DRIFT if compared else ENVIRONMENT
    notes: list[str] = []
    if not compared:
        notes.append("no probe of the golden could be compared on this machine (every one was skipped): "
                     "nothing was verified")
    versions = version_differences(differences)
    if stable_drifted and versions:
        notes.append("stable probes (RNG, tf.data order, init, elementwise) moved and versions differ ("
                     + ", ".join(versions[:3]) + (f" and {len(versions) - 3} more" if len(versions) > 3 else "")
                     + "): these probes only move with versions or seeds, so suspect the version first")
    elif stable_drifted and any(v.causes and v.causes[0].path is None for v in verdicts
                                if v.status == "drift" and _versions_only(v.group)):
        notes.append(STABLE_UNEXPLAINED_NOTE)
    elif stable_drifted:
        notes.append("stable probes (RNG, tf.data order, init, elementwise) moved although no TensorFlow, Keras or "
                     "numpy version differs: a recorded setting explains it (the causes below)")
    elif counts["drift"] and (note := _drift_note(verdicts)):
        notes.append(note)
    if counts["error"]:
        notes.append("some probes failed here (raised, returned unusable outputs, hung or crashed): each says why; "
                     "a probe that cannot run does not reproduce")
    if counts["nondeterministic"]:
        notes.append("some probes are nondeterministic on this machine: results differ run to run here, "
                     "independently of the golden")
    # The two likeliest causes: an env var is often second to the manifest field it changes
    # (e.g. NPY_DISABLE_CPU_FEATURES behind numeric.simd_dispatch).
    likely = [c for v in verdicts if v.status == "drift" for c in v.causes[:2]]
    suggestion = GOLDEN_ENV_HINT if not golden_env and any(c.environment for c in likely) else None
    moved = counts["drift"] + counts["within_tolerance"] + counts["nondeterministic"]
    next_command = f"envlock explain {shell_quote(str(path))}" if counts["drift"] else None
    return VerifyReport(
        reproduces=reproduces, exit_code=exit_code, golden=str(path), golden_digest=golden.digest,
        manifest_digest=manifest_digest, golden_manifest_digest=golden.manifest.digest, tolerance=tolerance.label,
        repeat=repeat, golden_env=golden_env, counts=counts, probes=verdicts,
        differences=[Difference.model_validate(d.model_dump(mode="json")) for d in differences], notes=notes,
        suggestion=suggestion,
        timings={k: round(v, 3) for k, v in timings.items()}, causes=summarise_causes(verdicts),
        next_command=next_command if moved else None, envlock_version=__version__,
    )


def summarise_causes(verdicts: list[ProbeVerdict]) -> list[CauseSummary]:
    """Each distinct first cause of a drifting probe once, with the probes it is first for."""
    summaries: dict[tuple[str | None, str], CauseSummary] = {}
    for verdict in verdicts:
        if verdict.status != "drift" or verdict.proved or not verdict.causes:
            continue
        cause = verdict.causes[0]
        key = (cause.rule, cause.reason)
        if key not in summaries:
            summaries[key] = CauseSummary(rule=cause.rule, path=cause.path, paths=cause.paths, reason=cause.reason,
                                          score=cause.score, probes=[])
        summaries[key].probes.append(verdict.name)
    return sorted(summaries.values(), key=lambda s: (-len(s.probes), -s.score, s.reason))


def version_differences(differences: list[Any]) -> list[str]:
    """'tensorflow.version 2.15.1 -> 2.21.0' for every difference a version mechanism explains."""
    out = []
    for diff in differences:
        if any(m.kind == "version" for m in rule_for(diff.path).causes):
            out.append(f"{diff.path} {diff.old} -> {diff.new}")
    return out
