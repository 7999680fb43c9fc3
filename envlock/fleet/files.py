"""``envlock fleet FILES``: read goldens and verify reports into rows, measure how far the classes'
goldens are apart, and make the picture (side effects: the files; the logic is ``fleet.picture``).

Every file goes through the one bounded reader (``envlock.store.read_json_file``: a regular file of
at most 16 MiB, bounded JSON); a bad one is a BadFileError naming it (exit 2), or, with
``keep_going``, one line in the report's problems while the others are read."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from envlock.errors import BAD_INPUT, BadFileError
from envlock.fleet.picture import FleetReport, analyse
from envlock.fleet.rows import MachineRow, row_of_document
from envlock.golden import Golden, load_golden
from envlock.probes.compare import Tolerance, compare_output
from envlock.store import read_json_file


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Parsing thousands of files allocates millions of objects, none in a cycle; meanwhile the rows
    kept grow, and each of the collector's full passes walks all of them: a quarter of the time on
    10,000 files (benchmarks/bench_fleet.py). Reference counting still frees everything at once."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_rows(paths: Iterable[Path | str], *, keep_going: bool = False) -> tuple[list[MachineRow], list[str]]:
    """One row per file, in the order given, and the one-line problems of the files skipped."""
    with _without_cycle_collection():
        return _read_rows(paths, keep_going=keep_going)


def _read_rows(paths: Iterable[Path | str], *, keep_going: bool) -> tuple[list[MachineRow], list[str]]:
    rows: list[MachineRow] = []
    problems: list[str] = []
    for path in paths:
        try:
            rows.append(row_of_document(str(path), read_json_file(path)))
        except BadFileError as exc:
            if not keep_going:
                raise
            problems.append(str(exc))
    return rows, problems


def max_ulps(reference: Golden, other: Golden, probes: Sequence[str]) -> dict[str, float | None]:
    """Each probe's largest ULP distance over the outputs' stored samples (``compare_output``);
    None where none of its differing outputs could be measured."""
    bitwise = Tolerance(0)
    out: dict[str, float | None] = {}
    for name in probes:
        mine, ref = other.probe(name), reference.probe(name)
        if mine is None or ref is None or mine.status != "ok" or ref.status != "ok":
            out[name] = None
            continue
        theirs = {o.name: o.model_dump() for o in mine.outputs}
        compared = [compare_output(o.model_dump(), theirs[o.name], bitwise) for o in ref.outputs if o.name in theirs]
        ulps = [r.max_ulp for r in compared if not r.identical and r.max_ulp is not None]  # identical ones are 0
        out[name] = max(ulps) if ulps else None
    return out


class _GoldenMeasure:
    """Loads each golden it compares in full (digest, manifest, samples: ``load_golden``), once."""

    def __init__(self, *, keep_going: bool) -> None:
        self._loaded: dict[str, Golden | None] = {}
        self._keep_going = keep_going  # False: a golden that fails its full load raises
        self.problems: list[str] = []

    def _load(self, source: str) -> Golden | None:
        if source not in self._loaded:
            try:
                self._loaded[source] = load_golden(source)
            except BadFileError as exc:
                if not self._keep_going:
                    raise
                self.problems.append(str(exc))
                self._loaded[source] = None
        return self._loaded[source]

    def __call__(self, reference: MachineRow, other: MachineRow, probes: Sequence[str]) -> Mapping[str, float | None]:
        ref, mine = self._load(reference.source), self._load(other.source)
        return max_ulps(ref, mine, probes) if ref is not None and mine is not None else {}


def fleet_report(paths: Sequence[Path | str], *, keep_going: bool = False,
                 extra_rows: Sequence[MachineRow] = ()) -> FleetReport:
    """The picture of ``paths`` and of ``extra_rows`` from another reader (``envlock.fleet.prometheus``)."""
    rows, problems = read_rows(paths, keep_going=keep_going)
    rows = [*rows, *extra_rows]
    measure = _GoldenMeasure(keep_going=keep_going)
    report = analyse(rows, problems=problems, measure=measure)
    if measure.problems:  # a golden that read as a row but failed its full load (e.g. its digest)
        report = report.model_copy(update={"problems": [*report.problems, *measure.problems],
                                           "exit_code": BAD_INPUT})
    return report
