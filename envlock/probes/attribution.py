"""Why a probe drifted: manifest differences ranked against the probe's tags.

The rules are DATA, in the one rule table ``envlock.rules.RULES``: the entry of a difference's
path names the mechanisms (``causes``) through which it can move probes, each with the probe tags
it can move, how strongly it is implicated and a reason a person understands. They were written
from our measurements (docs/causes.md; the choices are in docs/attribution.md). A difference
whose entry names no mechanism can still explain a probe through its own ``components``.

The group rules (their data is the ``envlock.vocab.GROUPS`` table: each group's boosts and precedence).
The stable-vs-canary rule: stable probes (RNG, tf.data order, init, TF elementwise, row
reductions) never moved under hardware, thread or oneDNN changes, only under version or
seed changes. So when a stable probe drifts, version rules are boosted; when only canaries
drift, hardware/thread/oneDNN/XLA rules are.

The hardware-arithmetic rule: the ``hardware`` group (approximate reciprocal/rsqrt, division,
normalisation, Eigen's cache-blocked contraction) depends on the CPU model itself. When one of
them drifts and the stable group held, the CPU model (vendor, model, cache sizes) is boosted
above every setting: no variable makes one vendor's approximate instructions give the other's bits.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from envlock.rules import RULES, Mechanism, rule_for
from envlock.vocab import GROUPS, ruling_group

UNEXPLAINED = ("no recorded difference explains this: the cause is something envlock does not record (an "
               "environment variable, a library, or the hardware); `envlock explain` tests which")
# How many changes one merged cause names before it says "and N more".
MERGED_CHANGES_SHOWN = 4
_CHANGE_PREFIX = "{path} {old} -> {new}: "

SEVERITY_SCORE = {"critical": 3.0, "warning": 1.5, "info": 0.2}


class Cause(BaseModel):
    path: str | None  # the first (most specific) of ``paths``
    paths: list[str] = Field(default_factory=list)  # every difference this one mechanism stands for
    old: Any = None
    new: Any = None
    severity: str | None = None
    reason: str
    score: float
    rule: str | None = None
    environment: bool = False  # a determinism env var: --golden-env would remove it


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, str) else str(value)


def _applies(mechanism: Mechanism, diff: Any, all_paths: set[str]) -> bool:
    if mechanism.when_value is not None and not any(
            isinstance(v, str) and mechanism.when_value in v for v in (diff.old, diff.new)):
        return False
    return not any(fnmatch.fnmatchcase(p, u) for p in all_paths for u in mechanism.unless)


def explain(probe_tags: set[str], differences: list[Any], *, drifted_groups: Iterable[str | None]) -> list[Cause]:
    """The differences that can explain a drift of a probe with ``probe_tags``, most likely first.

    ``drifted_groups``: the groups of the probes that drifted in this verify; the boosts of the one
    that rules (``envlock.vocab.ruling_group``: stable, else hardware, else canary) apply. Returns
    ``[UNEXPLAINED]`` when nothing matches.
    """
    all_paths = {d.path for d in differences}
    boosts = GROUPS[ruling_group(drifted_groups)].boosts
    by_mechanism: dict[str, list[tuple[Any, Mechanism, float]]] = {}
    causes: list[Cause] = []
    for diff in differences:
        matched = [m for m in rule_for(diff.path).causes if _applies(m, diff, all_paths)]
        if any(m.weight <= 0 for m in matched):
            continue  # measured harmless: never blame it
        relevant = [m for m in matched if m.tags & probe_tags]
        base = SEVERITY_SCORE.get(diff.severity, 0.0)
        if relevant:
            best = max(relevant, key=lambda m: m.weight + boosts.get(m.kind, 0.0))  # a tie: the first listed
            by_mechanism.setdefault(best.id, []).append((diff, best, base + best.weight + boosts.get(best.kind, 0.0)))
        elif not matched and set(diff.components) & probe_tags:
            causes.append(Cause(path=diff.path, paths=[diff.path], old=diff.old, new=diff.new, severity=diff.severity,
                                reason=diff.reason, score=round(base, 2), rule=None,
                                environment=diff.path.startswith("environment.")))
    causes += [_merged(entries) for entries in by_mechanism.values()]
    causes.sort(key=lambda c: (-c.score, c.path or ""))
    return causes or [Cause(path=None, reason=UNEXPLAINED, score=0.0)]


def _rule_order(path: str) -> int:
    return next(i for i, rule in enumerate(RULES) if fnmatch.fnmatchcase(path, rule.pattern))


def _merged(entries: list[tuple[Any, Mechanism, float]]) -> Cause:
    """One cause for every difference that implicates the same mechanism (a vendor change differs in
    cpu.vendor, cpu.family, cpu.model and cpu.model_name: one cause, not four), most specific first."""
    # The setting a person can change first (an environment variable), then the most specific path.
    entries.sort(key=lambda e: (-e[2], not e[0].path.startswith("environment."), _rule_order(e[0].path), e[0].path))
    first, mechanism, score = entries[0]
    if len(entries) == 1 or not mechanism.reason.startswith(_CHANGE_PREFIX):
        reason = mechanism.reason.format(path=first.path, old=_show(first.old), new=_show(first.new))
    else:
        shown = [f"{d.path} {_show(d.old)} -> {_show(d.new)}" for d, _, _ in entries[:MERGED_CHANGES_SHOWN]]
        if len(entries) > MERGED_CHANGES_SHOWN:
            shown.append(f"and {len(entries) - MERGED_CHANGES_SHOWN} more")
        reason = ", ".join(shown) + ": " + mechanism.reason[len(_CHANGE_PREFIX):]
    return Cause(path=first.path, paths=[d.path for d, _, _ in entries], old=first.old, new=first.new,
                 severity=first.severity, reason=reason, score=round(score, 2), rule=mechanism.id,
                 environment=any(d.path.startswith("environment.") for d, _, _ in entries))
