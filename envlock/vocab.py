"""envlock's closed vocabularies: the few words that parts exchange, each defined once.

Base layer (standard library only), so the TensorFlow child, the golden's models, the registry,
verdict, explain and the daemon all name the same type. A new word is added here and nowhere else;
``tests/unit/test_vocab.py`` keeps each ``Literal`` and its tuple of values in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, cast, get_args

# A probe's group: what verify expects of it on another machine (GROUPS below says what each means
# and how verify reads its drift). "hardware" was added after 0.1.0: old goldens lack it.
ProbeGroup = Literal["stable", "canary", "hardware"]
PROBE_GROUPS: tuple[ProbeGroup, ...] = get_args(ProbeGroup)


@dataclass(frozen=True)
class GroupRule:
    """What a probe group means, and everything that reads a probe's group reads here: the
    attribution of a drift (envlock.probes.attribution), verify's note (envlock.verdict), the group
    of a probe nothing said (envlock.probes.supervisor, the pytest plugin) and `envlock cores`."""

    meaning: str
    # When probes of several groups drift, the group of lowest precedence rules the attribution and the note.
    precedence: int
    # Attribution: a factor on every cause whose mechanism (envlock.rules.Mechanism) is named here.
    boosts: Mapping[str, float]
    # Moves only with versions or seeds: verify's note then looks at the version differences.
    versions_only: bool = False
    # Verify's note when this group rules a drift (a versions_only group's note is about the versions).
    drift_note: str | None = None
    # `envlock cores` runs this group's probes on every CPU by default (beside corecheck.CANARIES).
    per_cpu: bool = False


# One row per ProbeGroup (tests/unit/test_vocab.py fails on a group without one). Measured on both
# vendors' machines: docs/causes.md, docs/probes.md.
GROUPS: dict[ProbeGroup, GroupRule] = {
    "stable": GroupRule(
        "RNG streams, tf.data order, weight init, TF elementwise ops, row reductions: they never moved under "
        "any configuration or hardware perturbation, only under version (or seed) changes",
        precedence=0, boosts={"version": 6.0}, versions_only=True),
    "canary": GroupRule(
        "matmul, conv gradients, big reductions, oneDNN-routed ops, XLA, training: they move with hardware, "
        "thread counts, oneDNN and XLA settings",
        precedence=2, boosts={"hardware": 2.0, "threads": 2.0, "onednn": 2.0, "xla": 2.0, "numpy": 1.0},
        drift_note="only canary probes moved (stable probes held): suspect hardware, thread counts, "
                   "oneDNN or XLA settings rather than versions"),
    "hardware": GroupRule(
        "small fixed-input probes of the CPU's own arithmetic (approximate reciprocal/rsqrt, division, sqrt, "
        "normalisations, cache-blocked contraction), and any probe that moved across CPU vendors with every "
        "version identical while no setting moved it: the CPU model is the cause, not a setting",
        # Hardware-arithmetic probes moved, stable held: the CPU model, not a setting. Above the ISA
        # flags too: the cross-vendor case capped the ISA and the drift stayed bit for bit (docs/causes.md).
        precedence=1, boosts={"arithmetic": 14.0, "hardware": 8.0, "threads": 1.0, "onednn": 1.0},
        drift_note="hardware-arithmetic probes moved while the stable probes held: for every probe that goes "
                   "through reciprocal, rsqrt or a normalisation, the likeliest cause is the CPU model's own "
                   "arithmetic (its approximate reciprocal/rsqrt instructions, which Eigen uses), not a setting of "
                   "the default path; an ISA ceiling can still restore probes whose kernel oneDNN picks by "
                   "instruction set (bf16 on AMX), and a golden recorded under the portable profile (capture "
                   "--golden --portable, docs/portable.md) gives the same bits on both vendors",
        per_cpu=True),
}

# The group of a probe nothing said the group of (a child that died before reporting it; the pytest
# plugin's default), and the rule when no group of higher precedence drifted: it assumes the least.
DEFAULT_PROBE_GROUP: ProbeGroup = "canary"


def group_rule(group: str | None) -> GroupRule | None:
    """The row of ``group`` (a word read from a golden or a child may be none of them: None)."""
    return GROUPS.get(cast(ProbeGroup, group)) if group in GROUPS else None


def ruling_group(drifted: Iterable[str | None]) -> ProbeGroup:
    """The group whose rule applies when probes of the groups ``drifted`` moved: the drifted one of
    lowest precedence, else the default group."""
    known = [cast(ProbeGroup, g) for g in drifted if g in GROUPS]
    return min([*known, DEFAULT_PROBE_GROUP], key=lambda g: GROUPS[g].precedence)


def check_probe_group(group: object, where: str) -> ProbeGroup:
    """``group`` if it is a probe group; else ValueError naming ``where`` and the groups there are."""
    if group not in GROUPS:
        quoted = [f"'{g}'" for g in PROBE_GROUPS]
        raise ValueError(f"{where}: group must be {', '.join(quoted[:-1])} or {quoted[-1]}, not {group!r}")
    return cast(ProbeGroup, group)


# One run of one probe in the child.
RunStatus = Literal["ok", "skipped", "error"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)

# A probe's status in a golden (a repeat that gave other bits is "nondeterministic").
RecordStatus = Literal["ok", "skipped", "nondeterministic"]

# The families of explain's candidates (envlock.explain.planner).
CandidateKind = Literal["environment", "onednn", "affinity", "threads", "isa", "all", "unrecorded", "profile"]
CANDIDATE_KINDS: tuple[CandidateKind, ...] = get_args(CandidateKind)

# How explain localised a drift inside a probe (envlock.explain.localise).
LocaliseMethod = Literal["intermediates", "outputs", "none"]

# What explain concluded for one probe, and what became of one candidate: tried: its child ran;
# crashed: its child died outside any probe; not tried (budget): not started, it would not have
# ended in time; stopped (budget): stopped at the deadline and not restarted.
FindingStatus = Literal["fixed", "partly", "hardware-bound", "version", "not proved"]
CandidateStatus = Literal["tried", "crashed", "not tried (budget)", "stopped (budget)"]

__all__ = ["CANDIDATE_KINDS", "DEFAULT_PROBE_GROUP", "GROUPS", "PROBE_GROUPS", "RUN_STATUSES", "CandidateKind",
           "CandidateStatus", "FindingStatus", "GroupRule", "LocaliseMethod", "ProbeGroup", "RecordStatus", "RunStatus",
           "check_probe_group", "group_rule", "ruling_group"]
