"""Why a probe drifted: manifest differences ranked against the probe's tags.

The rules are DATA, in the one rule table ``envlock.rules.RULES``: the entry of a difference's
path names the mechanisms (``causes``) through which it can move probes, each with the probe tags
it can move, how strongly it is implicated and a reason a person understands. They were written
from our measurements (docs/causes.md; the choices are in docs/attribution.md). A difference
whose entry names no mechanism can still explain a probe through its own ``components``.

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
from typing import Any

from pydantic import BaseModel

from envlock.rules import Mechanism, rule_for

UNEXPLAINED = "no recorded difference explains this: an unrecorded hardware or firmware difference"

SEVERITY_SCORE = {"critical": 3.0, "warning": 1.5, "info": 0.2}
# Stable probes only move with versions (or seeds); canaries with configuration and hardware.
GROUP_BOOST: dict[str, dict[str, float]] = {
    "stable": {"version": 6.0},
    "canary": {"hardware": 2.0, "threads": 2.0, "onednn": 2.0, "xla": 2.0, "numpy": 1.0},
    # Hardware-arithmetic probes moved, stable held: the CPU model, not a setting. Above the ISA
    # flags too: the cross-vendor case capped the ISA and the drift stayed bit for bit (docs/causes.md).
    "hardware": {"arithmetic": 14.0, "hardware": 8.0, "threads": 1.0, "onednn": 1.0},
}
HARDWARE_NOTE = ("only hardware-arithmetic probes (and canaries) moved while the stable probes held: the cause is "
                 "the CPU model (its approximate reciprocal/rsqrt instructions or the cache sizes Eigen blocks "
                 "by), not a setting; no environment variable makes this machine give the golden's bits")


def group_rule(*, stable_drifted: bool, hardware_drifted: bool) -> str:
    """Which GROUP_BOOST applies: versions when a stable probe moved, else the CPU model when a
    hardware-arithmetic probe moved, else the canary settings."""
    if stable_drifted:
        return "stable"
    return "hardware" if hardware_drifted else "canary"


class Cause(BaseModel):
    path: str | None
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


def _applies(mechanism: Mechanism, all_paths: set[str]) -> bool:
    return not any(fnmatch.fnmatchcase(p, u) for p in all_paths for u in mechanism.unless)


def explain(probe_tags: set[str], differences: list[Any], *, stable_drifted: bool,
            hardware_drifted: bool = False) -> list[Cause]:
    """The differences that can explain a drift of a probe with ``probe_tags``, most likely first.

    ``stable_drifted``: whether any stable-group probe drifted in this verify (the
    stable-vs-canary rule); ``hardware_drifted``: whether a hardware-group probe drifted (the
    hardware-arithmetic rule, applied when the stable group held). Returns ``[UNEXPLAINED]`` when
    nothing matches.
    """
    all_paths = {d.path for d in differences}
    boosts = GROUP_BOOST[group_rule(stable_drifted=stable_drifted, hardware_drifted=hardware_drifted)]
    causes: list[Cause] = []
    for diff in differences:
        matched = [m for m in rule_for(diff.path).causes if _applies(m, all_paths)]
        if any(m.weight <= 0 for m in matched):
            continue  # measured harmless: never blame it
        relevant = [m for m in matched if m.tags & probe_tags]
        base = SEVERITY_SCORE.get(diff.severity, 0.0)
        if relevant:
            best = max(relevant, key=lambda m: m.weight + boosts.get(m.kind, 0.0))  # a tie: the first listed
            score = base + best.weight + boosts.get(best.kind, 0.0)
            reason = best.reason.format(path=diff.path, old=_show(diff.old), new=_show(diff.new))
            rule_id: str | None = best.id
        elif not matched and set(diff.components) & probe_tags:
            score, reason, rule_id = base, diff.reason, None
        else:
            continue  # the path's mechanisms cannot move this probe
        causes.append(Cause(path=diff.path, old=diff.old, new=diff.new, severity=diff.severity, reason=reason,
                            score=round(score, 2), rule=rule_id, environment=diff.path.startswith("environment.")))
    causes.sort(key=lambda c: (-c.score, c.path or ""))
    return causes or [Cause(path=None, reason=UNEXPLAINED, score=0.0)]
