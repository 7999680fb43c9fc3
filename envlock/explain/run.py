"""explain: prove why this machine does not reproduce a golden, by experiment.

Flow: a verify (with oneDNN's verbose output on, so the primitives are known) -> the drifting
probes -> localisation of each (first differing intermediate or output, primitives that differ) ->
the planner's candidates, each run in a fresh probe child on the drifting probes only, in parallel
up to ``jobs``, within ``budget`` seconds in all -> per probe: fixed by the smallest candidate set
that makes it bitwise identical, partly (some outputs restored), or not fixable by configuration
on this machine -> the environment that reproduces, where one exists.
"""

from __future__ import annotations

import concurrent.futures
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envlock.environ import partition_environment, refused_note
from envlock.errors import DRIFT, OK, EnvlockError
from envlock.explain.localise import localise
from envlock.explain.planner import Candidate, Plan, combine, plan_interventions
from envlock.explain.report import CandidateOutcome, ExplainReport, Finding
from envlock.golden import ProbeRecord
from envlock.probes.compare import Tolerance
from envlock.probes.supervisor import run_child
from envlock.signing import TrustedKey
from envlock.verdict import judge_probe
from envlock.verify import VerifyRun, verify_run

DEFAULT_BUDGET_SECONDS = 120.0
DEFAULT_JOBS = 2
CHILD_OVERHEAD_SECONDS = 1.5  # process start and result transfer, on top of the TF import

__all__ = ["DEFAULT_BUDGET_SECONDS", "DEFAULT_JOBS", "explain_golden"]


def _candidate_env(environ: dict[str, str], candidate: Candidate) -> dict[str, str]:
    env = dict(environ)
    for name, value in candidate.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class _Runner:
    """Runs candidates in probe children within the budget; remembers what it could not try."""

    def __init__(self, run: VerifyRun, records: dict[str, ProbeRecord], baseline: dict[str, set[str]],
                 deadline: float, jobs: int, probe_modules: list[str] | None = None,
                 probe_timeout: float | None = None) -> None:
        self.run, self.records, self.baseline, self.deadline, self.jobs = run, records, baseline, deadline, jobs
        self.probe_modules, self.probe_timeout = list(probe_modules or []), probe_timeout
        result = run.result
        seconds = sum(r[0].get("seconds", 0.0) for n, r in result.get("runs", {}).items() if n in records)
        self.estimate = float(result.get("import_seconds", 4.0)) + seconds + CHILD_OVERHEAD_SECONDS

    def _one(self, candidate: Candidate) -> CandidateOutcome:
        started = time.perf_counter()
        outcome = CandidateOutcome(id=candidate.id, kind=candidate.kind, reason=candidate.reason,
                                   env=dict(candidate.env), size=candidate.size,
                                   affinity=list(candidate.affinity) if candidate.affinity else None)
        timeout = max(5.0, self.deadline - time.monotonic())
        try:
            result = run_child(probe_names=list(self.records), repeat=1, settings=self.run.golden.lockdown,
                               env=_candidate_env(self.run.environ, candidate), timeout=timeout,
                               affinity=list(candidate.affinity) if candidate.affinity else None,
                               probe_modules=self.probe_modules, probe_timeout=self.probe_timeout)
        except EnvlockError as exc:
            outcome.status = "crashed"
            outcome.detail = str(exc)
            outcome.seconds = round(time.perf_counter() - started, 2)
            return outcome
        for name, record in self.records.items():
            runs = result.get("runs", {}).get(name) or [{"status": "skipped", "reason": "not run", "seconds": 0.0}]
            verdict = judge_probe(record, runs, Tolerance())
            if verdict.status == "identical":
                outcome.probes[name] = "identical"
            elif verdict.status == "skipped" or runs[0].get("status") == "error":
                outcome.probes[name] = "could not run: " + (runs[0].get("reason") or verdict.reason or "skipped")
            elif set(verdict.outputs_differing) < self.baseline[name]:
                restored = sorted(self.baseline[name] - set(verdict.outputs_differing))
                outcome.probes[name] = "partly: restored " + ", ".join(restored)
            else:
                outcome.probes[name] = "unchanged"
        outcome.status = "tried"
        outcome.seconds = round(time.perf_counter() - started, 2)
        return outcome

    def run_all(self, candidates: list[Candidate]) -> list[CandidateOutcome]:
        """In parallel up to ``jobs``; a candidate that would end past the deadline is not started."""
        outcomes: dict[str, CandidateOutcome] = {}
        pending = list(candidates)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            running: dict[concurrent.futures.Future[CandidateOutcome], Candidate] = {}
            while pending or running:
                while pending and len(running) < self.jobs:
                    candidate = pending.pop(0)
                    if time.monotonic() + self.estimate > self.deadline:
                        outcomes[candidate.id] = CandidateOutcome(
                            id=candidate.id, kind=candidate.kind, reason=candidate.reason, env=dict(candidate.env),
                            size=candidate.size, status="not tried (budget)")
                        continue
                    running[pool.submit(self._one, candidate)] = candidate
                if not running:
                    continue
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    candidate = running.pop(future)
                    outcomes[candidate.id] = future.result()
        return [outcomes[c.id] for c in candidates]


def _shrink(runner: _Runner, plan: Plan, combined: CandidateOutcome, probe: str,
            environ: dict[str, str]) -> tuple[Candidate | None, list[CandidateOutcome]]:
    """A smaller set than "all together" that still fixes ``probe``: drop members one at a time."""
    members = [c for c in plan.candidates if c.id in combined.id.split(" + ") and c.kind != "all"]
    tried: list[CandidateOutcome] = []
    index = 0
    while len(members) > 1 and index < len(members):
        trial = [m for i, m in enumerate(members) if i != index]
        candidate = trial[0] if len(trial) == 1 else combine(trial, environ)
        outcome = runner.run_all([candidate])[0]
        tried.append(outcome)
        if outcome.status != "tried":
            return None, tried
        if outcome.probes.get(probe) == "identical":
            members = trial
        else:
            index += 1
    if len(members) == 1:
        return members[0], tried
    return combine(members, environ), tried


def _finding(name: str, plan: Plan, outcomes: list[CandidateOutcome], loc: Any, differing: list[str],
             cpu_change: str | None) -> Finding:
    finding = Finding(probe=name, localisation=loc, outputs_differing=differing)
    fixes = sorted((o for o in outcomes if o.probes.get(name) == "identical"), key=lambda o: o.size)
    if fixes:
        best = [o for o in fixes if o.size == fixes[0].size]
        finding.status = "fixed"
        finding.fixed_by = best[0].id
        finding.env = best[0].env
        finding.affinity = best[0].affinity
        finding.alternatives = [o.id for o in best[1:]]
        finding.detail = f"bitwise identical under {best[0].id}"
        return finding
    partial = [o for o in outcomes if (o.probes.get(name) or "").startswith("partly")]
    untried = [o.id for o in outcomes if o.status != "tried" or (o.probes.get(name) or "").startswith("could not")]
    evidence = loc.summary if loc else ""
    if partial:
        finding.status = "partly"
        finding.fixed_by = partial[0].id
        finding.env = partial[0].env
        finding.detail = f"{partial[0].probes[name].removeprefix('partly: ')} under {partial[0].id}; {evidence}"
    elif untried:
        finding.status = "not proved"
        finding.detail = f"{len(untried)} candidate(s) could not be tried ({', '.join(untried)}); {evidence}"
    elif plan.version_differences:
        finding.status = "version"
        finding.detail = (f"no setting on this machine can change a version ({'; '.join(plan.version_differences)}): "
                          f"build the golden's image with `envlock build`; {evidence}")
    else:
        tried = len([o for o in outcomes if o.status == "tried"])
        why = (f"none of the {tried} configuration(s) tried restored an output" if tried
               else "no setting that differs from the golden can be changed here")
        finding.status = "hardware-bound"
        finding.detail = (f"not fixable by configuration on this machine: {why}; the remaining difference is the "
                          f"CPU{f' ({cpu_change})' if cpu_change else ''}; {evidence}")
    return finding


def _cpu_change(run: VerifyRun) -> str | None:
    g, h = run.golden.manifest.cpu, run.manifest.cpu
    if (g.vendor, g.model_name) == (h.vendor, h.model_name):
        return None
    return f"{g.model_name or g.vendor} in the golden, {h.model_name or h.vendor} here"


def explain_golden(golden_path: Path | str, *, probe_names: list[str] | None = None,
                   budget: float = DEFAULT_BUDGET_SECONDS, jobs: int = DEFAULT_JOBS,
                   trusted_keys: Sequence[TrustedKey] = (), probe_modules: Sequence[str] = (),
                   probe_timeout: float | None = None) -> ExplainReport:
    """Verify, then prove by experiment why each drifting probe drifts. Raises like ``verify_golden``.
    ``probe_modules`` load user probes in every child (verify's and each candidate's)."""
    started = time.monotonic()
    deadline = started + budget
    run = verify_run(golden_path, probe_names=probe_names, trusted_keys=trusted_keys, onednn_verbose=True,
                     probe_modules=probe_modules, probe_timeout=probe_timeout)
    verified = time.monotonic()
    report = run.report
    drifting = [v for v in report.probes if v.status == "drift"]
    explain = ExplainReport(golden=report.golden, golden_digest=report.golden_digest, reproduces=report.reproduces,
                            exit_code=OK if report.reproduces else DRIFT, budget_seconds=budget, verify=report)
    if not drifting:
        explain.notes.append("nothing to explain: no probe drifted" if report.reproduces else
                             "nothing to explain by configuration: no probe drifted against the golden (see the "
                             "nondeterministic probes)")
        seconds = round(verified - started, 3)
        explain.timings = {"verify_seconds": seconds, "total_seconds": seconds}
        return explain
    records = {v.name: rec for v in drifting if (rec := run.golden.probe(v.name)) is not None}
    applied_env, refused_env = partition_environment(run.golden.lockdown.environment)  # no dump, path, plugin...
    explain.notes += [note] if (note := refused_note(refused_env)) else []
    plan = plan_interventions(run.golden.manifest, applied_env, run.manifest, run.environ)
    explain.not_applicable, explain.version_differences = plan.not_applicable, plan.version_differences
    if plan.version_differences:
        explain.notes.append("no setting on this machine can change a TensorFlow, Keras or numpy version: the real "
                             "fix is `envlock build` from this golden (its pinned image); the rest is proved below")
    baseline = {v.name: set(v.outputs_differing) or {"(the probe)"} for v in drifting}
    runner = _Runner(run, records, baseline, deadline, jobs, list(probe_modules), probe_timeout)
    outcomes = runner.run_all(plan.candidates)
    # "All together" fixed a probe that no single candidate fixes: look for a smaller set.
    combined = next((o for o in outcomes if o.kind == "all"), None)
    singles_fix = {n for o in outcomes if o.kind != "all" for n, s in o.probes.items() if s == "identical"}
    if combined is not None:
        for name in [n for n, s in combined.probes.items() if s == "identical" and n not in singles_fix]:
            smaller, tried = _shrink(runner, plan, combined, name, run.environ)
            outcomes += tried
            if smaller is not None and smaller.id != combined.id:
                match = next((o for o in outcomes if o.id == smaller.id), None)
                if match is not None:
                    match.probes[name] = "identical"
    explain.candidates = outcomes
    explain.not_tried = [o.id for o in outcomes if o.status != "tried"]
    cpu_change = _cpu_change(run)
    for verdict in drifting:
        first_run = run.result.get("runs", {}).get(verdict.name, [{"status": "skipped", "seconds": 0.0}])[0]
        loc = localise(records[verdict.name], first_run) if verdict.name in records else None
        finding = _finding(verdict.name, plan, outcomes, loc, verdict.outputs_differing, cpu_change)
        explain.findings.append(finding)
        verdict.proved = finding.proof()
    _emit(explain)
    explain.timings = {"verify_seconds": round(verified - started, 3),
                       "explain_seconds": round(time.monotonic() - verified, 3),
                       "total_seconds": round(time.monotonic() - started, 3)}
    return explain


def _emit(explain: ExplainReport) -> None:
    """The environment that makes this machine reproduce: the union of the fixes, where they agree."""
    env: dict[str, str | None] = {}
    affinity: list[int] | None = None
    for finding in explain.findings:
        if finding.status != "fixed":
            continue
        for name, value in finding.env.items():
            if name in env and env[name] != value:
                explain.notes.append(f"the fixes disagree on {name}: no single environment reproduces every probe")
                return
            env[name] = value
        affinity = finding.affinity or affinity
    if env or affinity:
        explain.emit_env = dict(sorted(env.items()))
        explain.emit_affinity = affinity
        explain.emit_complete = all(f.status == "fixed" for f in explain.findings)


def environment_file(explain: ExplainReport) -> str:
    """A shell snippet: ``export``/``unset`` lines, and the CPU list to run under where one is needed."""

    lines = [f"# envlock explain: the environment under which this machine reproduced {explain.golden}",
             "# " + ("every drifting probe" if explain.emit_complete else "some drifting probes (see the report)")]
    for name, value in (explain.emit_env or {}).items():
        lines.append(f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}")
    if explain.emit_affinity:
        lines.append(f"# and run pinned to these CPUs: taskset -c {','.join(map(str, explain.emit_affinity))} ...")
    return "\n".join(lines) + "\n"
