"""envlock's closed vocabularies: the few words that parts exchange, each defined once.

Base layer (standard library only), so the TensorFlow child, the golden's models, the registry,
verdict, explain and the daemon all name the same type. A new word is added here and nowhere else;
``tests/unit/test_vocab.py`` keeps each ``Literal`` and its tuple of values in step.
"""

from __future__ import annotations

from typing import Literal, get_args

# A probe's group: what verify expects of it on another machine (envlock.probes.registry's GROUPS
# table says what each means). "hardware" was added after 0.1.0: old goldens lack it.
ProbeGroup = Literal["stable", "canary", "hardware"]
PROBE_GROUPS: tuple[ProbeGroup, ...] = get_args(ProbeGroup)

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

__all__ = ["CANDIDATE_KINDS", "PROBE_GROUPS", "RUN_STATUSES", "CandidateKind", "CandidateStatus", "FindingStatus",
           "LocaliseMethod", "ProbeGroup", "RecordStatus", "RunStatus"]
