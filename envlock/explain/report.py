"""explain's report (JSON with ``--json``) and its one text table."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from envlock.explain.localise import Localisation
from envlock.verify import VerifyReport

FindingStatus = Literal["fixed", "partly", "hardware-bound", "version", "not proved"]


class CandidateOutcome(BaseModel):
    id: str
    kind: str
    reason: str
    env: dict[str, str | None] = Field(default_factory=dict)
    affinity: list[int] | None = None
    size: int = 1
    status: str = "not tried"  # tried | crashed | not tried (budget)
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


def _first_difference(f: Finding) -> str:
    loc = f.localisation
    if loc is None or not loc.first_difference:
        return "-"
    if loc.method == "intermediates":
        return f"{loc.first_difference} ({loc.op or 'op not named'})"
    return f"output {loc.first_difference}" + (f" ({', '.join(loc.identical_outputs)} identical)"
                                               if loc.identical_outputs else "")


def _short_proof(f: Finding) -> str:
    if f.status in ("fixed", "partly"):
        return f.fixed_by or "-"
    if f.status == "hardware-bound":
        return "no configuration restores it (CPU)"
    if f.status == "version":
        return "versions differ: envlock build"
    return "candidates not tried"


def render_explain(report: ExplainReport) -> str:
    """One table (a row per drifting probe), then what was not tried and the environment to use."""
    lines = [f"golden  {report.golden} ({report.golden_digest[:19]})"]
    if not report.findings:
        lines += [f"note: {n}" for n in report.notes]
        lines.append("REPRODUCES: nothing to explain" if report.reproduces else "DOES NOT REPRODUCE")
        return "\n".join(lines)
    rows = [("probe", "verdict", "proved by / evidence", "first difference")]
    for f in report.findings:
        rows.append((f.probe, f.status, _short_proof(f), _first_difference(f)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if index == 0:
            lines.append("-" * (sum(widths) + 6 + len("first difference")))
    lines.append("")
    for f in report.findings:
        lines.append(f"{f.probe}: {f.proof()}")
        if f.localisation is not None:
            lines += [f"  oneDNN: {p}" for p in f.localisation.primitives]
    tried = [c for c in report.candidates if c.status == "tried"]
    lines.append(f"candidates tried: {len(tried)}"
                 + (" (" + "; ".join(f"{c.id} {c.seconds:.1f}s" for c in tried) + ")" if tried else ""))
    for c in report.candidates:
        if c.status == "crashed":
            lines.append(f"could not be tried (crashed): {c.id}: {c.detail}")
    if report.not_tried:
        skipped = [c for c in report.not_tried
                   if not any(x.id == c and x.status == "crashed" for x in report.candidates)]
        if skipped:
            lines.append(f"not tried within the {report.budget_seconds:.0f} s budget: {', '.join(skipped)}")
    lines += [f"not settable here: {n}" for n in report.not_applicable]
    lines += [f"note: {n}" for n in report.notes]
    if report.emit_env is not None or report.emit_affinity:
        parts = [f"{k}={v}" if v is not None else f"unset {k}" for k, v in (report.emit_env or {}).items()]
        if report.emit_affinity:
            parts.append("taskset -c " + ",".join(map(str, report.emit_affinity)))
        lines.append(("reproduces with: " if report.emit_complete else "reproduces some probes with: ")
                     + " ".join(parts))
    counts = {s: sum(f.status == s for f in report.findings) for s in ("fixed", "partly", "hardware-bound",
                                                                       "version", "not proved")}
    lines.append("DOES NOT REPRODUCE: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                 + f" ({report.timings.get('total_seconds', 0):.1f} s)")
    return "\n".join(lines)
