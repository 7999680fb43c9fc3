"""From machine rows to the fleet's picture (pure): its classes, the probes that separate them and by
how much, and where the numerics profile changes it.

Rows are grouped apart, never merged, by envlock version (major.minor: what goes into a class may
change between them), profile and probe set; classes compare only within a group. In a group, the
largest class (most machines) is the reference: each other class is separated from it by the probes
whose outputs differ, measured from two goldens (the ULPs over their stored samples, ``Measure``) or
from a verify report of one class against a golden of the other (its verdicts). ``analyse`` takes
rows from any reader: files (``envlock.fleet.files``) or a Prometheus (rows without probe cells).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from envlock.errors import BAD_INPUT, DRIFT, OK
from envlock.fleet.rows import MachineRow, RowKind
from envlock.version import __version__

FLEET_KIND = "envlock.fleet"
FLEET_SCHEMA_VERSION = 1
# Verdicts that say a probe's outputs differ from the report's golden ("skipped" compares nothing).
DIFFERING = frozenset({"drift", "within_tolerance", "nondeterministic", "error"})

# (reference golden, other golden, probes) -> each probe's max ULP over the stored samples (None:
# the bytes differ outside the samples, or the dtypes/shapes differ).
Measure = Callable[[MachineRow, MachineRow, Sequence[str]], Mapping[str, float | None]]


class MachineView(BaseModel):
    machine: str  # host@digest8
    source: str
    kind: RowKind
    numeric_class: str | None
    cpu: str | None = None
    # Against the group's largest class: "same", "differs" (on ``differs``; not known on ``unknown``), or
    # "unknown" (nothing read measures its class against the largest's, or only ``unknown`` might
    # differ). A property of the class: all its machines have the same outputs.
    agreement: Literal["same", "differs", "unknown"] = "unknown"
    differs: list[str] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    golden_class: str | None = None  # a verify report: its golden's class


class ClassView(BaseModel):
    numeric_class: str
    machines: list[str]
    largest: bool = False


class ProbeGap(BaseModel):
    probe: str
    max_ulp: float | None = None  # None: not measured (bytes differ outside the samples, or no samples)
    how: str  # "goldens" (their samples), "verify" (a report's verdict), or a status ("nondeterministic")


class Separation(BaseModel):
    reference: str  # the largest class; or, known only that way, the class of the golden ``other`` verified
    other: str
    known: bool  # False: no golden of each class and no verify report between them
    probes: list[ProbeGap] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)  # the files it was measured from


class FleetGroup(BaseModel):
    envlock: str  # major.minor, or "unknown"
    profile: str
    probe_set: str  # 12 hex over the probe names ("" when not known, e.g. from Prometheus)
    probes: list[str]
    classes: list[ClassView]  # largest first
    separations: list[Separation]
    machines: list[MachineView]


class ProfileView(BaseModel):
    profile: str
    groups: int
    classes: int
    machines: int


class ProfileChange(BaseModel):
    """Probes that separate classes under ``profile`` but under ``other`` agree on every machine."""

    profile: str
    other: str
    agree: list[str]
    still_separate: list[str]


class FleetReport(BaseModel):
    kind: Literal["envlock.fleet"] = "envlock.fleet"
    schema_version: int = FLEET_SCHEMA_VERSION
    envlock_version: str = __version__
    exit_code: int
    files: int  # rows read
    machines: int  # distinct host@digest among them
    groups: list[FleetGroup]
    unclassified: list[MachineView] = Field(default_factory=list)  # rows without a recorded class
    profiles: list[ProfileView] = Field(default_factory=list)
    profile_changes: list[ProfileChange] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # bad files skipped under --keep-going


@dataclass(frozen=True)
class _Key:
    envlock: str
    profile: str
    probes: tuple[str, ...]


def version_series(version: str | None) -> str:
    """"0.4" from "0.4.2": classes of one series compare; "unknown" when not recorded."""
    if version is None:
        return "unknown"
    found = re.match(r"([0-9]{1,6})\.([0-9]{1,6})", version)
    return f"{found[1]}.{found[2]}" if found else version


def probe_set_id(probes: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(probes).encode()).hexdigest()[:12] if probes else ""


def _golden_differs(row: MachineRow, reference: MachineRow) -> list[str]:
    """The probes whose status or outputs differ between two goldens (of one probe set)."""
    differs = []
    for name, cell in row.cells.items():
        ref = reference.cells.get(name)
        if ref is None or (cell.status, cell.digest) != (ref.status, ref.digest):
            differs.append(name)
    return differs


def _report_differs(row: MachineRow) -> list[str]:
    return [name for name, cell in row.cells.items() if cell.status in DIFFERING]


def against_largest(largest: str, separations: Sequence[Separation]) -> dict[str, tuple[set[str], set[str]]]:
    """Per class, the probes on which its outputs differ from the largest class's, and those where that
    is not known. A class is one set of outputs, so this holds for each of its machines. A class measured
    only against another class G (its report's golden) is derived through G: a probe that differs on one
    side only differs; one that differs on both sides may or may not. Classes not reached are absent."""
    known: dict[str, tuple[set[str], set[str]]] = {largest: (set(), set())}
    for sep in separations:
        if sep.known and sep.reference == largest:
            known[sep.other] = ({g.probe for g in sep.probes}, set())
    through = [s for s in separations if s.known and s.reference != largest]
    while reached := [s for s in through if s.reference in known and s.other not in known]:  # chains too
        for sep in reached:
            mine = {g.probe for g in sep.probes}
            theirs, unsure = known[sep.reference]
            known[sep.other] = ((mine ^ theirs) - unsure, (mine & theirs) | unsure)
    return known


def _view(row: MachineRow, largest: str, known: Mapping[str, tuple[set[str], set[str]]]) -> MachineView:
    view = MachineView(machine=row.machine, source=row.source, kind=row.kind, numeric_class=row.numeric_class,
                       cpu=row.cpu, golden_class=row.golden_class)
    if row.numeric_class == largest:
        view.agreement = "same"
    elif row.numeric_class is not None and row.numeric_class in known:
        differs, unsure = known[row.numeric_class]
        # Another class differs somewhere; where every probe it might differ on is unsure, say "unknown".
        view.agreement = "unknown" if unsure and not differs else "differs"
        view.differs, view.unknown = sorted(differs), sorted(unsure)
    return view


def _separation(largest: str, other: str, members: Mapping[str, list[MachineRow]],
                measure: Measure | None) -> Separation:
    ref = next((r for r in members[largest] if r.kind == "golden"), None)
    mine = next((r for r in members[other] if r.kind == "golden"), None)
    if ref is not None and mine is not None:
        names = sorted(_golden_differs(mine, ref))
        ulps = measure(ref, mine, names) if measure is not None and names else {}
        return Separation(reference=largest, other=other, known=True, evidence=[ref.source, mine.source],
                          probes=[ProbeGap(probe=n, max_ulp=ulps.get(n), how="goldens") for n in names])
    found = _report_between(other, largest, members)
    if found is None:
        return Separation(reference=largest, other=other, known=False)
    report, reference = found
    gaps = [ProbeGap(probe=n, max_ulp=c.max_ulp, how="verify" if c.status in ("drift", "within_tolerance")
                     else c.status) for n, c in sorted(report.cells.items()) if c.status in DIFFERING]
    return Separation(reference=reference, other=other, known=True, evidence=[report.source], probes=gaps)


def _report_between(other: str, largest: str, members: Mapping[str, list[MachineRow]]) -> tuple[MachineRow, str] | None:
    """A verify report between ``other`` and the largest class, either way round; else one of ``other``
    against the class of its golden, when that class is in the group (what is known is said)."""
    for row in members[other]:
        if row.kind == "verify" and row.golden_class == largest:
            return row, largest
    for row in members[largest]:
        if row.kind == "verify" and row.golden_class == other:
            return row, largest
    for row in members[other]:
        if row.kind == "verify" and row.golden_class is not None and row.golden_class in members \
                and row.golden_class != other:
            return row, row.golden_class
    return None


def _group(key: _Key, rows: list[MachineRow], measure: Measure | None) -> FleetGroup:
    members: dict[str, list[MachineRow]] = {}
    for row in rows:
        assert row.numeric_class is not None
        members.setdefault(row.numeric_class, []).append(row)
    machines = {c: sorted({r.machine for r in rs}) for c, rs in members.items()}
    order = sorted(machines, key=lambda c: (-len(machines[c]), c))
    largest = order[0]
    separations = [_separation(largest, c, members, measure) for c in order[1:]]
    known = against_largest(largest, separations)
    rank = {c: n for n, c in enumerate(order)}
    return FleetGroup(
        envlock=key.envlock, profile=key.profile, probe_set=probe_set_id(key.probes), probes=list(key.probes),
        classes=[ClassView(numeric_class=c, machines=machines[c], largest=c == largest) for c in order],
        separations=separations,
        machines=[_view(r, largest, known)
                  for r in sorted(rows, key=lambda r: (rank[r.numeric_class or ""], r.machine, r.source))])


def _profile_changes(groups: list[FleetGroup]) -> list[ProfileChange]:
    separating: dict[str, set[str]] = {}
    settled: dict[str, set[str]] = {}  # probes every machine of a group (2 or more) agrees on, all known
    for g in groups:
        split = {p.probe for s in g.separations for p in s.probes}
        separating.setdefault(g.profile, set()).update(split)
        if len(g.machines) > 1 and all(s.known for s in g.separations):
            settled.setdefault(g.profile, set()).update(set(g.probes) - split)
    changes = []
    for profile, split in sorted(separating.items()):
        for other in sorted(settled):
            if other != profile and split:
                agree = split & settled[other] - separating.get(other, set())
                if agree:
                    changes.append(ProfileChange(profile=profile, other=other, agree=sorted(agree),
                                                 still_separate=sorted(split & separating.get(other, set()))))
    return changes


def analyse(rows: Iterable[MachineRow], *, problems: Sequence[str] = (), measure: Measure | None = None) -> FleetReport:
    """The fleet's picture from typed rows, whichever reader made them.

    Exit code: 2 when a file was bad (``problems``) or no row was given; else 1 when a group holds
    more than one class (its machines do not all give the same bits); else 0."""
    rows = list(rows)
    grouped: dict[_Key, list[MachineRow]] = {}
    unclassified = []
    for row in rows:
        if row.numeric_class is None:
            unclassified.append(MachineView(machine=row.machine, source=row.source, kind=row.kind, numeric_class=None,
                                            cpu=row.cpu, golden_class=row.golden_class,
                                            differs=sorted(_report_differs(row))))
            continue
        grouped.setdefault(_Key(version_series(row.envlock_version), row.profile, row.probe_set), []).append(row)
    groups = [_group(k, grouped[k], measure)
              for k in sorted(grouped, key=lambda k: (k.envlock, k.profile, -len(grouped[k]), k.probes))]
    profiles = []
    for name in sorted({g.profile for g in groups}):
        mine = [g for g in groups if g.profile == name]
        profiles.append(ProfileView(profile=name, groups=len(mine), classes=sum(len(g.classes) for g in mine),
                                    machines=len({m.machine for g in mine for m in g.machines})))
    exit_code = BAD_INPUT if problems or not rows else DRIFT if any(len(g.classes) > 1 for g in groups) else OK
    return FleetReport(exit_code=exit_code, files=len(rows), machines=len({r.machine for r in rows}), groups=groups,
                       unclassified=unclassified, profiles=profiles, profile_changes=_profile_changes(groups),
                       problems=list(problems))
