"""Candidates together: every family's at once, and any set of them (explain's shrinking)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envlock.explain.families.base import Candidate, Family, Launch, Proposal, SettingValue, Sides


def combine(candidates: Sequence[Candidate], here_env: Mapping[str, str]) -> Candidate:
    """Several candidates at once (later ones win a shared variable or setting; XLA_FLAGS parts are joined)."""
    env: dict[str, str | None] = {}
    settings: dict[str, SettingValue] = {}
    for c in candidates:
        for name, value in c.env.items():
            if name == "XLA_FLAGS" and value and env.get("XLA_FLAGS") and "--xla_cpu_max_isa" in value:
                base = env["XLA_FLAGS"] or ""
                value = " ".join(p for p in (base, value.replace(here_env.get("XLA_FLAGS", ""), "").strip()) if p)
            env[name] = value
        settings.update({name: value for name, value in c.settings.items() if value})
    ids = tuple(c.id for c in candidates)
    return Candidate(" + ".join(ids), "all", "the candidates together", env=env, settings=settings,
                     paths=tuple(dict.fromkeys(p for c in candidates for p in c.paths)), members=ids)


class Combination(Family):
    """"All together": one candidate per variable (the first: "unset X" and "X=1" cannot both hold),
    when there are at least two. Applied like its members: its environment, then each setting by the
    family that owns it."""

    kind = "all"

    def __init__(self, members: Sequence[Family]) -> None:
        self.owners = {f.setting: f for f in members if f.setting}

    def propose(self, sides: Sides, earlier: Sequence[Candidate]) -> Proposal:
        together: list[Candidate] = []
        claimed: set[str] = set()
        for c in earlier:
            if not claimed & set(c.env):
                together.append(c)
                claimed |= set(c.env)
        return Proposal([combine(together, sides.here_env)] if len(together) > 1 else [])

    def apply(self, candidate: Candidate, launch: Launch) -> Launch:
        launch = super().apply(candidate, launch)
        for name in candidate.settings:
            launch = self.owners[name].apply(candidate, launch)  # its environment again: the same result
        return launch
