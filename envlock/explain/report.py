"""explain's report (JSON with ``--json``); ``envlock.display.render_explain`` is its text.

Every string in it has been through ``envlock.redact`` (``envlock.explain.run``); the environment
file's text, which keeps this machine's own values raw, travels with it but is never serialised.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, PrivateAttr

from envlock.explain.localise import Localisation
from envlock.explain.portable import PortableCheck
from envlock.verdict import VerifyReport
from envlock.vocab import CandidateKind, CandidateStatus, FindingStatus


class CandidateOutcome(BaseModel):
    id: str
    kind: CandidateKind
    reason: str
    env: dict[str, str | None] = Field(default_factory=dict)
    affinity: list[int] | None = None
    size: int = 1
    status: CandidateStatus = "not tried (budget)"
    detail: str | None = None
    seconds: float | None = None
    probes: dict[str, str] = Field(default_factory=dict)  # identical | partly: ... | unchanged | could not run: ...


class Finding(BaseModel):
    probe: str
    status: FindingStatus = "not proved"
    fixed_by: str | None = None
    alternatives: list[str] = Field(default_factory=list)
    env: dict[str, str | None] = Field(default_factory=dict)
    affinity: list[int] | None = None
    detail: str = ""
    outputs_differing: list[str] = Field(default_factory=list)
    localisation: Localisation | None = None
    # For a hardware-bound probe: what a run under the portable profile showed here (envlock.explain.portable).
    portable: PortableCheck | None = None

    def proof(self) -> str:
        """The line verify shows instead of its ranked guesses."""
        if self.status == "fixed":
            also = f" (also: {', '.join(self.alternatives)})" if self.alternatives else ""
            return f"fixed by {self.fixed_by}{also}: bitwise identical under it (explain ran it)"
        if self.status == "partly":
            return f"partly fixed by {self.fixed_by}: {self.detail}"
        return self.detail


class ExplainReport(BaseModel):
    golden: str
    golden_digest: str
    reproduces: bool
    exit_code: int
    budget_seconds: float
    findings: list[Finding] = Field(default_factory=list)
    candidates: list[CandidateOutcome] = Field(default_factory=list)
    not_tried: list[str] = Field(default_factory=list)
    not_applicable: list[str] = Field(default_factory=list)
    version_differences: list[str] = Field(default_factory=list)
    emit_env: dict[str, str | None] | None = None
    emit_affinity: list[int] | None = None
    emit_complete: bool = False
    notes: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    verify: VerifyReport
    _environment_file: str | None = PrivateAttr(default=None)

    def attach_environment_file(self, text: str) -> None:
        """The ``--emit-env`` text made with the raw values (``envlock.explain.run.environment_text``)."""
        self._environment_file = text

    @property
    def environment_file(self) -> str | None:
        return self._environment_file
