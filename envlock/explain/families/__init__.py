"""explain's candidate families: the table of its levers, one module each.

``FAMILIES`` lists them in the order the planner proposes their candidates (``CandidateKind``'s
order). A new lever is one module with a ``Family`` subclass and one row here; one that is not an
environment variable also names its ``setting`` and the ``run_child`` option it sets
(``envlock.protocol.ChildOptions``). ``tests/unit/test_explain_families.py`` keeps the table and the
vocabulary in step.
"""

from __future__ import annotations

from collections.abc import Sequence

from envlock.explain.families import affinity, environment, isa, onednn, profile, threads, unrecorded
from envlock.explain.families.base import Candidate, Family, Launch, Proposal, SettingValue, Sides
from envlock.explain.families.combination import Combination, combine
from envlock.vocab import CandidateKind

_LEVERS: tuple[Family, ...] = (environment.FAMILY, onednn.FAMILY, affinity.FAMILY, threads.FAMILY, isa.FAMILY)

FAMILIES: tuple[Family, ...] = (*_LEVERS, Combination(_LEVERS), unrecorded.FAMILY, profile.FAMILY)

_BY_KIND: dict[CandidateKind, Family] = {f.kind: f for f in FAMILIES}
_BY_SETTING: dict[str, Family] = {f.setting: f for f in FAMILIES if f.setting}

# The settings beyond the environment, in the table's order (the report's fields of those names).
SETTINGS: tuple[str, ...] = tuple(_BY_SETTING)


def family(kind: CandidateKind) -> Family:
    return _BY_KIND[kind]


def apply(candidate: Candidate, launch: Launch) -> Launch:
    """The child's launch under ``candidate``, by the family it belongs to."""
    return _BY_KIND[candidate.kind].apply(candidate, launch)


def shell_hint(setting: str, value: Sequence[int]) -> str:
    return _BY_SETTING[setting].shell_hint(value)


def env_file_line(setting: str, value: Sequence[int]) -> str:
    return _BY_SETTING[setting].env_file_line(value)


__all__ = ["FAMILIES", "SETTINGS", "Candidate", "Family", "Launch", "Proposal", "SettingValue", "Sides", "apply",
           "combine", "env_file_line", "family", "shell_hint"]
