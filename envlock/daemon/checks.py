"""The two checks the daemon runs, as values: what they found, never how a process was run.

* fingerprint: re-capture this machine WITHOUT TensorFlow (in-process, ~a second) and diff it
  against the golden's manifest. The ``tensorflow`` section is skipped: only a process that
  imports TensorFlow can know it, and that is the verify check's job.
* verify: what ``envlock verify GOLDEN --json``, run in a child process by ``daemon.process``,
  printed and exited with, turned into a result (pure): a crash or unparsable output is an error
  with the exit code and the last stderr line. TensorFlow is therefore never loaded into the daemon.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue
from pydantic_core import to_jsonable_python

from envlock.capture import capture_manifest
from envlock.corecheck import CoresReport
from envlock.daemon.results import (
    CheckResult,
    CpuState,
    DriftItem,
    ProbeSummary,
    class_or_none,
    difference_key,
    profile_or_none,
)
from envlock.diff import Difference, diff_manifests
from envlock.models import Manifest
from envlock.runner import signal_name

# Manifest sections a capture without TensorFlow cannot know (left to the verify check).
TF_ONLY_PREFIXES = ("tensorflow",)
FAILING_SEVERITIES = ("critical", "warning")
DRIFTING_PROBE_STATUSES = ("drift", "nondeterministic", "error")  # "error": a probe failed to run here


# This machine's manifest with the daemon's environment, and its differences from the golden's
# (replaced by stand-ins in unit tests).
Capture = Callable[[Mapping[str, str]], Manifest]
Diff = Callable[[Manifest, Manifest], Sequence[Difference]]


def _is_tf_only(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in TF_ONLY_PREFIXES)


def _with_more(first: str, total: int) -> str:
    return first if total <= 1 else f"{first} (and {total - 1} more)"


def capture_without_tf(environ: Mapping[str, str]) -> Manifest:
    """Capture this machine without TensorFlow, with ``environ`` as its environment.

    ``environ`` is the daemon's environment as it STARTED (WatchConfig.environ), never os.environ
    now: the capture's own imports write to os.environ (threadpoolctl sets KMP_DUPLICATE_LIB_OK),
    so a second capture would report a variable the user never set."""
    return capture_manifest(include_tf=False, environ=dict(environ))


def value_json(value: object) -> str:
    """Canonical JSON of a difference's new value, the same whether it comes from a Difference
    object here or from the JSON report of a verify child."""
    return json.dumps(to_jsonable_python(value, fallback=str), sort_keys=True)


def fingerprint_check(
    golden_manifest: Manifest,
    *,
    golden_digest: str | None,
    environ: Mapping[str, str],
    vouched: frozenset[str] = frozenset(),
    capture: Capture = capture_without_tf,
    diff: Diff = diff_manifests,
    clock: Callable[[], float] = time.time,
) -> CheckResult:
    """Capture this machine without TensorFlow (``capture(environ)``) and compare it with the golden manifest.

    A difference in ``vouched`` (same field, same new value) was present during a verify whose
    probes reproduced, so it is reported as tolerated instead of failing the check: e.g. an image
    built from the golden deliberately sets determinism variables the recording machine lacked."""
    started = clock()
    t0 = time.monotonic()
    try:
        current = capture(environ)
        differences = diff(golden_manifest, current)
    except Exception as exc:  # noqa: BLE001 - a failed capture is a failed check, never a dead daemon
        return CheckResult(
            kind="fingerprint", started_at=started, duration_s=time.monotonic() - t0, outcome="error",
            reason=f"fingerprint capture failed: {type(exc).__name__}: {exc}".splitlines()[0],
            golden_digest=golden_digest,
        )
    failing = [
        DriftItem(path=d.path, severity=d.severity, reason=d.reason, value=value_json(getattr(d, "new", None)))
        for d in differences
        if d.severity in FAILING_SEVERITIES and not _is_tf_only(d.path)
    ]
    drift = [item for item in failing if item.key not in vouched]
    return CheckResult(
        kind="fingerprint", started_at=started, duration_s=time.monotonic() - t0,
        outcome="drift" if drift else "pass",
        reason=_with_more(drift[0].reason, len(drift)) if drift else None,
        golden_digest=golden_digest, fingerprint_digest=getattr(current, "digest", None) or None,
        drift=drift, tolerated=[item for item in failing if item.key in vouched],
    )


# ---- what a verify child did -------------------------------------------------------------


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text_if_truthy(value: object) -> str | None:
    return str(value) if value else None


def _entries(named: bool) -> BeforeValidator:
    """A list field keeping only the objects among its items (with a ``name`` that is a string:
    ``named``); anything else in a report is skipped, not a reason to drop the report."""
    def keep(value: object) -> list[object]:
        items = value if isinstance(value, list) else []
        return [item for item in items if isinstance(item, dict) and (not named or isinstance(item.get("name"), str))]

    return BeforeValidator(keep)


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ReportedProbe(_Read):
    """One of a VerifyReport's ``probes`` (``envlock.verdict.ProbeVerdict``), as the daemon reads it."""

    name: str
    status: Annotated[str, BeforeValidator(str)] = "None"  # as str() of a missing status
    reason: Annotated[str | None, BeforeValidator(_text_if_truthy)] = None
    max_ulp: Annotated[float | None, BeforeValidator(_float_or_none)] = None
    max_rel_error: Annotated[float | None, BeforeValidator(_float_or_none)] = None


class ReportedDifference(_Read):
    """One of a VerifyReport's ``differences`` (``envlock.diff.Difference``), as the daemon reads it."""

    path: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    severity: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    reason: Annotated[str, BeforeValidator(str)] = "None"  # as str() of a missing reason
    new: JsonValue = None


class ChildReport(_Read):
    """The ``VerifyReport`` (``envlock.verdict``) a verify child printed: the fields the daemon
    reads, parsed once, here. Each field is validated on its own and a malformed one is dropped,
    never the whole report: a ``--verify-command`` (another envlock in an image, a wrapper) may
    print a partial report, and a class that is not well formed must not become a label."""

    reproduces: Annotated[bool, BeforeValidator(bool)]
    manifest_digest: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    probes: Annotated[list[ReportedProbe], _entries(named=True)] = Field(default_factory=list)
    differences: Annotated[list[ReportedDifference], _entries(named=False)] = Field(default_factory=list)
    # the numeric class fields (envlock.numeric), each kept only if well formed
    numeric_class: Annotated[str | None, BeforeValidator(class_or_none)] = None
    golden_numeric_class: Annotated[str | None, BeforeValidator(class_or_none)] = None
    numeric_profile: Annotated[str | None, BeforeValidator(profile_or_none)] = None


def parse_report(stdout: str) -> ChildReport | None:
    """The VerifyReport object from the child's stdout: the whole output, or the last JSON object
    starting at the beginning of a line (compact or indented), after any stray log lines."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("{")]
    candidates = [stdout.strip()] + ["\n".join(lines[i:]) for i in reversed(starts)]
    candidates += [lines[i] for i in reversed(starts)]  # a one-line report followed by more output
    for text in candidates:
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and "reproduces" in data:
            return ChildReport.model_validate(data)
    return None


def _exit_description(code: int) -> str:
    if code < 0:
        return f"was killed by {signal_name(-code)}"
    return f"exited with code {code}"


def _verify_drift(report: ChildReport, probes: list[ProbeSummary]) -> list[DriftItem]:
    """Drifted probes, plus manifest differences only a TF process sees (the rest is the fingerprint check's)."""
    reasons = {p.name: p.reason for p in report.probes}
    items = [
        DriftItem(path=f"probes.{p.name}", severity="critical",
                  reason=f"probe {p.name}: {reasons.get(p.name) or p.status}")
        for p in probes
        if p.status in DRIFTING_PROBE_STATUSES
    ]
    for diff in report.differences:
        if diff.path is not None and _is_tf_only(diff.path) and diff.severity in FAILING_SEVERITIES:
            items.append(DriftItem(path=diff.path, severity=diff.severity, reason=diff.reason))
    return items


def interpret_verify(
    *, returncode: int, stdout: str, stderr: str, started: float, duration: float, golden_digest: str | None
) -> CheckResult:
    """Turn what the verify child did into a check result."""
    report = parse_report(stdout)
    base: dict[str, Any] = {"kind": "verify", "started_at": started, "duration_s": duration, "exit_code": returncode}
    if report is None or returncode not in (0, 1):
        detail = _last_line(stderr) or _last_line(stdout) or "no output"
        what = "printed no JSON report" if report is None and returncode in (0, 1) else _exit_description(returncode)
        return CheckResult(**base, outcome="error", reason=f"verify {what}: {detail}", golden_digest=golden_digest)
    probes = sorted((ProbeSummary(name=p.name, status=p.status, max_ulp=p.max_ulp, max_rel_error=p.max_rel_error)
                     for p in report.probes), key=lambda p: p.name)
    drift = _verify_drift(report, probes)
    # a class means nothing without the profile it is for
    profile = report.numeric_profile
    numeric_class = report.numeric_class if profile else None
    golden_class = report.golden_numeric_class if profile else None
    reproduces = report.reproduces and returncode == 0
    reason = None
    if not reproduces:
        if drift:
            reason = _with_more(drift[0].reason, len(drift))
        else:
            diffs = report.differences
            reason = diffs[0].reason if diffs else "verify reports the golden does not reproduce"
    vouched = sorted({
        difference_key(d.path, value_json(d.new)) for d in report.differences if d.path is not None
    }) if reproduces else []
    return CheckResult(
        **base, outcome="pass" if reproduces else "drift", reason=reason,
        golden_digest=golden_digest,  # the daemon's view of the golden it asked about
        fingerprint_digest=report.manifest_digest, drift=drift, probes=probes, vouched=vouched,
        numeric_class=numeric_class, golden_numeric_class=golden_class, numeric_profile=profile,
    )


def verify_timed_out(*, timeout_s: float, started: float, duration: float, golden_digest: str | None) -> CheckResult:
    """A verify child that ran past its time limit (and was killed with its group)."""
    return CheckResult(
        kind="verify", started_at=started, duration_s=duration, outcome="timeout",
        reason=f"verify timed out after {timeout_s:g} s (killed)", golden_digest=golden_digest,
    )


def verify_not_started(
    *, program: str, problem: str, started: float, duration: float, golden_digest: str | None,
) -> CheckResult:
    """A verify command that could not even start (no such program, not executable, ...)."""
    return CheckResult(
        kind="verify", started_at=started, duration_s=duration, outcome="error",
        reason=f"cannot start verify command {program!r}: {problem}", golden_digest=golden_digest,
    )


def verify_crashed(error: Exception, *, golden_digest: str | None, clock: Callable[[], float] = time.time,
                   ) -> CheckResult:
    """A bug in the daemon's own verify handling: a failed check, never a dead worker."""
    return CheckResult(
        kind="verify", started_at=clock(), duration_s=0.0, outcome="error",
        reason=f"verify runner failed: {type(error).__name__}: {error}", golden_digest=golden_digest,
    )


# ---- what a cores child did (`envlock cores --json`, --cores-every) ------------------------


def interpret_cores(*, returncode: int, stdout: str, stderr: str, started: float, duration: float,
                    golden_digest: str | None) -> CheckResult:
    """Turn what the ``envlock cores --json`` child did into a check result: exit 0 pass, 1 drift
    (one item per CPU that is not healthy, ``cpus.<k>``), anything else or no valid report an error.
    The golden plays no part (the CPUs are compared with each other); it is kept as the context."""
    base: dict[str, Any] = {"kind": "cores", "started_at": started, "duration_s": duration, "exit_code": returncode,
                            "golden_digest": golden_digest}
    report: CoresReport | None = None
    if returncode in (0, 1):
        with contextlib.suppress(ValueError):  # pydantic's ValidationError is a ValueError
            report = CoresReport.model_validate_json(stdout.strip() or "null")
    if report is None or report.exit_code != returncode:
        detail = _last_line(stderr) or _last_line(stdout) or "no output"
        what = "printed no cores report" if returncode in (0, 1) else _exit_description(returncode)
        return CheckResult(**base, outcome="error", reason=f"cores {what}: {detail}")
    cpus = [CpuState(cpu=h.cpu, health=h.health) for h in report.health]
    drift = [DriftItem(path=f"cpus.{h.cpu}", severity="critical",
                       reason=f"CPU {h.cpu} {h.health}: " + (f"deviates from the others on {', '.join(h.deviates_on)}"
                                                             if h.deviates_on else
                                                             f"no majority on {', '.join(h.undecided_on)}"))
             for h in report.health if h.health != "healthy"]
    return CheckResult(**base, outcome="pass" if returncode == 0 else "drift",
                       reason=None if returncode == 0 else report.summary, drift=drift, cpus=cpus)


def cores_timed_out(*, timeout_s: float, started: float, duration: float, golden_digest: str | None) -> CheckResult:
    return CheckResult(kind="cores", started_at=started, duration_s=duration, outcome="timeout",
                       reason=f"cores timed out after {timeout_s:g} s (killed)", golden_digest=golden_digest)


def cores_not_started(*, program: str, problem: str, started: float, duration: float,
                      golden_digest: str | None) -> CheckResult:
    return CheckResult(kind="cores", started_at=started, duration_s=duration, outcome="error",
                       reason=f"cannot start cores command {program!r}: {problem}", golden_digest=golden_digest)


def cores_crashed(error: Exception, *, golden_digest: str | None, clock: Callable[[], float] = time.time,
                  ) -> CheckResult:
    return CheckResult(kind="cores", started_at=clock(), duration_s=0.0, outcome="error",
                       reason=f"cores runner failed: {type(error).__name__}: {error}", golden_digest=golden_digest)
