"""What every candidate family shares: the candidate, the two sides it is proposed from, and the
child's launch it is applied to.

A family (one module of ``envlock.explain.families``) proposes candidates from the golden, this
machine and their environments, and applies one of its candidates to the launch of a fresh probe
child. Most families only change environment variables (``Family.apply`` as it is); a family whose
lever is not a variable names its ``setting`` and sets the matching ``run_child`` keyword
(``envlock.protocol.ChildOptions``), and the report carries the setting's value under that name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from envlock.environ import with_changes
from envlock.models import Manifest
from envlock.protocol import ChildOptions
from envlock.vocab import CandidateKind

# A value a family sets beyond the environment (a CPU list, today's only one).
SettingValue = tuple[int, ...]


@dataclass(frozen=True)
class Candidate:
    """One configuration to try: environment changes (None = unset) and settings beyond them."""

    id: str  # what it sets, e.g. "TF_ENABLE_ONEDNN_OPTS=1"
    kind: CandidateKind
    reason: str
    env: dict[str, str | None] = field(default_factory=dict)
    settings: dict[str, SettingValue] = field(default_factory=dict)  # by the owning family's ``setting``
    paths: tuple[str, ...] = ()  # the manifest/environment differences it tests
    members: tuple[str, ...] = ()  # a set of candidates: the ids it combines

    @property
    def size(self) -> int:
        return len(self.members) or 1


@dataclass(frozen=True)
class Sides:
    """What candidates are proposed from: the golden's manifest and the environment it ran with
    (its lockdown's, less what is never applied), this machine's manifest and environment."""

    golden: Manifest
    golden_env: Mapping[str, str]
    here: Manifest
    here_env: Mapping[str, str]


@dataclass(frozen=True)
class Proposal:
    candidates: list[Candidate] = field(default_factory=list)
    not_applicable: list[str] = field(default_factory=list)  # differences no setting here can undo, and why


@dataclass(frozen=True)
class Launch:
    """A probe child about to start: its environment and ``run_child``'s options beyond it."""

    env: dict[str, str]
    options: ChildOptions = field(default_factory=lambda: ChildOptions())

    def with_env(self, changes: Mapping[str, str | None]) -> Launch:
        return replace(self, env=with_changes(self.env, changes))


class Family:
    """A family of candidates. Subclasses set ``kind``, override ``propose``, and, for a lever that is
    not an environment variable, ``setting`` and ``apply`` (and the two texts that show a setting)."""

    kind: ClassVar[CandidateKind]
    setting: ClassVar[str | None] = None  # the name of its value beyond the environment (report and options)

    def propose(self, sides: Sides, earlier: Sequence[Candidate]) -> Proposal:
        """Its candidates for these two sides; ``earlier``: what the families before it proposed."""
        return Proposal()

    def apply(self, candidate: Candidate, launch: Launch) -> Launch:
        """The launch under ``candidate``: its environment changes (None unsets)."""
        return launch.with_env(candidate.env)

    def shell_hint(self, value: Sequence[int]) -> str:
        """How a person gets the setting when running by hand ("reproduces with: ...")."""
        raise NotImplementedError(self.kind)

    def env_file_line(self, value: Sequence[int]) -> str:
        """The environment file's comment line for the setting (a file can only set variables)."""
        raise NotImplementedError(self.kind)
