"""The fleet's picture as text (pure): every string from a file is escaped (``one_line``)."""

from __future__ import annotations

from collections.abc import Sequence

from envlock.errors import one_line
from envlock.fleet.picture import FleetGroup, FleetReport, ProbeGap
from envlock.fleet.rows import NOT_RECORDED

MAX_LISTED = 8  # machines named per class; the rest are counted (--json lists them all)


def _listed(names: Sequence[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(one_line(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("s") else f"{n} {word}s"


def _gap(gap: ProbeGap) -> str:
    if gap.max_ulp is not None:
        size = "inf" if gap.max_ulp == float("inf") else f"{gap.max_ulp:.0f}"
        return f"{one_line(gap.probe)} ({size} ULP)"
    what = "size not measured" if gap.how in ("goldens", "verify") else one_line(gap.how)
    return f"{one_line(gap.probe)} ({what})"


def _group_lines(group: FleetGroup) -> list[str]:
    probes = f"{len(group.probes)} probes (set {group.probe_set})" if group.probes else "probes not known"
    head = (f"envlock {one_line(group.envlock)}, profile {one_line(group.profile)}, {probes}: "
            f"{_plural(len(group.classes), 'class')}, {_plural(len({m.machine for m in group.machines}), 'machine')}")
    lines = [head]
    tied = len(group.classes) > 1 and len(group.classes[0].machines) == len(group.classes[1].machines)
    for view in group.classes:
        tag = "" if not view.largest or len(group.classes) == 1 else " (reference: a tie)" if tied else " (largest)"
        lines.append(f"  class {one_line(view.numeric_class)}{tag}: {_plural(len(view.machines), 'machine')}: "
                     f"{_listed(view.machines)}")
    for sep in group.separations:
        pair = f"{one_line(sep.other)} vs {one_line(sep.reference)}"  # classes from another reader are labels
        if not sep.known:
            lines.append(f"  {pair}: the probes that separate them are not known (give a "
                         "golden of each, or a verify report of one against a golden of the other)")
            continue
        gaps = ", ".join(_gap(g) for g in sep.probes) or "none listed (the classes differ in probes not compared)"
        verb = "separates" if len(sep.probes) == 1 else "separate"
        lines.append(f"  {pair}: {_plural(len(sep.probes), 'probe')} {verb} them: {gaps}")
        lines.append(f"    from {_listed(sep.evidence, 2)}")
    return lines


def render_fleet(report: FleetReport) -> str:
    lines = [f"envlock fleet: {_plural(report.files, 'file')}, {_plural(report.machines, 'machine')}, "
             f"{_plural(len(report.groups), 'group')} (never compared with each other: their envlock version, "
             "profile or probe set differ)" if len(report.groups) > 1 else
             f"envlock fleet: {_plural(report.files, 'file')}, {_plural(report.machines, 'machine')}"]
    for group in report.groups:
        lines += ["", *_group_lines(group)]
    if len(report.profiles) > 1 or report.profile_changes:
        lines += ["", "profiles: " + "; ".join(f"{one_line(p.profile)}: {_plural(p.classes, 'class')}"
                                                for p in report.profiles)]
        for change in report.profile_changes:
            lines.append(f"  {one_line(change.other)} makes agree what separates classes under "
                         f"{one_line(change.profile)}: {_listed(change.agree, 1000)}")
            if change.still_separate:
                lines.append(f"  still separating under both: {_listed(change.still_separate, 1000)}")
    if report.unclassified:
        lines += ["", f"{_plural(len(report.unclassified), 'machine')} without a class: {NOT_RECORDED}"]
        for view in report.unclassified:
            against = f" differs from its golden on {_plural(len(view.differs), 'probe')}" if view.differs else ""
            lines.append(f"  {one_line(view.machine)} ({one_line(view.source)}){against}")
    if report.problems:
        lines += ["", f"{_plural(len(report.problems), 'file')} not read:"]
        lines += [f"  {one_line(p)}" for p in report.problems]
    verdict = {0: "every group is one class: its machines give the same bits",
               1: "a group holds more than one class: its machines do not all give the same bits",
               2: "some files could not be read"}
    lines += ["", verdict.get(report.exit_code, "")]
    return "\n".join(lines) + "\n"
