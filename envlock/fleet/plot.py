"""``envlock fleet --plot FILE.png``: the map, drawn with matplotlib (an optional extra, envlock[plot]).

Rows are machines (or, past ``MAX_ROWS``, one row per class with its machine count), grouped by the
fleet's groups; columns are probe families (``matmul`` for matmul.f32, matmul.f64, ...). A cell is
the share of the family's probes on which the machine agrees with its group's largest class: green
all, amber some, red none; grey where it is not known (a verify report against a golden of another
class) or the family is not in the group's probe set. Side effects: imports matplotlib, writes a file.
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.errors import EnvironmentProblem, one_line
from envlock.fleet.picture import FleetGroup, FleetReport, MachineView
from envlock.store import atomic_write_bytes

MAX_ROWS = 48  # machines drawn one per row; a larger fleet is drawn one row per class
MISSING = "--plot needs matplotlib, which is not importable here: pip install 'envlock[plot]'"


def require_matplotlib() -> Any:
    """The pyplot module on the non-interactive Agg backend, or EnvironmentProblem (exit 3)."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise EnvironmentProblem(MISSING) from None


GREEN, AMBER, RED, GREY = "#1a9850", "#fdae61", "#d73027", "#d9d9d9"
MAX_LABEL = 60  # characters of a row label (a hostname may have 255)


def _label(text: str) -> str:
    """Escaped for a terminal (``one_line``) and for matplotlib, which reads $...$ as mathtext."""
    text = one_line(text)
    text = text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "\u2026"
    return text.replace("$", "\\$")


def family(probe: str) -> str:
    return probe.split(".", 1)[0]


@dataclass(frozen=True)
class MapRow:
    label: str
    group: int  # index of its fleet group
    shares: dict[str, float | None]  # family -> share of its known probes agreeing with the largest class
    partial: frozenset[str] = frozenset()  # families where some probes are not known (drawn with "?")


def _shares(view: MachineView, group: FleetGroup) -> dict[str, float | None]:
    families: dict[str, list[str]] = {}
    for probe in group.probes:
        families.setdefault(family(probe), []).append(probe)
    differs, unknown = set(view.differs), set(view.unknown)
    if view.agreement == "unknown" and not unknown:  # nothing measures its class against the largest
        return dict.fromkeys(families)
    shares: dict[str, float | None] = {}
    for name, probes in families.items():
        known = [p for p in probes if p not in unknown]
        shares[name] = sum(p not in differs for p in known) / len(known) if known else None
    return shares


def _partial(view: MachineView, group: FleetGroup) -> frozenset[str]:
    unknown = set(view.unknown)
    return frozenset(family(p) for p in group.probes if p in unknown)


def map_rows(report: FleetReport, max_rows: int = MAX_ROWS) -> list[MapRow]:
    """What the map draws, computed apart from drawing (tested without matplotlib)."""
    per_machine = sum(len(g.machines) for g in report.groups) <= max_rows
    rows: list[MapRow] = []
    for index, group in enumerate(report.groups):
        head = f"{group.profile} "
        if per_machine:
            rows += [MapRow(_label(f"{head}{m.machine} [{m.numeric_class}]"), index, _shares(m, group),
                            _partial(m, group)) for m in group.machines]
            continue
        for view in group.classes:  # the class's first machine stands for it: one class, one set of bits
            first = next(m for m in group.machines if m.numeric_class == view.numeric_class)
            rows.append(MapRow(_label(f"{head}class {view.numeric_class} ({len(view.machines)} machines)"),
                               index, _shares(first, group), _partial(first, group)))
    return rows[:max_rows]


def draw(report: FleetReport, pyplot: Any) -> bytes:
    rows = map_rows(report)
    families: list[str] = sorted({f for r in rows for f in r.shares})
    width = max(6.0, 1.8 + 0.55 * len(families))
    height = max(2.5, 1.6 + 0.32 * len(rows))
    figure, axes = pyplot.subplots(figsize=(width, height), dpi=110)
    try:
        for y, row in enumerate(rows):
            for x, name in enumerate(families):
                share = row.shares.get(name)
                colour = GREY if share is None else GREEN if share == 1 else RED if share == 0 else AMBER
                axes.add_patch(pyplot.Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="white", linewidth=1.5))
                unsure = "?" if name in row.partial else ""
                if share is not None and (share < 1 or unsure):
                    axes.text(x + 0.5, y + 0.5, f"{share:.0%}{unsure}", ha="center", va="center", fontsize=7)
        for y in range(1, len(rows)):
            if rows[y].group != rows[y - 1].group:
                axes.axhline(y, color="black", linewidth=1.2)
        axes.set_xlim(0, max(1, len(families)))
        axes.set_ylim(len(rows), 0)
        axes.set_xticks([x + 0.5 for x in range(len(families))])
        axes.set_xticklabels([_label(f) for f in families], rotation=45, ha="right", fontsize=8)
        axes.set_yticks([y + 0.5 for y in range(len(rows))])
        axes.set_yticklabels([r.label for r in rows], fontsize=8)
        axes.tick_params(length=0)
        for side in axes.spines.values():
            side.set_visible(False)
        axes.set_title("share of each probe family's probes agreeing with the group's largest class\n"
                       "green: all, amber: some, red: none, grey: not known or not in the probe set; ?: some not known",
                       fontsize=9)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        pyplot.close(figure)


def write_plot(report: FleetReport, path: Path | str) -> None:
    atomic_write_bytes(path, draw(report, require_matplotlib()))
