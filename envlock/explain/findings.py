"""What explain concludes per drifting probe from the candidates' outcomes, and the environment
that reproduces (pure: outcomes in, findings and the emitted environment out)."""

from __future__ import annotations

from collections.abc import Sequence

from envlock.explain.localise import Localisation
from envlock.explain.planner import Bisection, Plan
from envlock.explain.report import CandidateOutcome, ExplainReport, Finding
from envlock.explain.report import Settings as SettingValues


def finding_for(probe: str, outcomes: Sequence[CandidateOutcome], *, plan: Plan, localisation: Localisation | None,
                differing: list[str], cpu_change: str | None,
                unrecorded: tuple[Bisection, int] | None = None) -> Finding:
    """``probe``'s finding: fixed by the smallest candidates that made it bitwise identical, partly,
    not proved (candidates not tried), version, or hardware-bound. ``cpu_change``: the CPU the golden
    ran on and this one, where they differ. ``unrecorded``: the search among the variables the golden
    never saw, and how many there were."""
    finding = Finding(probe=probe, localisation=localisation, outputs_differing=differing)
    fixes = sorted((o for o in outcomes if _status(o, probe) == "identical"), key=lambda o: o.size)
    if fixes:
        best = [o for o in fixes if o.size == fixes[0].size]
        finding.status = "fixed"
        finding.fixed_by = best[0].id
        finding.env = best[0].env
        finding.settings = best[0].settings
        finding.alternatives = [o.id for o in best[1:]]
        finding.detail = f"bitwise identical under {best[0].id}"
        if best[0].kind == "unrecorded":
            finding.detail += " (a variable set here that the golden's environment does not have)"
            if unrecorded is not None and unrecorded[0].cause is None and best[0].size > 1:
                finding.detail += "; not narrowed further within the budget"
        return finding
    partial = [o for o in outcomes if _status(o, probe) == "partly"]
    untried = [o.id for o in outcomes if o.status != "tried" or _status(o, probe) == "could not run"]
    evidence = localisation.summary if localisation else ""
    if partial:
        finding.status = "partly"
        finding.fixed_by = partial[0].id
        finding.env = partial[0].env
        finding.detail = f"{partial[0].probes[probe].restored_text} under {partial[0].id}; {evidence}"
    elif untried:
        finding.status = "not proved"
        finding.detail = f"{len(untried)} candidate(s) could not be tried ({', '.join(untried)}); {evidence}"
    elif plan.version_differences:
        finding.status = "version"
        finding.detail = (f"no setting on this machine can change a version ({'; '.join(plan.version_differences)}): "
                          f"build the golden's image with `envlock build`; {evidence}")
    else:
        tried = len([o for o in outcomes if o.status == "tried" and o.kind != "unrecorded"])
        why = (f"none of the {tried} configuration(s) tried restored an output" if tried
               else "no setting that differs from the golden can be changed here")
        if unrecorded is not None and unrecorded[0].restores is False:
            why += f", nor did unsetting the {unrecorded[1]} variable(s) set here that the golden does not have"
        finding.status = "hardware-bound"
        finding.detail = (f"not fixable by configuration on this machine: {why}; the remaining difference is the "
                          f"CPU{f' ({cpu_change})' if cpu_change else ''}; {evidence}")
    return finding


def _status(outcome: CandidateOutcome, probe: str) -> str | None:
    found = outcome.probes.get(probe)
    return found.status if found is not None else None


def restored_nothing(probe: str, outcomes: Sequence[CandidateOutcome]) -> bool:
    """No candidate restored any output of ``probe``."""
    return not any(_status(o, probe) in ("identical", "partly") for o in outcomes)


def emit_environment(explain: ExplainReport) -> None:
    """The environment that makes this machine reproduce, into ``explain``: the union of the fixes,
    where they agree (a note where they do not); a later fix's setting wins."""
    env: dict[str, str | None] = {}
    settings: SettingValues = {}
    for finding in explain.findings:
        if finding.status != "fixed":
            continue
        for name, value in finding.env.items():
            if name in env and env[name] != value:
                explain.notes.append(f"the fixes disagree on {name}: no single environment reproduces every probe")
                return
            env[name] = value
        settings.update({name: value for name, value in finding.settings.items() if value})
    if env or settings:
        explain.emit_env = dict(sorted(env.items()))
        explain.emit_settings = settings
        explain.emit_complete = all(f.status == "fixed" for f in explain.findings)
