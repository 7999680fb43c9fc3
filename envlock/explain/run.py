"""explain: prove why this machine does not reproduce a golden, by experiment.

Flow: a verify (with oneDNN's verbose output on, so the primitives are known) -> the drifting
probes -> localisation of each (first differing intermediate or output, primitives that differ) ->
the planner's candidates, each run in a fresh probe child on the drifting probes only, in parallel
up to ``jobs``, within ``budget`` seconds in all -> per probe: fixed by the smallest candidate set
that makes it bitwise identical, partly (some outputs restored), or not fixable by configuration
on this machine -> for the probes nothing recorded restored, the variables set here that the golden
never saw, bisected down to the one whose unsetting restores the bits -> the environment that
reproduces, where one exists.

**The budget** covers the candidates absolutely: each child gets at most the time left, and one
stopped at the deadline is not restarted for its remaining probes (the supervisor restarts a child
whose probe hung; ``DeadlineRunner`` refuses that once the time is up). What does not fit is
reported as not tried.

**Redaction.** Candidate ids, reasons, environments and details quote the golden's values and this
machine's (``XLA_FLAGS=--xla_dump_to=https://user:pw@host``, ``/home/someuser``): the report (text,
``--json``, ``--report``) passes every string through ``envlock.redact.redact_value`` once, when it
is built, as verify's does. The environment file (``--emit-env``) is a shell snippet for this
machine, so it keeps a value raw only where it is this machine's own and needed to reproduce: a
value that needs redacting is written only when every part of it that needs redacting is already in
this machine's value of that variable (its own ``XLA_FLAGS`` with a flag envlock appended); a
golden's value that needs redacting is never written (the redacted text would not reproduce, the
raw one is someone else's secret), and the file says which variable it left out. Unsets carry no
value. The file is always written when asked for, so no stale one survives a run: when no
environment reproduces, sourcing it fails with that message.
"""

from __future__ import annotations

import concurrent.futures
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from envlock.environ import partition_environment, refused_note
from envlock.errors import DRIFT, OK, EnvlockError, one_line
from envlock.explain.families import Candidate, Launch, apply, combine, env_file_line
from envlock.explain.families.profile import portable_candidate
from envlock.explain.families.unrecorded import unrecorded_variables, unset_candidate
from envlock.explain.findings import emit_environment, finding_for, restored_nothing
from envlock.explain.localise import localise
from envlock.explain.planner import Bisection, Plan, minimal_unset, plan_interventions
from envlock.explain.portable import portable_check
from envlock.explain.report import IDENTICAL, UNCHANGED, CandidateOutcome, ExplainReport, ProbeOutcome
from envlock.golden import ProbeRecord
from envlock.probes.compare import Tolerance
from envlock.probes.supervisor import run_child
from envlock.profiles import Profile
from envlock.progress import NO_PROGRESS, Progress
from envlock.record import portable_profile
from envlock.redact import needs_redaction, redact_data
from envlock.results import ChildResult
from envlock.runner import ChildLimits, CommandResult, Runner
from envlock.signing import TrustedKey
from envlock.verdict import judge_probe
from envlock.verify import VerifyRun, verify_run

DEFAULT_BUDGET_SECONDS = 120.0
DEFAULT_JOBS = 2
CHILD_OVERHEAD_SECONDS = 1.5  # process start and result transfer, on top of the TF import

__all__ = ["DEFAULT_BUDGET_SECONDS", "DEFAULT_JOBS", "BudgetSpent", "CandidateRunner", "DeadlineRunner",
           "environment_file", "environment_text", "explain_golden", "redact_report", "search_unrecorded", "shrink",
           "writable_values"]


class BudgetSpent(Exception):
    """The deadline passed while a candidate's child ran, or before a restart: it is not run again."""


class DeadlineRunner(Runner):
    """The real runner with an absolute deadline: a child gets at most the time left, and none starts
    after it (the supervisor would restart a stopped child for its remaining probes)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def run_watched(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                    watch: Callable[[], str | None], interval: float = 0.25, cwd: str | Path | None = None,
                    limits: ChildLimits | None = None) -> CommandResult | None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BudgetSpent
        result = super().run_watched(argv, timeout=min(timeout, left), env=env, watch=watch, interval=interval,
                                     cwd=cwd, limits=limits)
        if result is None and time.monotonic() >= self.deadline:
            raise BudgetSpent
        return result


class CandidateRunner:
    """Runs candidates in probe children within the budget; remembers what it could not try."""

    def __init__(self, run: VerifyRun, records: dict[str, ProbeRecord], baseline: dict[str, set[str]],
                 deadline: float, jobs: int, probe_modules: list[str] | None = None,
                 probe_timeout: float | None = None, progress: Progress = NO_PROGRESS) -> None:
        self.progress = progress
        self.run, self.records, self.baseline, self.deadline, self.jobs = run, records, baseline, deadline, jobs
        self.probe_modules, self.probe_timeout = list(probe_modules or []), probe_timeout
        result = run.result
        seconds = sum(result.first_run(n).seconds for n in result.runs if n in records)
        imported = 4.0 if result.import_seconds is None else result.import_seconds
        self.estimate = imported + seconds + CHILD_OVERHEAD_SECONDS
        self.results: dict[str, ChildResult] = {}  # candidate id -> the child's result (the profile's check)

    def run_one(self, candidate: Candidate) -> CandidateOutcome:
        """One candidate's child on every probe of this runner (not started past the deadline)."""
        started = time.perf_counter()
        outcome = CandidateOutcome(id=candidate.id, kind=candidate.kind, reason=candidate.reason,
                                   env=dict(candidate.env), size=candidate.size,
                                   settings={name: list(value) for name, value in candidate.settings.items() if value})
        left = self.deadline - time.monotonic()
        if left <= 0:
            outcome.status = "not tried (budget)"
            return outcome
        launch = apply(candidate, Launch(env=dict(self.run.environ)))
        self.progress.task_started(candidate.id)
        try:
            result = run_child(probe_names=list(self.records), repeat=1, settings=self.run.golden.lockdown,
                               env=launch.env, timeout=left, runner=DeadlineRunner(self.deadline),
                               probe_modules=self.probe_modules, probe_timeout=self.probe_timeout,
                               on_event=self.progress.events_for(candidate.id), **launch.options)
        except BudgetSpent:
            outcome.status = "stopped (budget)"
            outcome.detail = "stopped at the end of the budget, not restarted"
            outcome.seconds = round(time.perf_counter() - started, 2)
            return outcome
        except EnvlockError as exc:
            outcome.status = "crashed"
            outcome.detail = str(exc)
            outcome.seconds = round(time.perf_counter() - started, 2)
            return outcome
        finally:
            self.progress.task_finished(candidate.id)
        self.results[candidate.id] = result
        for name, record in self.records.items():
            runs = result.runs_of(name)
            verdict = judge_probe(record, runs, Tolerance())
            if verdict.status == "identical":
                outcome.probes[name] = IDENTICAL
            elif verdict.status == "skipped" or runs[0].status == "error":
                outcome.probes[name] = ProbeOutcome(status="could not run",
                                                    reason=runs[0].reason or verdict.reason or "skipped")
            elif set(verdict.outputs_differing) < self.baseline[name]:
                restored = sorted(self.baseline[name] - set(verdict.outputs_differing))
                outcome.probes[name] = ProbeOutcome(status="partly", restored=tuple(restored))
            else:
                outcome.probes[name] = UNCHANGED
        outcome.status = "tried"
        outcome.seconds = round(time.perf_counter() - started, 2)
        return outcome

    def subset(self, names: list[str]) -> CandidateRunner:
        """The same runner for some of the probes only (its children run just those)."""
        return CandidateRunner(self.run, {n: self.records[n] for n in names}, self.baseline, self.deadline, self.jobs,
                       self.probe_modules, self.probe_timeout)

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
                    running[pool.submit(self.run_one, candidate)] = candidate
                if not running:
                    continue
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    candidate = running.pop(future)
                    outcomes[candidate.id] = future.result()
        return [outcomes[c.id] for c in candidates]


def shrink(runner: CandidateRunner, plan: Plan, combined: Candidate, probe: str,
           environ: dict[str, str]) -> tuple[Candidate | None, list[CandidateOutcome]]:
    """A smaller set than ``combined`` (all together) that still fixes ``probe``: drop its members
    one at a time."""
    members = [c for c in plan.candidates if c.id in combined.members and c.kind != "all"]
    tried: list[CandidateOutcome] = []
    index = 0
    while len(members) > 1 and index < len(members):
        trial = [m for i, m in enumerate(members) if i != index]
        candidate = trial[0] if len(trial) == 1 else combine(trial, environ)
        outcome = runner.run_all([candidate])[0]
        tried.append(outcome)
        if outcome.status != "tried":
            return None, tried
        if outcome.probes.get(probe) == IDENTICAL:
            members = trial
        else:
            index += 1
    if len(members) == 1:
        return members[0], tried
    return combine(members, environ), tried


def _restored(outcome: CandidateOutcome, probe: str) -> bool | None:
    """What a bisection trial says: identical, not (a crash counts as not), or not tried (budget)."""
    if outcome.status in ("not tried (budget)", "stopped (budget)"):
        return None
    return outcome.status == "tried" and outcome.probes.get(probe) == IDENTICAL


def search_unrecorded(runner: CandidateRunner, names: tuple[str, ...],
                       probes: list[str]) -> tuple[dict[str, Bisection], list[CandidateOutcome]]:
    """Per probe, the unrecorded variable (or smallest set) whose unsetting restores it. A child runs
    every probe searched, so the probes share trials: one cause of several drifts costs one search."""
    tried: dict[frozenset[str], CandidateOutcome] = {}

    def trial_for(probe: str) -> Callable[[list[tuple[str, ...]]], list[bool | None]]:
        def trial(sets: list[tuple[str, ...]]) -> list[bool | None]:
            new = [s for s in sets if frozenset(s) not in tried]
            if new:
                candidates = [unset_candidate(s, total=len(names), trial=len(tried) + i + 1)
                              for i, s in enumerate(new)]
                for names_unset, outcome in zip(new, runner.run_all(candidates), strict=True):
                    tried[frozenset(names_unset)] = outcome
            return [_restored(tried[frozenset(s)], probe) for s in sets]
        return trial

    found = {p: minimal_unset(names, trial_for(p), parallel=runner.jobs > 1) for p in probes}
    return found, list(tried.values())


def _cpu_change(run: VerifyRun) -> str | None:
    g, h = run.golden.manifest.cpu, run.manifest.cpu
    if (g.vendor, g.model_name) == (h.vendor, h.model_name):
        return None
    return f"{g.model_name or g.vendor} in the golden, {h.model_name or h.vendor} here"


def explain_golden(golden_path: Path | str, *, probe_names: list[str] | None = None,
                   budget: float = DEFAULT_BUDGET_SECONDS, jobs: int = DEFAULT_JOBS,
                   trusted_keys: Sequence[TrustedKey] = (), probe_modules: Sequence[str] = (),
                   probe_timeout: float | None = None, progress: Progress = NO_PROGRESS) -> ExplainReport:
    """Verify, then prove by experiment why each drifting probe drifts. Raises like ``verify_golden``.
    ``probe_modules`` load user probes in every child (verify's and each candidate's)."""
    started = time.monotonic()
    deadline = started + budget
    run = verify_run(golden_path, probe_names=probe_names, trusted_keys=trusted_keys, onednn_verbose=True,
                     probe_modules=probe_modules, probe_timeout=probe_timeout, progress=progress)
    verified = time.monotonic()
    report = run.report
    home = run.environ.get("HOME")
    drifting = [v for v in report.probes if v.status == "drift"]
    explain = ExplainReport(golden=report.golden, golden_digest=report.golden_digest, reproduces=report.reproduces,
                            exit_code=OK if report.reproduces else DRIFT, budget_seconds=budget, verify=report)
    if not drifting:
        explain.notes.append("nothing to explain: no probe drifted" if report.reproduces else
                             "nothing to explain by configuration: no probe drifted against the golden (see the "
                             "nondeterministic probes)")
        seconds = round(verified - started, 3)
        explain.timings = {"verify_seconds": seconds, "total_seconds": seconds}
        return redact_report(explain, home, environment_text(explain, run.environ))
    records = {v.name: rec for v in drifting if (rec := run.golden.probe(v.name)) is not None}
    applied_env, refused_env = partition_environment(run.golden.lockdown.environment)  # no dump, path, plugin...
    explain.notes += [note] if (note := refused_note(refused_env)) else []
    plan = plan_interventions(run.golden.manifest, applied_env, run.manifest, run.environ)
    explain.not_applicable, explain.version_differences = plan.not_applicable, plan.version_differences
    if plan.version_differences:
        explain.notes.append("no setting on this machine can change a TensorFlow, Keras or numpy version: the real "
                             "fix is `envlock build` from this golden (its pinned image); the rest is proved below")
    baseline = {v.name: set(v.outputs_differing) or {"(the probe)"} for v in drifting}
    progress.stage("explain", candidates=len(plan.candidates), budget=budget)
    runner = CandidateRunner(run, records, baseline, deadline, jobs, list(probe_modules), probe_timeout, progress)
    outcomes = runner.run_all(plan.candidates)
    # "All together" fixed a probe that no single candidate fixes: look for a smaller set.
    together = [(c, o) for c, o in zip(plan.candidates, outcomes, strict=True) if c.kind == "all"]
    singles_fix = {n for o in outcomes if o.kind != "all" for n, s in o.probes.items() if s == IDENTICAL}
    if together:
        combined, combined_outcome = together[0]
        for name in [n for n, s in combined_outcome.probes.items() if s == IDENTICAL and n not in singles_fix]:
            smaller, tried = shrink(runner, plan, combined, name, run.environ)
            outcomes += tried
            if smaller is not None and smaller.id != combined.id:
                match = next((o for o in outcomes if o.id == smaller.id), None)
                if match is not None:
                    match.probes[name] = IDENTICAL
    # Nothing recorded restored these: a cause nobody recorded, among the variables the golden never saw?
    unexplained = [n for n in records if restored_nothing(n, outcomes)]
    suspects = unrecorded_variables([*run.golden.manifest.environment, *run.golden.lockdown.environment],
                                    run.environ)
    searched: dict[str, Bisection] = {}
    if unexplained and suspects:
        searched, tried = search_unrecorded(runner.subset(unexplained), suspects, unexplained)
        outcomes += tried
        causes = sorted({n for b in searched.values() if b.cause for n in b.cause})
        if causes:
            explain.notes.append(f"a variable envlock does not record changes the numbers: {', '.join(causes)} "
                                 "(set here, absent from the golden's environment); unsetting it restores the bits")
    explain.candidates = outcomes
    explain.not_tried = [o.id for o in outcomes if o.status != "tried"]
    cpu_change = _cpu_change(run)
    for verdict in drifting:
        loc = localise(records[verdict.name], run.result.first_run(verdict.name)) if verdict.name in records else None
        search = (searched[verdict.name], len(suspects)) if verdict.name in searched else None
        explain.findings.append(finding_for(verdict.name, outcomes, plan=plan, localisation=loc,
                                            differing=verdict.outputs_differing, cpu_change=cpu_change,
                                            unrecorded=search))
    _check_portable(explain, runner, run)
    emit_environment(explain)
    explain.timings = {"verify_seconds": round(verified - started, 3),
                       "explain_seconds": round(time.monotonic() - verified, 3),
                       "total_seconds": round(time.monotonic() - started, 3)}
    explain = redact_report(explain, home, environment_text(explain, run.environ))
    by_name = {f.probe: f for f in explain.findings}
    for verdict in explain.verify.probes:
        if verdict.name in by_name:
            verdict.proved = by_name[verdict.name].proof()
    return explain


def _check_portable(explain: ExplainReport, runner: CandidateRunner, run: VerifyRun) -> None:
    """Hardware-bound probes, once more under the portable profile: would a portable golden travel?
    Skipped when the golden already carries a profile (verify ran under it) or nothing is hardware-bound."""
    bound = [f for f in explain.findings if f.status == "hardware-bound"]
    if not bound or run.golden.profile is not None:
        return
    try:
        profile: Profile = portable_profile()
    except EnvlockError as exc:  # a TensorFlow the profile was not measured on
        explain.notes.append(f"the portable profile was not checked: {exc}")
        return
    candidate = portable_candidate(profile)
    sub = runner.subset([f.probe for f in bound])
    outcome = sub.run_all([candidate])[0]
    explain.candidates.append(outcome)
    if outcome.status != "tried":
        explain.not_tried.append(outcome.id)
    result = sub.results.get(candidate.id)  # None: not tried within the budget, or its child crashed
    for finding in bound:
        first = result.first_run(finding.probe) if result is not None and result.ran(finding.probe) else None
        finding.portable = portable_check(finding.probe, run.golden.lockdown.seed, first, profile)
    exact = [f.probe for f in bound if f.portable and f.portable.status in ("ieee-exact", "covered")]
    if exact:
        explain.notes.append(f"{len(exact)} of the {len(bound)} hardware-bound probes are portable under --portable: "
                             "record the golden with `envlock capture --golden --portable` and verify it on the "
                             "other machine (docs/portable.md)")


def redact_report(explain: ExplainReport, home: str | None, environment: str) -> ExplainReport:
    """The report with every string passed through ``redact_value`` (verify's report is redacted by
    verify), carrying the environment file's text, which is not part of it."""
    data = redact_data(explain.model_dump(mode="python", exclude={"verify"}), home)
    redacted = ExplainReport.model_validate({**data, "verify": explain.verify})
    redacted.attach_environment_file(environment)
    return redacted


def writable_values(values: Mapping[str, str | None], here_env: Mapping[str, str],
                    home: str | None = None) -> tuple[dict[str, str | None], list[str]]:
    """Which of the proved ``values`` the environment file may carry raw, and the names it must leave
    out: a value that needs redacting is kept only when each of its words that needs redacting is a
    word of this machine's own value of that variable (see the module docstring)."""
    kept: dict[str, str | None] = {}
    refused: list[str] = []
    for name, value in values.items():
        if value is None or not needs_redaction(value, home):
            kept[name] = value
            continue
        own = set((here_env.get(name) or "").split())
        if all(word in own for word in value.split() if needs_redaction(word, home)):
            kept[name] = value
        else:
            refused.append(name)
    return kept, refused


def environment_text(explain: ExplainReport, here_env: Mapping[str, str]) -> str:
    """The ``--emit-env`` file for this run: ``export``/``unset`` lines and the CPU list where one was
    proved; a file that says nothing needs setting when the golden reproduces; and, when no
    environment reproduces, a file whose sourcing fails saying so (no stale file survives a run)."""
    golden = one_line(explain.golden)
    if explain.reproduces and not explain.findings:
        return f"# envlock explain: this machine reproduces {golden} as it is: nothing to set\n"
    if not explain.emits:
        message = f"envlock: no environment reproduces {golden} on this machine (see envlock explain's report)"
        return (f"# envlock explain: no environment reproduces {golden} on this machine\n"
                f"echo {shlex.quote(message)} >&2\n"
                "return 1 2>/dev/null || exit 1\n")
    kept, refused = writable_values(explain.emit_env or {}, here_env, here_env.get("HOME"))
    complete = explain.emit_complete and not refused
    lines = [f"# envlock explain: the environment under which this machine reproduced {golden}",
             "# " + ("every drifting probe" if complete else "some drifting probes (see the report)")]
    for name, value in kept.items():
        lines.append(f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}")
    lines += [f"# {name}: not written: the golden's value holds a credential or a home directory (see the report)"
              for name in refused]
    lines += [env_file_line(name, value) for name, value in explain.emit_settings.items() if value]
    return "\n".join(lines) + "\n"


def environment_file(explain: ExplainReport) -> str:
    """The ``--emit-env`` file of a report ``explain_golden`` made (raw values where allowed); for a
    report from elsewhere, rendered from its redacted values."""
    return explain.environment_file or environment_text(explain, {})
