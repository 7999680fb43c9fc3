"""What one check found: the value the loop, the history, the HTTP endpoints and NFD share.

Plain dataclasses (not pydantic) on purpose: they are built every few seconds, stored as JSON
in SQLite and read back after a restart, and must stay cheap and free of TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from envlock.errors import one_line
from envlock.numeric import is_numeric_class

CheckKind = Literal["fingerprint", "verify", "cores"]
KINDS: tuple[CheckKind, ...] = ("fingerprint", "verify", "cores")  # cores: `envlock cores`, only with --cores-every

# pass: checked and matches; drift: checked and differs; error: could not check (crash, bad
# output, golden unreadable); timeout: the verify child ran past its limit and was killed.
Outcome = Literal["pass", "drift", "error", "timeout"]
OUTCOMES: tuple[Outcome, ...] = ("pass", "drift", "error", "timeout")

# A result's lists: unbounded (a golden decides how many differences there are), so the history
# stores each distinct set once and /status shows a count and the first few.
DETAIL_FIELDS = ("drift", "probes", "tolerated", "vouched")


# What a verify report's numeric class fields must look like to be exported (envlock.numeric: 12 hex
# digits; a profile id such as ``default`` or ``portable-v1``). Anything else is not exported: these
# become Prometheus label values and Kubernetes node labels (<= 63 chars of [A-Za-z0-9._-]).
_PROFILE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


def class_or_none(value: Any) -> str | None:
    """``value`` when it is a numeric class (12 lowercase hex digits), else None."""
    return value if is_numeric_class(value) else None


def profile_or_none(value: Any) -> str | None:
    """``value`` when it is a profile id that is also a valid Kubernetes label value, else None."""
    return value if isinstance(value, str) and _PROFILE.fullmatch(value) else None


def safe_text(text: str | None) -> str | None:
    """``text`` as valid UTF-8: a lone surrogate (a golden's ``"\\ud800"``, which JSON allows and
    UTF-8 cannot encode) becomes its escape, ``\\ud800``, instead of an error in SQLite, HTTP or
    Prometheus. Valid text is returned unchanged."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(frozen=True)
class DriftItem:
    """One thing that differs from the golden. ``path`` is stable across checks so drift events
    can be opened and resolved: a manifest field's dotted path (``environment.TF_ENABLE_ONEDNN_OPTS``)
    or ``probes.<name>`` for a probe whose results moved."""

    path: str
    severity: str
    reason: str
    value: str | None = None  # the new value as canonical JSON: with path, what a verify can vouch for

    @property
    def key(self) -> str:
        return difference_key(self.path, self.value)


def difference_key(path: str, value_json: str | None) -> str:
    return f"{path}={value_json}"


@dataclass(frozen=True)
class ProbeSummary:
    name: str
    status: str
    max_ulp: float | None = None
    max_rel_error: float | None = None


@dataclass(frozen=True)
class CpuState:
    """One CPU as the last cores check saw it (``envlock.corecheck.CpuHealth``): healthy, suspect
    (it deviates from the majority) or undecided (CPUs disagree with no majority)."""

    cpu: int
    health: str

    @property
    def healthy(self) -> bool:
        return self.health == "healthy"


@dataclass(frozen=True)
class CheckResult:
    kind: CheckKind
    started_at: float  # epoch seconds
    duration_s: float
    outcome: Outcome
    reason: str | None = None  # one line a person understands; None when the check passed
    golden_digest: str | None = None
    fingerprint_digest: str | None = None
    exit_code: int | None = None  # verify child's exit code (negative: killed by that signal)
    drift: list[DriftItem] = field(default_factory=list)
    probes: list[ProbeSummary] = field(default_factory=list)
    # fingerprint: differences from the golden a passing verify already showed harmless (not failing)
    tolerated: list[DriftItem] = field(default_factory=list)
    # verify (when it passed): keys of every manifest difference it saw while the probes reproduced
    vouched: list[str] = field(default_factory=list)
    # verify (conclusive): this machine's numeric class over the probes verified, the golden's over the
    # same probes, and the profile both are for (envlock.numeric). None in a history written before
    # 0.4, from a pytest-plugin golden, or when the report's values were malformed.
    numeric_class: str | None = None
    golden_numeric_class: str | None = None
    numeric_profile: str | None = None
    # cores: each CPU checked (empty for the other kinds, and when the cores check could not run)
    cpus: list[CpuState] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "pass"

    @property
    def conclusive(self) -> bool:
        """True when the check actually compared something (pass or drift), so its drift list
        is the truth for its kind; errors and timeouts say nothing about drift."""
        return self.outcome in ("pass", "drift")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            kind=data["kind"],
            started_at=float(data["started_at"]),
            duration_s=float(data["duration_s"]),
            outcome=data["outcome"],
            reason=data.get("reason"),
            golden_digest=data.get("golden_digest"),
            fingerprint_digest=data.get("fingerprint_digest"),
            exit_code=data.get("exit_code"),
            drift=[DriftItem(**item) for item in data.get("drift", [])],
            probes=[ProbeSummary(**item) for item in data.get("probes", [])],
            tolerated=[DriftItem(**item) for item in data.get("tolerated", [])],
            vouched=list(data.get("vouched", [])),
            numeric_class=class_or_none(data.get("numeric_class")),
            golden_numeric_class=class_or_none(data.get("golden_numeric_class")),
            numeric_profile=profile_or_none(data.get("numeric_profile")),
            cpus=[CpuState(**item) for item in data.get("cpus", [])],
        )


def render_check(result: CheckResult | None, kind: CheckKind) -> str:
    """One line for ``watch --once``: the check, its outcome, and why (or what it saw)."""
    if result is None:
        return f"{kind:<12} not run"
    if result.ok:
        detail = ""
        if result.kind == "verify" and result.probes:
            counts: dict[str, int] = {}
            for probe in result.probes:
                counts[probe.status] = counts.get(probe.status, 0) + 1
            detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        if result.kind == "cores" and result.cpus:
            detail = f"{len(result.cpus)} CPUs agree"
        if result.tolerated:
            detail = (f"{len(result.tolerated)} difference(s) tolerated: a passing verify of this golden "
                      "showed them harmless")
    else:
        detail = result.reason or ""
    line = f"{kind:<12} {result.outcome:<8} {detail}".rstrip() + f" ({result.duration_s:.1f} s)"
    return one_line(line)


def render_once(healthy: bool, reason: str, fingerprint: CheckResult | None, verify: CheckResult | None,
                cores: CheckResult | None = None) -> str:
    """What ``watch --once`` prints on stdout (the JSON log stays on stderr); a cores line only when
    a cores check ran (``--cores-every``)."""
    lines = [render_check(fingerprint, "fingerprint"), render_check(verify, "verify")]
    if verify is not None and verify.conclusive and verify.numeric_class and verify.numeric_profile:
        golden = ("the golden's too" if verify.golden_numeric_class == verify.numeric_class
                  else f"the golden's is {verify.golden_numeric_class or 'not known'}")
        lines.append(f"{'class':<12} {verify.numeric_class} (profile {verify.numeric_profile}; {golden})")
    if cores is not None:
        lines.append(render_check(cores, "cores"))
    lines.append("HEALTHY" if healthy else one_line(f"NOT HEALTHY: {reason}"))
    return "\n".join(lines)
